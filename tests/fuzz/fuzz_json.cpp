// libFuzzer target for gateway/json and the config reader: arbitrary bytes
// must parse or give errors, never crash; every value of a parsed document
// must be found again by locate() (the pointer walk and the positions agree),
// and parse_config must give a Config or errors.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/config.hpp"
#include "gateway/json/document.hpp"

using namespace relaygate;

namespace {

void pointers(const nlohmann::json& j, const std::string& at, std::vector<std::string>& out) {
    if (out.size() > 4096) return;
    out.push_back(at);
    if (j.is_object()) {
        for (const auto& [key, value] : j.items())
            pointers(value, json_reader::pointer(at, key), out);
    } else if (j.is_array()) {
        for (std::size_t i = 0; i < j.size(); ++i)
            pointers(j[i], json_reader::pointer(at, i), out);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto doc = json_reader::parse(text);
    if (doc) {
        std::vector<std::string> all;
        pointers(*doc, "", all);
        for (const auto& p : json_reader::locate(text, all))
            if (!p.known()) __builtin_trap();
    } else {
        for (const auto& e : doc.error())
            (void)json_reader::where(e.path, e.position);
    }
    auto config = config::parse_config(text, ".");
    if (!config)
        for (const auto& e : config.error())
            (void)config::format_error(e);
    return 0;
}
