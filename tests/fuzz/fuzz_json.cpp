// libFuzzer target for gateway/json and the config reader: arbitrary bytes
// must parse or give errors, never crash; every value of a parsed document
// must be found again by locate() (the pointer walk and the positions agree),
// parse_config must give a Config or errors, and the streaming readers
// (scan_top_level, at the top and one level down) must agree with parse()
// on every valid document it accepts.
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
    // The policy loader's streaming path: whatever the scan accepts of a
    // valid document, member by member, is what parse() built.
    if (auto members = json_reader::scan_top_level(text); members && doc) {
        if (!doc->is_object() || members->size() != doc->size()) __builtin_trap();
        for (const auto& m : *members) {
            auto it = doc->find(m.key);
            if (it == doc->end()) __builtin_trap();
            auto value = json_reader::parse(m.value);
            if (!value || *value != *it) __builtin_trap();
            if (!it->is_object()) continue;
            if (m.members != it->size()) __builtin_trap();
            // The policy's "tenants": its members, scanned in turn.
            auto inner = json_reader::scan_top_level(m.value);
            if (!inner) continue;
            if (inner->size() != it->size()) __builtin_trap();
            for (const auto& t : *inner) {
                auto found = it->find(t.key);
                auto v = json_reader::parse(t.value);
                if (found == it->end() || !v || *v != *found) __builtin_trap();
            }
        }
    }
    auto config = config::parse_config(text, ".");
    if (!config)
        for (const auto& e : config.error())
            (void)config::format_error(e);
    return 0;
}
