// Credentials apart from the policy: the "user:hash" file, the directory of
// one file per user, and how a policy's sasl_user takes its hash from them.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "policy/engine/credentials.hpp"
#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy_source.hpp"
#include "policy_test_util.hpp"
#include "tests/common/temp_dir.hpp"

using namespace relaygate::policy;
using namespace relaygate::policy::test;
namespace fs = std::filesystem;
using relaygate::test::TempDir;

namespace {

const std::string& hash_a() {
    static const std::string h = *hash_password("password-a", 1000);
    return h;
}
const std::string& hash_b() {
    static const std::string h = *hash_password("password-b", 100000);
    return h;
}

std::vector<Diagnostic> parse_errors(std::string_view text) {
    auto r = parse_credentials(text, "creds");
    if (r) FAIL("credentials parsed but should not have");
    return r ? std::vector<Diagnostic>{} : r.error();
}

constexpr const char* kSaslPolicy = R"({"version": 1, "tenants": {
    "app": {"domains": ["app.example"], "identities": [{"sasl_user": "app-user"}]}}})";

}  // namespace

TEST_CASE("the credentials file: user:hash lines, comments, CRLF") {
    auto r = parse_credentials("# rotated 2026-12-01\n\napp-user:" + hash_a() +
                                   "\r\n  other@example.net:" + hash_b() + "  \n",
                               "creds");
    REQUIRE(r);
    CHECK(r->source == "creds");
    REQUIRE(r->users.size() == 2);
    CHECK(r->users.at("app-user").hash == hash_a());
    CHECK(r->users.at("app-user").where == "creds:3");
    CHECK(r->users.at("other@example.net").hash == hash_b());
    // An empty file is valid: no users.
    REQUIRE(parse_credentials("", "creds"));
}

TEST_CASE("the credentials file: every bad line is reported with its line") {
    auto e = parse_errors("no colon here\n:" + hash_a() + "\nu:hunter2\nv:" + hash_a() +
                          "\nv:" + hash_b() + "\n");
    REQUIRE(e.size() == 4);
    CHECK(e[0].rule == "invalid_credential");
    CHECK(e[0].line == 1);
    CHECK(e[0].file == "creds");
    CHECK(e[1].rule == "invalid_credential");  // empty user name
    CHECK(e[1].line == 2);
    CHECK(e[2].rule == "invalid_password_hash");
    CHECK(e[2].line == 3);
    CHECK(e[2].message.find("\"u\"") != std::string::npos);
    CHECK(e[3].rule == "duplicate_sasl_user");
    CHECK(e[3].line == 5);
    CHECK(e[3].message.find("creds:4") != std::string::npos);
    // The hash itself never appears in a message.
    for (const auto& d : e)
        CHECK(d.message.find(hash_a()) == std::string::npos);
}

TEST_CASE("a sasl_user without password_hash takes it from the credentials") {
    auto creds = parse_credentials("app-user:" + hash_a() + "\n", "creds");
    REQUIRE(creds);
    auto p = Policy::load_text(kSaslPolicy, &*creds);
    REQUIRE(p);
    REQUIRE((*p)->sasl_hash("app-user") != nullptr);
    CHECK(*(*p)->sasl_hash("app-user") == hash_a());
    CHECK(verify_password(*(*p)->sasl_hash("app-user"), "password-a"));
    CHECK((*p)->sasl_tenant("app-user") == "app");
    // The weak hash (1000 iterations) is linted, pointing at the identity.
    bool weak = false;
    for (const auto& w : (*p)->warnings())
        weak |= w.rule == "weak_password_hash" && w.path == "/tenants/app/identities/0/sasl_user" &&
                w.message.find("credentials file") != std::string::npos;
    CHECK(weak);
}

TEST_CASE("missing, doubled and unused credentials") {
    // Neither in the policy nor in the credentials: refused, naming the file.
    auto none = parse_credentials("", "creds");
    REQUIRE(none);
    auto r = Policy::load_text(kSaslPolicy, &*none);
    REQUIRE(!r);
    CHECK(has_rule(r.error(), "missing_password_hash", "/tenants/app/identities/0/sasl_user"));
    CHECK(r.error().front().message.find("creds") != std::string::npos);
    CHECK(r.error().front().line == 2);
    // Without any credentials the message says where a hash may come from.
    r = Policy::load_text(kSaslPolicy);
    REQUIRE(!r);
    CHECK(r.error().front().message.find("credentials_file") != std::string::npos);

    // In both: ambiguous, refused.
    auto both = parse_credentials("app-user:" + hash_a(), "creds");
    REQUIRE(both);
    r = Policy::load_text(R"({"version": 1, "tenants": {"app": {"domains": ["app.example"],
        "identities": [{"sasl_user": "app-user", "password_hash": ")" +
                              hash_b() + R"("}]}}})",
                          &*both);
    REQUIRE(!r);
    CHECK(
        has_rule(r.error(), "duplicate_password_hash", "/tenants/app/identities/0/password_hash"));

    // A credential nobody uses: a warning naming its line, the policy loads.
    auto extra = parse_credentials("app-user:" + hash_a() + "\nleft-over:" + hash_b(), "creds");
    REQUIRE(extra);
    auto p = Policy::load_text(kSaslPolicy, &*extra);
    REQUIRE(p);
    bool unused = false;
    for (const auto& w : (*p)->warnings())
        unused |= w.rule == "unused_credential" && w.file == "creds:2" &&
                  w.message.find("left-over") != std::string::npos && w.line == 0;
    CHECK(unused);
}

TEST_CASE("the credentials directory: one file per user, like a mounted Secret") {
    TempDir dir;
    dir.write("app-user", hash_a() + "\n");
    dir.write("other", hash_b());
    // kubelet's bookkeeping entries start with '.' and are skipped.
    dir.write(".hidden", "not a hash");
    fs::create_directory(dir.path / "..2026_12_05_10_00_00.000000001");
    auto c = load_credentials(dir.path);
    REQUIRE(c);
    CHECK(c->users.size() == 2);
    CHECK(c->users.at("app-user").hash == hash_a());
    CHECK(c->users.at("app-user").where == (dir.path / "app-user").string());

    dir.write("broken", "hunter2\n");
    auto bad = load_credentials(dir.path);
    REQUIRE(!bad);
    CHECK(has_rule(bad.error(), "invalid_password_hash"));
    CHECK(bad.error().front().file == (dir.path / "broken").string());

    auto missing = load_credentials(dir.path / "nope");
    REQUIRE(!missing);
    CHECK(has_rule(missing.error(), "io"));
}

TEST_CASE("load_policy reads the credentials named by the source") {
    TempDir dir;
    auto policy = dir.write("policy.json", kSaslPolicy);
    auto creds = dir.write("credentials", "app-user:" + hash_a() + "\n");
    auto p = load_policy({policy, {}, creds, {}});
    REQUIRE(p);
    CHECK(*(*p)->sasl_hash("app-user") == hash_a());
    // A broken credentials file refuses the whole load: fail closed.
    dir.write("credentials", "app-user:not-a-hash\n");
    auto r = load_policy({policy, {}, creds, {}});
    REQUIRE(!r);
    CHECK(has_rule(r.error(), "invalid_password_hash"));
    CHECK(r.error().front().file == creds.string());
}
