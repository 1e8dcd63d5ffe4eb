// Tests for the strict base64 codec used by SMTP AUTH.
#include "gateway/common/base64.hpp"

#include <doctest/doctest.h>

#include <string>

using relaygate::base64_decode;
using relaygate::base64_encode;

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
