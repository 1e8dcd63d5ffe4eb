#include "gateway/common/sha256.hpp"

#include <doctest/doctest.h>

using relaygate::Sha256;

TEST_CASE("Sha256: FIPS 180-2 vectors, in pieces split anywhere, reused after reset") {
    const std::string abc_hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    Sha256 sha;
    sha.update("abc");
    CHECK(sha.hex() == abc_hex);
    CHECK(sha.hex().empty());  // finished: nothing until reset()

    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (std::size_t at = 0; at <= two_blocks.size(); ++at) {
        sha.reset();
        sha.update(std::string_view(two_blocks).substr(0, at));
        sha.update("");
        sha.update(std::string_view(two_blocks).substr(at));
        CHECK(sha.hex() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    sha.reset();
    const std::string raw = sha.raw();  // the empty string's
    REQUIRE(raw.size() == 32);
    CHECK(static_cast<unsigned char>(raw[0]) == 0xe3);
    CHECK(static_cast<unsigned char>(raw[31]) == 0x55);
    Sha256::Digest d{};
    sha.reset();
    sha.update("abc");
    REQUIRE(sha.finish(d));
    CHECK(d[0] == 0xba);
    CHECK_FALSE(sha.finish(d));
}
