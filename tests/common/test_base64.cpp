// Tests for the strict base64 codec: padded (SMTP AUTH, DKIM) and unpadded
// (password hashes), both canonical-only.
#include "gateway/common/base64.hpp"

#include <doctest/doctest.h>

#include <string>

using relaygate::base64_decode;
using relaygate::base64_encode;
using relaygate::Base64Padding;

TEST_CASE("RFC 4648 10 test vectors round-trip") {
    const char* pairs[][2] = {{"", ""},
                              {"f", "Zg=="},
                              {"fo", "Zm8="},
                              {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="},
                              {"fooba", "Zm9vYmE="},
                              {"foobar", "Zm9vYmFy"}};
    for (auto& p : pairs) {
        CHECK(base64_encode(p[0]) == p[1]);
        CHECK(base64_decode(p[1]) == std::string(p[0]));
    }
    const std::string plain("\0user\0secret", 12);
    CHECK(base64_decode(base64_encode(plain)) == plain);
}

TEST_CASE("non-canonical input is refused") {
    for (const char* bad :
         {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zm 9v", "Zm9v\r\n", "Zg==Zg==", "Zm9*", "=Zm9"})
        CHECK_FALSE(base64_decode(bad).has_value());
}

TEST_CASE("unpadded flavour: same alphabet, no '=', canonical final bits") {
    const char* pairs[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (auto& p : pairs) {
        CHECK(base64_encode(p[0], Base64Padding::unpadded) == p[1]);
        CHECK(base64_decode(p[1], Base64Padding::unpadded) == std::string(p[0]));
    }
    const std::string binary("\0\xff\x10", 3);
    CHECK(base64_decode(base64_encode(binary, Base64Padding::unpadded), Base64Padding::unpadded) ==
          binary);
    for (const char* bad : {"Zm8=", "Zg==", "Zm9", "Zh", "Z", "Zm 8", "Zm8\n", "Zm*8"})
        CHECK_FALSE(base64_decode(bad, Base64Padding::unpadded).has_value());
}

TEST_CASE("strings of 1 to 6 bytes round-trip in both flavours") {
    std::string s;
    for (int n = 0; n < 6; ++n) {
        s += static_cast<char>(0xfb - 37 * n);
        for (auto pad : {Base64Padding::padded, Base64Padding::unpadded}) {
            const std::string enc = base64_encode(s, pad);
            CHECK(base64_decode(enc, pad) == s);
            // The other flavour accepts it only where the two coincide: no
            // padding, a whole number of 3-byte groups.
            const auto other =
                pad == Base64Padding::padded ? Base64Padding::unpadded : Base64Padding::padded;
            CHECK(base64_decode(enc, other).has_value() == (s.size() % 3 == 0));
        }
    }
}

TEST_CASE("base64_value maps the alphabet and nothing else") {
    CHECK(relaygate::base64_value('A') == 0);
    CHECK(relaygate::base64_value('/') == 63);
    CHECK(relaygate::base64_value('=') == -1);
    CHECK(relaygate::base64_value('\x80') == -1);
}
