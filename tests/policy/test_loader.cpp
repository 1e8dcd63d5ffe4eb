// Tests for loading and linting: every rule, reported with its JSON path,
// all errors at once. Decisions are tested in test_engine.cpp.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "policy/engine/password_hash.hpp"
#include "policy_test_util.hpp"

using namespace relaygate::policy;
using namespace relaygate::policy::test;

namespace {

constexpr const char* kM365 = R"("providers": {"microsoft365": {"shared": true,
    "networks": ["40.92.0.0/15", "2a01:111:f400::/48"],
    "tenant_header": "X-MS-Exchange-CrossTenant-Id"}})";

std::string with_m365(std::string tenants) {
    return std::string(R"({"version": 1, )") + kM365 + R"(, "tenants": )" + tenants + "}";
}

std::string tenants_only(std::string tenants) {
    return R"({"version": 1, "tenants": )" + tenants + "}";
}

}  // namespace

TEST_CASE("a valid policy loads with counts, ids and a stable hash") {
    auto text = with_m365(R"({
        "acme": {"domains": ["acme.example", "*.mail.acme.example"],
                 "identities": [{"provider": "microsoft365", "tenant_id": "T1"}]},
        "beta": {"domains": ["beta.example"], "identities": [{"networks": ["192.0.2.0/24"]}]}})");
    auto p = must_load(text);
    CHECK(p->tenant_count() == 2);
    CHECK(p->domain_count() == 3);
    CHECK(p->tenant_ids() == std::vector<std::string>{"acme", "beta"});
    CHECK(p->hash().starts_with("sha256:"));
    CHECK(p->hash().size() == 7 + 64);
    // Canonical: whitespace and key order do not change the hash.
    auto reparsed = Policy::load(nlohmann::json::parse(text));
    REQUIRE(reparsed);
    CHECK((*reparsed)->hash() == p->hash());
    CHECK(p->provider_tenant_headers() == std::vector<std::string>{"X-MS-Exchange-CrossTenant-Id"});
    CHECK(p->warnings().empty());
    CHECK(p->default_mode() == Mode::enforce);
}

TEST_CASE("syntax errors, duplicate keys and unreadable files") {
    auto e = load_errors("{\"version\": 1,");
    CHECK(has_rule(e, "json_syntax"));
    CHECK(e.front().message.find("line 1") != std::string::npos);

    e = load_errors(tenants_only(
        R"({"acme": {"domains": ["a.example"], "identities": [{"networks": ["192.0.2.0/24"]}]},
                                    "acme": {"domains": ["b.example"], "identities": [{"networks": ["192.0.3.0/24"]}]}})"));
    CHECK(has_rule(e, "duplicate_key", "/tenants/acme"));

    e = load_errors(R"({"version": 1, "tenants": {"t": {"domains": ["a.example"],
                       "identities": [{"networks": ["192.0.2.0/24"]}, {"networks": ["192.0.3.0/24"], "networks": []}]}}})");
    CHECK(has_rule(e, "duplicate_key", "/tenants/t/identities/1/networks"));

    auto f = Policy::load_file("/nonexistent/relaygate/policy.json");
    REQUIRE_FALSE(f);
    CHECK(has_rule(f.error(), "io"));
}

TEST_CASE("every diagnostic has the line and column of its value") {
    auto e = load_errors(
        "{\"version\": 1,\n \"tenants\": {\"t\": {\"domains\": [\"a.example\"],\n"
        "   \"identities\": [{\"networks\": [\"192.0.2.0/24\"]}],\n"
        "   \"allow_null_sender\": \"yes\", \"typo\": 1}}}");
    REQUIRE(e.size() == 2);
    for (const auto& d : e) {
        CAPTURE(d.path);
        CHECK(d.line == 4);
    }
    CHECK(has_rule(e, "schema", "/tenants/t/allow_null_sender"));
    CHECK(format_diagnostic(e[0]).find("(line 4, column ") != std::string::npos);
    // An unknown key names the keys that are allowed.
    for (const auto& d : e)
        if (d.path == "/tenants/t/typo") CHECK(d.message.find("(allowed: ") != std::string::npos);

    // Duplicates: the second occurrence.
    e = load_errors("{\"version\": 1,\n \"version\": 1, \"tenants\": {}}");
    REQUIRE(e.size() == 1);
    CHECK(e[0].rule == "duplicate_key");
    CHECK(e[0].line == 2);
    CHECK(e[0].column == 13);

    // A document loaded without its text has no positions.
    auto doc = Policy::load(nlohmann::json::parse(R"({"version": 2, "tenants": {}})"));
    REQUIRE_FALSE(doc);
    CHECK(doc.error()[0].line == 0);
    CHECK(format_diagnostic(doc.error()[0]).starts_with("/version: "));
}

TEST_CASE("structure errors carry JSON paths and are all reported") {
    auto e = load_errors(R"({"version": 2, "mode": "audit", "extra": 1,
        "providers": {"p": {"networks": "1.2.3.0/24", "tenant_header": "Bad Header:"}},
        "tenants": {"bad id!": {"domains": ["a.example"], "identities": [{"networks": ["192.0.2.0/24"]}]},
                    "t": {"domains": [7, {"domain": "b.example", "shared": true}],
                          "allow_null_sender": "yes",
                          "identities": [{"networks": ["192.0.3.0/24"], "sasl_user": "x"}, 5,
                                         {"sasl_user": "u"}]}}})");
    CHECK(has_rule(e, "version", "/version"));
    CHECK(has_rule(e, "schema", "/mode"));
    CHECK(has_rule(e, "schema", "/extra"));
    CHECK(has_rule(e, "schema", "/providers/p/networks"));
    CHECK(has_rule(e, "schema", "/providers/p/tenant_header"));
    CHECK(has_rule(e, "invalid_name", "/tenants/bad id!"));
    CHECK(has_rule(e, "schema", "/tenants/t/domains/0"));
    CHECK(has_rule(e, "schema", "/tenants/t/domains/1/shared"));
    CHECK(has_rule(e, "schema", "/tenants/t/allow_null_sender"));
    CHECK(has_rule(e, "schema", "/tenants/t/identities/0"));
    CHECK(has_rule(e, "schema", "/tenants/t/identities/1"));
    CHECK(has_rule(e, "missing_password_hash", "/tenants/t/identities/2/sasl_user"));
    CHECK(e.size() >= 12);

    CHECK(has_rule(load_errors(R"({"tenants": {}})"), "schema", ""));
    CHECK(has_rule(load_errors(R"([1, 2])"), "schema", ""));
    // Paths escape "/" and "~" (RFC 6901).
    e = load_errors(R"({"version": 1, "tenants": {"a/b~c": 1}})");
    CHECK(has_rule(e, "invalid_name", "/tenants/a~1b~0c"));
    // "none" is the tenant label of transactions no tenant sent.
    e = load_errors(R"({"version": 1, "tenants": {"none": {"domains": ["a.example"],
        "identities": [{"networks": ["192.0.2.0/24"]}]}}})");
    CHECK(has_rule(e, "invalid_name", "/tenants/none"));
}

TEST_CASE("lint: a network identity inside a shared provider network is EchoSpoofing") {
    auto e = load_errors(with_m365(R"({"brand": {"domains": ["brand.example"],
        "identities": [{"networks": ["40.92.0.0/16", "40.0.0.0/8", "2a01:111:f400:1::/64", "198.51.100.0/24"]}]}})"));
    CHECK(has_rule(e, "shared_network_overlap", "/tenants/brand/identities/0/networks/0"));
    CHECK(has_rule(e, "shared_network_overlap",
                   "/tenants/brand/identities/0/networks/1"));  // contains it
    CHECK(has_rule(e, "shared_network_overlap", "/tenants/brand/identities/0/networks/2"));
    CHECK_FALSE(has_rule(e, "shared_network_overlap", "/tenants/brand/identities/0/networks/3"));
    for (const auto& d : e)
        if (d.rule == "shared_network_overlap") {
            CHECK(d.message.find("EchoSpoofing") != std::string::npos);
            CHECK(d.message.find("microsoft365") != std::string::npos);
        }
    // A provider marked "shared": false is someone's dedicated range.
    must_load(
        R"({"version": 1, "providers": {"dedicated": {"shared": false, "networks": ["192.0.2.0/24"],
        "tenant_header": "X-Tenant"}}, "tenants": {"t": {"domains": ["t.example"],
        "identities": [{"networks": ["192.0.2.0/25"]}, {"provider": "dedicated", "tenant_id": "t"}]}}})");
}

TEST_CASE("lint: domains") {
    auto e = load_errors(tenants_only(R"({
        "a": {"domains": ["a.example", "A.Example", "bücher.example", "xn--bcher-kva.example",
                          "*.com", "*.co.uk", "*.blogspot.com", "a.*.example", "*", "bad_domain.example",
                          "Bücher.example", "*.sub.a.example", "x..example"],
              "identities": [{"networks": ["192.0.2.0/24"]}]}})"));
    CHECK(has_rule(e, "duplicate_domain", "/tenants/a/domains/1"));
    CHECK(has_rule(e, "duplicate_domain", "/tenants/a/domains/3"));
    bool idn_message = false;
    for (const auto& d : e)
        if (d.path == "/tenants/a/domains/3")
            idn_message = d.message.find("U-label and A-label") != std::string::npos;
    CHECK(idn_message);
    CHECK(has_rule(e, "wildcard_public_suffix", "/tenants/a/domains/4"));
    CHECK(has_rule(e, "wildcard_public_suffix", "/tenants/a/domains/5"));
    CHECK(has_rule(e, "wildcard_public_suffix", "/tenants/a/domains/6"));  // private-section suffix
    CHECK(has_rule(e, "invalid_wildcard", "/tenants/a/domains/7"));
    CHECK(has_rule(e, "invalid_wildcard", "/tenants/a/domains/8"));
    CHECK(has_rule(e, "invalid_domain", "/tenants/a/domains/9"));
    CHECK(has_rule(e, "duplicate_domain", "/tenants/a/domains/10"));  // ASCII case folds first
    CHECK_FALSE(has_rule(e, "", "/tenants/a/domains/11"));
    CHECK(has_rule(e, "invalid_domain", "/tenants/a/domains/12"));

    auto p = must_load(tenants_only(
        R"({"a": {"domains": ["co.uk"], "identities": [{"networks": ["192.0.2.0/24"]}]}})"));
    CHECK(has_rule(p->warnings(), "domain_public_suffix", "/tenants/a/domains/0"));
}

TEST_CASE("lint: a domain granted to two tenants needs shared_domain on both") {
    auto two = [](const char* a, const char* b) {
        return tenants_only(std::string(R"({"a": {"domains": [)") + a +
                            R"(], "identities": [{"networks": ["192.0.2.0/24"]}]},
                               "b": {"domains": [)" +
                            b + R"(], "identities": [{"networks": ["198.51.100.0/24"]}]}})");
    };
    auto e = load_errors(two(R"("x.example")", R"("x.example")"));
    CHECK(has_rule(e, "domain_granted_twice", "/tenants/b/domains/0"));
    CHECK(e.size() == 1);
    e = load_errors(two(R"("*.x.example")", R"("mail.x.example")"));
    CHECK(has_rule(e, "domain_granted_twice", "/tenants/b/domains/0"));
    e = load_errors(two(R"("*.x.example")", R"("*.deep.x.example")"));
    CHECK(has_rule(e, "domain_granted_twice", "/tenants/b/domains/0"));
    e = load_errors(two(R"({"domain": "x.example", "shared_domain": true})", R"("x.example")"));
    CHECK(has_rule(e, "domain_granted_twice"));
    // IDN spellings are one domain across tenants too.
    e = load_errors(two(R"("bücher.example")", R"("xn--bcher-kva.example")"));
    CHECK(has_rule(e, "domain_granted_twice"));

    must_load(two(R"({"domain": "x.example", "shared_domain": true})",
                  R"({"domain": "x.example", "shared_domain": true})"));
    must_load(two(R"("*.x.example")", R"("x.example")"));  // *.x does not grant x
}

TEST_CASE("lint: networks") {
    auto e = load_errors(tenants_only(R"({"a": {"domains": ["a.example"],
        "identities": [{"networks": ["192.0.2.1/24", "2001:db8::1/32", "192.0.2.0/40", "host.example", []]}]}})"));
    CHECK(has_rule(e, "network_host_bits", "/tenants/a/identities/0/networks/0"));
    CHECK(has_rule(e, "network_host_bits", "/tenants/a/identities/0/networks/1"));
    CHECK(has_rule(e, "invalid_network", "/tenants/a/identities/0/networks/2"));
    CHECK(has_rule(e, "invalid_network", "/tenants/a/identities/0/networks/3"));
    CHECK(has_rule(e, "schema", "/tenants/a/identities/0/networks/4"));
    e = load_errors(
        R"({"version": 1, "providers": {"p": {"networks": ["10.0.0.1/8"], "tenant_header": "X-T"}},
                       "tenants": {"a": {"domains": ["a.example"], "identities": [{"provider": "p", "tenant_id": "1"}]}}})");
    CHECK(has_rule(e, "network_host_bits", "/providers/p/networks/0"));

    auto p = must_load(tenants_only(R"({
        "a": {"domains": ["a.example"], "identities": [{"networks": ["10.0.0.0/8", "0.0.0.0/1"]}]},
        "b": {"domains": ["b.example"], "identities": [{"networks": ["10.1.0.0/16"]}]},
        "c": {"domains": ["c.example"], "identities": [{"networks": ["10.1.0.0/16"]}]}})"));
    CHECK(has_rule(p->warnings(), "network_overlap", "/tenants/b/identities/0/networks/0"));
    CHECK(has_rule(p->warnings(), "network_overlap", "/tenants/c/identities/0/networks/0"));
    CHECK(has_rule(p->warnings(), "network_too_broad", "/tenants/a/identities/0/networks/1"));

    // IPv6 and IPv4 side by side, the enclosing networks in a later
    // tenant: each overlap names the enclosing or equal network and where
    // it is.
    p = must_load(tenants_only(R"({
        "a": {"domains": ["a.example"], "identities": [{"networks": ["2001:db8:1::/48", "10.2.0.0/16"]}]},
        "b": {"domains": ["b.example"], "identities": [{"networks": ["2001:db8::/32", "10.0.0.0/8"]}]},
        "c": {"domains": ["c.example"], "identities": [{"networks": ["2001:db8:1::/48", "2001:db9::/32"]}]}})"));
    auto overlap = [&](const std::string& path) {
        for (const auto& w : p->warnings())
            if (w.rule == "network_overlap" && w.path == path) return w.message;
        return std::string("none");
    };
    CHECK(overlap("/tenants/a/identities/0/networks/0") ==
          "2001:db8:1::/48 lies inside network 2001:db8::/32 of tenant \"b\" "
          "(/tenants/b/identities/0/networks/0): the longest prefix wins");
    CHECK(overlap("/tenants/a/identities/0/networks/1") ==
          "10.2.0.0/16 lies inside network 10.0.0.0/8 of tenant \"b\" "
          "(/tenants/b/identities/0/networks/1): the longest prefix wins");
    CHECK(overlap("/tenants/c/identities/0/networks/0") ==
          "2001:db8:1::/48 equals network 2001:db8:1::/48 of tenant \"a\" "
          "(/tenants/a/identities/0/networks/0): decided by domain, refused as ambiguous "
          "otherwise");
    CHECK(overlap("/tenants/c/identities/0/networks/1") == "none");
    CHECK(overlap("/tenants/b/identities/0/networks/0") == "none");
}

TEST_CASE("lint: unknown provider, empty tenants") {
    auto e = load_errors(with_m365(R"({
        "a": {"domains": ["a.example"], "identities": [{"provider": "google", "tenant_id": "x"}]},
        "b": {"domains": [], "identities": [{"networks": ["192.0.2.0/24"]}]},
        "c": {"domains": ["c.example"], "identities": []},
        "d": {"domains": ["d.example"]}})"));
    CHECK(has_rule(e, "unknown_provider", "/tenants/a/identities/0/provider"));
    CHECK(has_rule(e, "empty_tenant", "/tenants/b/domains"));
    CHECK(has_rule(e, "empty_tenant", "/tenants/c/identities"));
    CHECK(has_rule(e, "empty_tenant", "/tenants/d"));
}

TEST_CASE("lint: fingerprints and password hashes") {
    auto h = hash_password("pw", 1000);
    REQUIRE(h);
    std::string good_fp(64, 'a');
    auto e = load_errors(tenants_only(R"({"a": {"domains": ["a.example"], "identities": [
        {"client_cert_sha256": "abc"},
        {"client_spki_sha256": ")" + std::string(64, 'g') +
                                      R"("},
        {"sasl_user": "u1", "password_hash": "hunter2"},
        {"sasl_user": "u2", "password_hash": ")" +
                                      *h + R"("},
        {"sasl_user": "u2", "password_hash": ")" +
                                      *h + R"("},
        {"sasl_user": "", "password_hash": ")" +
                                      *h + R"("},
        {"client_cert_sha256": ")" + good_fp +
                                      R"(", "tenant_id": "x"}]}})"));
    CHECK(has_rule(e, "invalid_fingerprint", "/tenants/a/identities/0/client_cert_sha256"));
    CHECK(has_rule(e, "invalid_fingerprint", "/tenants/a/identities/1/client_spki_sha256"));
    CHECK(has_rule(e, "invalid_password_hash", "/tenants/a/identities/2/password_hash"));
    CHECK(has_rule(e, "duplicate_sasl_user", "/tenants/a/identities/4/sasl_user"));
    CHECK(message_of(e, "duplicate_sasl_user")
              .find("already defined at "
                    "/tenants/a/identities/3/sasl_user (tenant "
                    "\"a\")") != std::string::npos);
    CHECK(has_rule(e, "schema", "/tenants/a/identities/5/sasl_user"));
    CHECK(has_rule(e, "schema", "/tenants/a/identities/6/tenant_id"));

    // Colon-separated upper-case fingerprints (openssl x509 -fingerprint) are fine.
    std::string colons;
    for (int i = 0; i < 32; ++i) {
        if (i) colons += ':';
        colons += "AB";
    }
    auto p = must_load(tenants_only(R"({"a": {"domains": ["a.example"], "identities": [
        {"client_cert_sha256": ")" + colons +
                                    R"("},
        {"sasl_user": "u", "password_hash": ")" +
                                    *h + R"("}]}})"));
    CHECK(has_rule(p->warnings(), "weak_password_hash", "/tenants/a/identities/1/password_hash"));
    REQUIRE(p->sasl_hash("u"));
    CHECK(*p->sasl_hash("u") == *h);
    CHECK(p->sasl_hash("U") == nullptr);
    CHECK(p->sasl_tenant("u") == "a");
    CHECK(p->sasl_tenant("nobody").empty());
}

TEST_CASE("warnings: report mode, shared identities, unused providers") {
    auto p = must_load(R"({"version": 1, "mode": "report", )" + std::string(kM365) + R"(,
        "tenants": {
          "a": {"mode": "report", "domains": ["a.example"], "identities": [{"client_cert_sha256": ")" +
                       std::string(64, 'a') + R"("}]},
          "b": {"mode": "enforce", "domains": ["b.example"], "identities": [{"client_cert_sha256": ")" +
                       std::string(64, 'a') + R"("}]}}})");
    CHECK(p->default_mode() == Mode::report);
    CHECK(has_rule(p->warnings(), "report_mode", "/mode"));
    CHECK(has_rule(p->warnings(), "report_mode", "/tenants/a/mode"));
    CHECK(has_rule(p->warnings(), "identity_shared", "/tenants/b/identities/0"));
    CHECK(has_rule(p->warnings(), "unused_provider", "/providers/microsoft365"));
    CHECK(p->provider_tenant_headers().empty());  // no tenant uses the provider
}

TEST_CASE("warnings: a shared identity names where it was first listed") {
    const std::string x(64, 'a'), y(64, 'b');
    auto cert = [](const std::string& fp) { return R"({"client_cert_sha256": ")" + fp + R"("})"; };
    auto spki = [](const std::string& fp) { return R"({"client_spki_sha256": ")" + fp + R"("})"; };
    const std::string prov = R"({"provider": "microsoft365", "tenant_id": "T1"})";
    auto p = must_load(R"({"version": 1, )" + std::string(kM365) + R"(, "tenants": {
        "a": {"domains": ["a.example"], "identities": [)" +
                       cert(y) + ", " + prov + ", " + cert(x) + ", " + spki(x) + R"(]},
        "b": {"domains": ["b.example"], "identities": [)" +
                       spki(x) + ", " + cert(x) + ", " + cert(y) + R"(]},
        "c": {"domains": ["c.example"], "identities": [)" +
                       R"({"provider": "microsoft365", "tenant_id": "t1"}, )" + cert(x) + "]}}}");
    auto first_at = [&](const std::string& path) {
        for (const auto& w : p->warnings())
            if (w.rule == "identity_shared" && w.path == path) {
                const auto at = w.message.find("(first at ");
                return at == std::string::npos
                           ? w.message
                           : w.message.substr(at + 10, w.message.find(')', at) - at - 10);
            }
        return std::string("no warning at ") + path;
    };
    CHECK(first_at("/tenants/b/identities/0") == "/tenants/a/identities/3");  // SPKI x
    CHECK(first_at("/tenants/b/identities/1") == "/tenants/a/identities/2");  // cert x
    CHECK(first_at("/tenants/b/identities/2") == "/tenants/a/identities/0");  // cert y
    CHECK(first_at("/tenants/c/identities/0") == "/tenants/a/identities/1");  // tenant id
    CHECK(first_at("/tenants/c/identities/1") == "/tenants/a/identities/2");  // cert x, third owner
}

TEST_CASE("load never throws on hostile JSON values") {
    for (
        const char* text :
        {"null", "1", "\"x\"", R"({"version": 1.5, "tenants": []})",
         R"({"version": 1, "tenants": {"a": {"domains": [null], "identities": [null]}}})",
         R"({"version": 1, "providers": [], "tenants": {"a": []}})",
         R"({"version": 1, "tenants": {"a": {"domains": ["a.example"], "identities": [{"networks": {}}]}}})"}) {
        CAPTURE(text);
        CHECK_FALSE(Policy::load_text(text));
    }
}

TEST_CASE("the streamed load and the whole-tree load agree") {
    // Tenants out of order in the file: the same hash as in order (the
    // canonical text sorts them), the same ids, the same decisions.
    auto tenant = [](const char* id, const char* net) {
        return fmt::format(R"("{}": {{"domains": ["{}.example", "*.w.{}.example"],
                               "identities": [{{"networks": ["{}"]}}]}})",
                           id, id, id, net);
    };
    const std::string unsorted = R"({"tenants": {)" + tenant("zeta", "192.0.2.0/24") + ", " +
                                 tenant("alpha", "198.51.100.0/24") + ", " +
                                 tenant("mid", "203.0.113.0/24") + R"(}, "version": 1})";
    const std::string sorted =
        R"({"version": 1, "tenants": {)" + tenant("alpha", "198.51.100.0/24") + ", " +
        tenant("mid", "203.0.113.0/24") + ", " + tenant("zeta", "192.0.2.0/24") + "}}";
    auto a = must_load(unsorted);
    auto b = must_load(sorted);
    auto tree = Policy::load(nlohmann::json::parse(unsorted));
    REQUIRE(tree);
    CHECK(a->hash() == b->hash());
    CHECK(a->hash() == (*tree)->hash());
    CHECK(a->tenant_ids() == std::vector<std::string>{"alpha", "mid", "zeta"});
    // has_tenant's binary search relies on that order, from either loader.
    for (const auto& p : {a, *tree}) {
        for (const char* id : {"alpha", "mid", "zeta"})
            CHECK(p->has_tenant(id));
        for (const char* id : {"", "a", "alphb", "mi", "zeta0", "zz", "Mid"})
            CHECK_FALSE(p->has_tenant(id));
    }
    CHECK(a->at_mail_from(from_ip("192.0.2.9"), env("x.w.zeta.example")).tenant == "zeta");
    // An escaped top-level key is not plain enough to stream: the whole
    // tree is parsed instead, with the same result.
    const std::string escaped =
        R"({"\u0076ersion": 1, "tenants": {)" + tenant("zeta", "192.0.2.0/24") + ", " +
        tenant("alpha", "198.51.100.0/24") + ", " + tenant("mid", "203.0.113.0/24") + "}}";
    CHECK(must_load(escaped)->hash() == a->hash());
    // Errors found while streaming are located in the text like any other.
    auto e = load_errors(R"({"version": 1, "tenants": {
  "a": {"domains": ["a.example"], "identities": [{"networks": ["192.0.2.1/24"]}]}}})");
    REQUIRE(has_rule(e, "network_host_bits"));
    CHECK(e.front().line == 2);
    // Both compile the tenants in the order of their ids, so they report
    // the same diagnostics in the same order (here: one domain granted to
    // two tenants, reported at the later one, "b", written first).
    const std::string twice = R"({"version": 1, "tenants": {
  "b": {"domains": ["x.example", "b.example"], "identities": [{"networks": ["192.0.2.0/24"]}]},
  "a": {"domains": ["x.example"], "identities": [{"networks": ["198.51.100.0/24"]}]}}})";
    auto streamed = load_errors(twice);
    auto whole = Policy::load(nlohmann::json::parse(twice));
    REQUIRE_FALSE(whole);
    REQUIRE(streamed.size() == whole.error().size());
    for (std::size_t i = 0; i < streamed.size(); ++i) {
        CHECK(streamed[i].path == whole.error()[i].path);
        CHECK(streamed[i].message == whole.error()[i].message);
    }
    REQUIRE(has_rule(streamed, "domain_granted_twice"));
    CHECK(streamed.front().path == "/tenants/b/domains/0");
    CHECK(streamed.front().line == 2);
    // A tenant defined twice among many is not plain enough to stream; the
    // whole parse names it.
    e = load_errors(R"({"version": 1, "tenants": {"a": {}, "b": {}, "c": {}, "a": {}}})");
    REQUIRE(has_rule(e, "duplicate_key"));
    CHECK(e.front().path == "/tenants/a");
    // And a syntax error deep in the tenants falls back to the full parse,
    // which reports where it is.
    e = load_errors("{\"version\": 1, \"tenants\": {\n\"a\": {\"domains\": [\"a.example\",]}}}");
    REQUIRE(has_rule(e, "json_syntax"));
    CHECK(e.front().message.find("line 2") != std::string::npos);
}

TEST_CASE("a policy file rewritten in place while it is read is read again, then refused") {
    // 10k tenants: each attempt reads ranges for a while, and a thread keeps
    // changing the file's modification time meanwhile (as a rewrite would).
    std::string text = R"({"version": 1, "tenants": {)";
    for (int i = 0; i < 10000; ++i)
        text += fmt::format(R"({}"t{}": {{"domains": ["t{}.example"], "identities": )"
                            R"([{{"networks": ["10.{}.{}.0/24"]}}]}})",
                            i ? "," : "", i, i, i / 256, i % 256);
    text += "}}";
    TempPolicyFile file(text);
    const char* name = file.path.c_str();
    auto steady = Policy::load_file(name);
    REQUIRE(steady);
    CHECK((*steady)->tenant_count() == 10000);

    std::atomic<bool> stop{false};
    std::thread touch([&] {
        for (long k = 1; !stop; ++k) {
            const timespec times[2] = {{k, 0}, {k, 0}};
            ::utimensat(AT_FDCWD, name, times, 0);
        }
    });
    auto changing = Policy::load_file(name);
    stop = true;
    touch.join();
    REQUIRE_FALSE(changing);
    CHECK(has_rule(changing.error(), "io"));
    CHECK(changing.error().front().message.find("kept changing while it was read") !=
          std::string::npos);
}
