// Tests for gateway/dkim/canon: the RFC 6376 3.4.5 example, empty bodies,
// l= truncation, b= removal, and the body hasher fed at every split point.
#include "gateway/dkim/canon.hpp"

#include <doctest/doctest.h>

#include <string>

#include "gateway/common/base64.hpp"
#include "tests/smtp/split_feed.hpp"

using namespace relaygate;
using namespace relaygate::dkim;

namespace {

std::string sha256(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    REQUIRE(EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr) == 1);
    return std::string(reinterpret_cast<char*>(md), n);
}

std::string hash_body(Canon c, std::string_view body, std::optional<std::uint64_t> l = {}) {
    BodyHasher h(c, l);
    h.update(body);
    return h.finish();
}

// RFC 6376 3.4.5.
const std::string kHeaderA = "A: X\r\n";
const std::string kHeaderB = "B : Y\t\r\n\tZ  \r\n";
const std::string kBody = " C \r\nD \t E\r\n\r\n\r\n";

}  // namespace

TEST_CASE("RFC 6376 3.4.5 example, relaxed") {
    CHECK(canonicalize_header(Canon::relaxed, kHeaderA) == "a:X\r\n");
    CHECK(canonicalize_header(Canon::relaxed, kHeaderB) == "b:Y Z\r\n");
    CHECK(hash_body(Canon::relaxed, kBody) == sha256(" C\r\nD E\r\n"));
}

TEST_CASE("RFC 6376 3.4.5 example, simple") {
    CHECK(canonicalize_header(Canon::simple, kHeaderA) == kHeaderA);
    CHECK(canonicalize_header(Canon::simple, kHeaderB) == kHeaderB);
    CHECK(hash_body(Canon::simple, kBody) == sha256(" C \r\nD \t E\r\n"));
}

TEST_CASE("relaxed header details") {
    CHECK(canonicalize_header(Canon::relaxed, "Subject:   hi   there  ") == "subject:hi there");
    CHECK(canonicalize_header(Canon::relaxed, "X-A:\r\n  \r\n") == "x-a:\r\n");
    CHECK(canonicalize_header(Canon::relaxed, "MiXed\t:\tv\r\n") == "mixed:v\r\n");
}

TEST_CASE("empty bodies: simple is CRLF, relaxed is empty (3.4.3, 3.4.4)") {
    CHECK(base64_encode(hash_body(Canon::simple, "")) ==
          "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    CHECK(base64_encode(hash_body(Canon::relaxed, "")) ==
          "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    CHECK(hash_body(Canon::simple, "\r\n\r\n\r\n") == sha256("\r\n"));
    CHECK(hash_body(Canon::relaxed, "\r\n \r\n\t\r\n") == sha256(""));
    CHECK(hash_body(Canon::simple, " \r\n\r\n") == sha256(" \r\n"));
}

TEST_CASE("a last line without CRLF gets one; bare CR and LF are content") {
    CHECK(hash_body(Canon::simple, "a\r\nb") == sha256("a\r\nb\r\n"));
    CHECK(hash_body(Canon::relaxed, "a  \r\nb  ") == sha256("a\r\nb\r\n"));
    CHECK(hash_body(Canon::relaxed, "a\r\n  ") == sha256("a\r\n"));
    CHECK(hash_body(Canon::simple, "a\rb\nc\r\n") == sha256("a\rb\nc\r\n"));
    CHECK(hash_body(Canon::simple, "a\r") == sha256("a\r\r\n"));
    CHECK(hash_body(Canon::relaxed, "a \r \r\n") == sha256("a \r\r\n"));
}

TEST_CASE("l= counts canonicalized octets (3.4.5)") {
    CHECK(hash_body(Canon::relaxed, kBody, 3) == sha256(" C\r"));
    CHECK(hash_body(Canon::relaxed, kBody, 0) == sha256(""));
    CHECK(hash_body(Canon::relaxed, kBody, 1000) == sha256(" C\r\nD E\r\n"));
    CHECK(hash_body(Canon::simple, "", 1) == sha256("\r"));
    BodyHasher h(Canon::relaxed, 3);
    h.update(kBody);
    (void)h.finish();
    CHECK(h.canonical_size() == 9);
}

TEST_CASE("any split gives the same digest") {
    const std::vector<std::string> bodies = {
        kBody,
        "",
        "\r\n",
        "a",
        "line \t one\r\n\r\n  \r\nline two\t\r\n\r\n\r\n",
        "\r\r\n\n\r \r\n\t\r\nx\r",
        "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n",
        std::string(5000, 'x') + "\r\n" + std::string(300, ' ') + "\r\n\r\n",
    };
    for (const auto& body : bodies) {
        for (auto canon : {Canon::simple, Canon::relaxed}) {
            for (std::optional<std::uint64_t> l :
                 {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{7}}) {
                const std::string expect = hash_body(canon, body, l);
                for (const auto& split : test::all_splits(body, 24)) {
                    CAPTURE(split.name);
                    BodyHasher h(canon, l);
                    for (const auto& piece : split.pieces)
                        h.update(piece);
                    REQUIRE(h.finish() == expect);
                }
            }
        }
    }
}

TEST_CASE("without_b_value empties b= and keeps everything else") {
    CHECK(without_b_value("DKIM-Signature: v=1; bh=abc; b=xyz\r\n zz") ==
          "DKIM-Signature: v=1; bh=abc; b=");
    CHECK(without_b_value("DKIM-Signature: b = xyz ; d=x") == "DKIM-Signature: b =; d=x");
    CHECK(without_b_value("DKIM-Signature: a=1;\r\n\tb=xy\r\n z;\r\n c=2") ==
          "DKIM-Signature: a=1;\r\n\tb=;\r\n c=2");
    CHECK(without_b_value("DKIM-Signature: bh=1; x=b=2") == "DKIM-Signature: bh=1; x=b=2");
    CHECK(without_b_value("DKIM-Signature: b=abc\r\n") == "DKIM-Signature: b=\r\n");
}
