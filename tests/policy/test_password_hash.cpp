// Tests for PBKDF2 password hashes: format, verification, strict parsing.
#include "policy/engine/password_hash.hpp"

#include "policy/engine/policy.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace relaygate::policy;

TEST_CASE("hash and verify") {
    auto h = hash_password("s3cret", 1000);
    REQUIRE(h);
    CHECK(h->starts_with("$pbkdf2-sha256$i=1000$"));
    CHECK(verify_password(*h, "s3cret"));
    CHECK_FALSE(verify_password(*h, "s3cret "));
    CHECK_FALSE(verify_password(*h, ""));
    auto h2 = hash_password("s3cret", 1000);
    CHECK(*h2 != *h);  // salted
    CHECK(verify_password(*h2, "s3cret"));
    auto info = parse_password_hash(*h);
    REQUIRE(info);
    CHECK(info->iterations == 1000);
    CHECK(info->salt.size() == 16);
    CHECK(info->key.size() == 32);
}

TEST_CASE("known answer: PBKDF2-HMAC-SHA256(\"password\", \"saltsalt\", 4096)") {
    // Key computed independently with Python's hashlib.pbkdf2_hmac.
    const std::string hash =
        "$pbkdf2-sha256$i=4096$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU";
    CHECK(verify_password(hash, "password"));
    CHECK_FALSE(verify_password(hash, "Password"));
    // Same key, different iteration count: no match.
    CHECK_FALSE(verify_password(
        "$pbkdf2-sha256$i=4097$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU",
        "password"));
}

TEST_CASE("malformed hashes are refused, never verified") {
    const char* bad[] = {
        "",
        "plaintext",
        "$pbkdf2-sha1$i=1000$c2FsdHNhbHQ$AAAA",
        "$pbkdf2-sha256$i=999$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$pbkdf2-sha256$i=10000001$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$pbkdf2-sha256$i=01000$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$pbkdf2-sha256$i=1000$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  // 4-byte salt
        "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$AAAA",                                    // short key
        "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ",
        "$pbkdf2-sha256$i=x$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (const char* h : bad) {
        CAPTURE(h);
        CHECK_FALSE(parse_password_hash(h));
        CHECK_FALSE(verify_password(h, "password"));
    }
    CHECK_FALSE(hash_password("x", 10));
}

TEST_CASE("the decoy hash costs what the policy's users cost and matches no password") {
    const auto decoy = decoy_password_hash(1234);
    auto info = parse_password_hash(decoy);
    REQUIRE(info.ok());
    CHECK(info->iterations == 1234);
    CHECK_FALSE(verify_password(decoy, ""));
    CHECK_FALSE(verify_password(decoy, "password"));
    CHECK(decoy != decoy_password_hash(1234));  // fresh salt and key each time

    // The policy's decoy takes the highest iteration count of its users,
    // so an unknown user is never cheaper to check than a known one.
    auto slow = hash_password("a", 3000);
    auto fast = hash_password("b", 2000);
    REQUIRE(slow.ok());
    REQUIRE(fast.ok());
    const std::string text = R"({"version": 1, "tenants": {"t": {"domains": ["t.example"],
        "identities": [{"sasl_user": "slow", "password_hash": ")" +
                             *slow + R"("},
                       {"sasl_user": "fast", "password_hash": ")" +
                             *fast + R"("}]}}})";
    auto policy = relaygate::policy::Policy::load_text(text);
    REQUIRE(policy.ok());
    auto decoy_info = parse_password_hash((*policy)->sasl_decoy_hash());
    REQUIRE(decoy_info.ok());
    CHECK(decoy_info->iterations == 3000);
}
