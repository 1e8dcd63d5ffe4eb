// libFuzzer target for gateway/json and the config reader: arbitrary bytes
// must parse or give errors, never crash; every value of a parsed document
// must be found again by locate() (the pointer walk and the positions agree),
// parse_config must give a Config or errors, and the streaming readers
// (MemberScanner, at the top and one level down) must agree with parse()
// on every valid document it accepts; append_canonical must write what
// nlohmann's dump() does.
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
        // The policy hash's text: the same as nlohmann writes it.
        std::string canonical;
        json_reader::append_canonical(*doc, canonical);
        if (canonical != doc->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
            __builtin_trap();
    } else {
        for (const auto& e : doc.error())
            (void)json_reader::where(e.path, e.position);
    }
    // The policy loader's streaming path: whatever the scan accepts of a
    // valid document, fed in two pieces split where the input says, is
    // what parse() built, member by member, and where locate() finds it.
    json_reader::MemberScanner scan("tenants");
    const std::size_t cut = size ? data[0] % (size + 1) : 0;
    if (scan.feed(text.substr(0, cut)) && scan.feed(text.substr(cut)) && scan.finish() && doc) {
        if (!doc->is_object() || scan.members().size() != doc->size()) __builtin_trap();
        auto same = [&](const nlohmann::json& in, const json_reader::MemberScanner::Member& m) {
            auto it = in.find(m.key);
            if (it == in.end()) __builtin_trap();
            auto value = json_reader::parse(text.substr(m.value.offset, m.value.length));
            if (!value || *value != *it) __builtin_trap();
            const auto p = json_reader::position_at(text, m.value.offset);
            if (p.line != m.value.position.line || p.column != m.value.position.column)
                __builtin_trap();
            return it;
        };
        for (const auto& m : scan.members()) {
            auto it = same(*doc, m);
            if (!scan.is_nested(m)) continue;
            if (!it->is_object() || scan.nested().size() != it->size()) __builtin_trap();
            for (const auto& t : scan.nested())
                same(*it, t);
        }
        // With a sink, split elsewhere: the same nested members, in order.
        json_reader::MemberScanner sunk("tenants");
        std::size_t next = 0;
        sunk.on_nested([&](const json_reader::MemberScanner::Member& m) {
            if (next >= scan.nested().size()) __builtin_trap();
            const auto& want = scan.nested()[next++];
            if (m.key != want.key || m.value.offset != want.value.offset ||
                m.value.length != want.value.length ||
                m.value.position.line != want.value.position.line ||
                m.value.position.column != want.value.position.column)
                __builtin_trap();
            return true;
        });
        const std::size_t cut2 = size > 1 ? data[1] % (size + 1) : cut;
        if (!sunk.feed(text.substr(0, cut2)) || !sunk.feed(text.substr(cut2)) || !sunk.finish() ||
            next != scan.nested().size() || !sunk.nested().empty())
            __builtin_trap();
    }
    auto config = config::parse_config(text, ".");
    if (!config)
        for (const auto& e : config.error())
            (void)config::format_error(e);
    return 0;
}
