// Helpers shared by the policy tests: load a policy from inline JSON and
// build facts tersely. Test-only; not part of the engine.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "policy/engine/policy.hpp"

namespace relaygate::policy::test {

inline std::shared_ptr<const Policy> must_load(std::string_view text) {
    auto r = Policy::load_text(text);
    if (!r) {
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        FAIL("policy did not load");
    }
    return *r;
}

// The errors of a policy that must not load.
inline std::vector<Diagnostic> load_errors(std::string_view text) {
    auto r = Policy::load_text(text);
    if (r) FAIL("policy loaded but should not have");
    return r ? std::vector<Diagnostic>{} : r.error();
}

inline bool has_rule(const std::vector<Diagnostic>& ds, std::string_view rule,
                     std::string_view path = {}) {
    for (const auto& d : ds)
        if (d.rule == rule && (path.empty() || d.path == path)) return true;
    return false;
}

inline ConnectionFacts from_ip(std::string_view ip) {
    ConnectionFacts c;
    c.client_ip = IpAddress::parse(ip);
    REQUIRE(c.client_ip);
    return c;
}

inline EnvelopeFacts env(std::string domain) {
    return EnvelopeFacts{domain.empty(), domain, {}};
}

inline HeaderFactsForPolicy from_header(std::string domain) {
    HeaderFactsForPolicy h;
    h.originators.push_back({message::OriginatorField::from, std::move(domain)});
    return h;
}

}  // namespace relaygate::policy::test
