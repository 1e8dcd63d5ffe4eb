// libFuzzer target for the limits compiler: arbitrary bytes as a "limits"
// block (top level, tenant, identity and domain) of a small policy, and as
// a period or byte count. Must give a Policy or diagnostics, never a crash;
// a loaded policy's decisions carry only well-formed limits.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "policy/engine/limits.hpp"
#include "policy/engine/policy.hpp"

using namespace relaygate::policy;

namespace {

constexpr std::string_view kHead = R"({"version": 1, "limits": )";
constexpr std::string_view kTail = R"(, "tenants": {"acme": {
  "domains": ["acme.example", {"domain": "news.acme.example", "limits": SCOPED}],
  "limits": LIMITS,
  "identities": [{"networks": ["198.51.100.0/24"], "limits": SCOPED},
                 {"sasl_user": "acme-app", "limits": SCOPED, "password_hash":
                  "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU"}]}}})";

void check_decision(const Decision& d) {
    if (!d.accepted() && !d.limits.empty()) __builtin_trap();
    for (const auto& l : d.limits) {
        if (l.rate.count < 1 || l.rate.count > kMaxLimitCount || l.rate.burst < 1 ||
            l.rate.burst > kMaxLimitCount || l.rate.per_seconds < 1 ||
            l.rate.per_seconds > kMaxPeriodSeconds || l.tenant != d.tenant)
            __builtin_trap();
        (void)l.key();
        (void)l.describe();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 16 * 1024) return 0;
    std::string_view text(reinterpret_cast<const char*>(data), size);

    // The text forms: parse, format, parse again gives the same value.
    if (auto p = parse_period(text); p && parse_period(format_period(*p)) != p) __builtin_trap();
    if (auto b = parse_byte_count(text);
        b && *b != 0 && parse_byte_count(format_count(LimitKind::bytes, *b)) != b)
        __builtin_trap();

    // The block, parsed once, placed at every level that takes one.
    auto block = nlohmann::json::parse(text, nullptr, false);
    if (block.is_discarded()) return 0;
    auto dump = [](const nlohmann::json& j) {
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    // Identity and domain blocks may not set mode or on_spike: drop them
    // there, so that a block valid at the top reaches the engine.
    const std::string limits = dump(block);
    if (block.is_object()) {
        block.erase("mode");
        block.erase("on_spike");
    }
    const std::string scoped = dump(block);
    std::string doc(kHead);
    doc += limits;
    std::string tail(kTail);
    for (auto [mark, value] : {std::pair{std::string_view("LIMITS"), &limits},
                               std::pair{std::string_view("SCOPED"), &scoped}})
        for (std::size_t at = tail.find(mark); at != std::string::npos;
             at = tail.find(mark, at + value->size()))
            tail.replace(at, mark.size(), *value);
    doc += tail;
    auto loaded = Policy::load_text(doc);
    if (!loaded) {
        for (const auto& e : loaded.error())
            (void)format_diagnostic(e);
        return 0;
    }
    const Policy& p = **loaded;
    for (const auto& w : p.warnings())
        (void)format_diagnostic(w);
    ConnectionFacts net;
    net.client_ip = IpAddress::parse("198.51.100.7");
    ConnectionFacts sasl = net;
    sasl.client_ip = IpAddress::parse("203.0.113.1");
    sasl.sasl_user = "acme-app";
    HeaderFactsForPolicy hdr;
    hdr.originators.push_back({relaygate::message::OriginatorField::from, "acme.example"});
    for (const auto* conn : {&net, &sasl})
        for (const char* domain : {"acme.example", "news.acme.example", "other.example"}) {
            EnvelopeFacts env{false, domain, {}};
            check_decision(p.at_mail_from(*conn, env));
            check_decision(p.at_header(*conn, env, hdr, Trace::off));
            check_decision(p.at_end_of_data(*conn, env, hdr, {}, Trace::off));
        }
    return 0;
}
