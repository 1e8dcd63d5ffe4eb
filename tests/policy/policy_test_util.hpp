// Helpers shared by the policy tests: load a policy from inline JSON and
// build facts tersely. Test-only; not part of the engine.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/engine/policy.hpp"

namespace relaygate::policy::test {

// A policy text in a temporary file, removed with the object.
struct TempPolicyFile {
    std::string path = "/tmp/relaygate-policy-test-XXXXXX";
    explicit TempPolicyFile(std::string_view text) {
        const int fd = ::mkstemp(path.data());
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
        ::close(fd);
    }
    ~TempPolicyFile() { ::unlink(path.c_str()); }
    TempPolicyFile(const TempPolicyFile&) = delete;
    TempPolicyFile& operator=(const TempPolicyFile&) = delete;
};

inline void same_diagnostics(const std::vector<Diagnostic>& a, const std::vector<Diagnostic>& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CAPTURE(format_diagnostic(a[i]));
        CHECK(a[i].path == b[i].path);
        CHECK(a[i].rule == b[i].rule);
        CHECK(a[i].message == b[i].message);
        CHECK(a[i].line == b[i].line);
        CHECK(a[i].column == b[i].column);
    }
}

// The same text loaded from a file, which is read in ranges and never held
// whole: every test of load_text also checks that load_file agrees, and
// load_descriptor on a descriptor left at the end (as a file just written).
inline LoadResult load_via_file(std::string_view text) {
    TempPolicyFile file(text);
    auto r = Policy::load_file(file.path);
    const int fd = ::open(file.path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    ::lseek(fd, 0, SEEK_END);
    auto d = Policy::load_descriptor(fd, file.path);
    ::close(fd);
    REQUIRE(bool(d) == bool(r));
    if (r) {
        CHECK((*d)->hash() == (*r)->hash());
    } else {
        same_diagnostics(r.error(), d.error());
    }
    return r;
}

inline std::shared_ptr<const Policy> must_load(std::string_view text) {
    auto r = Policy::load_text(text);
    if (!r) {
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        FAIL("policy did not load");
    }
    auto f = load_via_file(text);
    REQUIRE(f);
    CHECK((*f)->hash() == (*r)->hash());
    same_diagnostics((*r)->warnings(), (*f)->warnings());
    return *r;
}

// The errors of a policy that must not load.
inline std::vector<Diagnostic> load_errors(std::string_view text) {
    auto r = Policy::load_text(text);
    if (r) FAIL("policy loaded but should not have");
    auto f = load_via_file(text);
    REQUIRE_FALSE(f);
    same_diagnostics(r.error(), f.error());
    return r ? std::vector<Diagnostic>{} : r.error();
}

inline bool has_rule(const std::vector<Diagnostic>& ds, std::string_view rule,
                     std::string_view path = {}) {
    for (const auto& d : ds)
        if (d.rule == rule && (path.empty() || d.path == path)) return true;
    return false;
}

// The message of the first diagnostic with this rule ("" if none).
inline std::string message_of(const std::vector<Diagnostic>& ds, std::string_view rule) {
    for (const auto& d : ds)
        if (d.rule == rule) return d.message;
    return {};
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
