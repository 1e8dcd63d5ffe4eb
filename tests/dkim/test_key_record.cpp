// Tests for gateway/dkim/key_record: the RFC 6376 3.6.1 tags, RFC 8463 raw
// Ed25519 keys, revocation, and the 1024-bit RSA floor (RFC 8301 3.2).
#include "gateway/dkim/key_record.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

using namespace relaygate::dkim;

namespace {

std::string record(const std::string& key_name) {
    std::ifstream in(std::string(RELAYGATE_SOURCE_DIR) + "/tests/dkim/vectors/dns/" + key_name +
                     ".txt");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
        s.pop_back();
    return s;
}

const std::string kEd = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

std::string error_of(std::string_view txt, Algorithm a) {
    auto r = parse_key_record(txt, a);
    return r ? "ok" : r.error();
}

}  // namespace

TEST_CASE("RFC 8463 A.2 records") {
    auto ed = parse_key_record(record("brisbane._domainkey.football.example.com"),
                               Algorithm::ed25519_sha256);
    REQUIRE(ed.ok());
    CHECK(ed->algorithm == Algorithm::ed25519_sha256);
    CHECK(EVP_PKEY_get_base_id(ed->key.get()) == EVP_PKEY_ED25519);
    auto rsa =
        parse_key_record(record("test._domainkey.football.example.com"), Algorithm::rsa_sha256);
    REQUIRE(rsa.ok());
    CHECK(EVP_PKEY_get_bits(rsa->key.get()) == 1024);
}

TEST_CASE("generated records (opendkim-genkey, openssl)") {
    CHECK(error_of(record("rsa1024._domainkey.vectors.example"), Algorithm::rsa_sha256) == "ok");
    CHECK(error_of(record("rsa2048._domainkey.vectors.example"), Algorithm::rsa_sha256) == "ok");
    CHECK(error_of(record("ed25519._domainkey.vectors.example"), Algorithm::ed25519_sha256) ==
          "ok");
    CHECK(error_of(record("rsa512._domainkey.vectors.example"), Algorithm::rsa_sha256) ==
          "RSA key shorter than 1024 bits");
}

TEST_CASE("tags") {
    const std::string rsa_p = record("rsa1024._domainkey.vectors.example")
                                  .substr(record("rsa1024._domainkey.vectors.example").find("p="));
    CHECK(error_of("k=ed25519; p=" + kEd, Algorithm::ed25519_sha256) == "ok");
    CHECK(error_of("v=DKIM1;k=ed25519;h=sha1:sha256;s=email:other;t=y;p=" + kEd,
                   Algorithm::ed25519_sha256) == "ok");
    CHECK(error_of("s=*; k=ed25519; p=" + kEd, Algorithm::ed25519_sha256) == "ok");
    CHECK(error_of(rsa_p, Algorithm::rsa_sha256) == "ok");  // k= defaults to rsa
    CHECK(error_of("k=ed25519; p=" + kEd, Algorithm::rsa_sha256) == "key type does not match a=");
    CHECK(error_of(rsa_p, Algorithm::ed25519_sha256) == "key type does not match a=");
    CHECK(error_of("k=ed25519; " + rsa_p, Algorithm::ed25519_sha256) ==
          "p= is not a 32-octet Ed25519 key");
    CHECK(error_of("k=rsa; p=" + kEd, Algorithm::rsa_sha256) ==
          "p= is not an RSA SubjectPublicKeyInfo");
    CHECK(error_of("k=ed25519; v=DKIM1; p=" + kEd, Algorithm::ed25519_sha256) ==
          "v= is not the first tag");
    CHECK(error_of("v=DKIM2; k=ed25519; p=" + kEd, Algorithm::ed25519_sha256) != "ok");
    CHECK(error_of("k=dsa; p=" + kEd, Algorithm::ed25519_sha256) == "unsupported key type k=dsa");
    CHECK(error_of("h=sha1; k=ed25519; p=" + kEd, Algorithm::ed25519_sha256) ==
          "key h= does not allow sha256");
    CHECK(error_of("s=other; k=ed25519; p=" + kEd, Algorithm::ed25519_sha256) ==
          "key s= does not allow email");
    CHECK(error_of("v=DKIM1; k=ed25519", Algorithm::ed25519_sha256) == "key record without p=");
    CHECK(error_of("v=DKIM1; k=ed25519; p=", Algorithm::ed25519_sha256) == "key revoked");
    CHECK(error_of("v=DKIM1; p= ", Algorithm::rsa_sha256) == "key revoked");
    CHECK(error_of("k=ed25519; p=%%%", Algorithm::ed25519_sha256) == "bad base64 in p=");
    CHECK(error_of("k=ed25519; p=AAAA", Algorithm::ed25519_sha256) ==
          "p= is not a 32-octet Ed25519 key");
    CHECK(error_of("k=ed25519; p=" + kEd + "; p=" + kEd, Algorithm::ed25519_sha256) != "ok");
    CHECK(error_of("", Algorithm::rsa_sha256) != "ok");
    CHECK(error_of("garbage", Algorithm::rsa_sha256) != "ok");
    // DNS TXT strings split inside p= are concatenated by the caller; WSP inside p= is fine.
    CHECK(error_of("k=ed25519; p=" + kEd.substr(0, 10) + " " + kEd.substr(10),
                   Algorithm::ed25519_sha256) == "ok");
}
