// Tests for gateway/message/invisible: the code points a reader cannot see.
#include "gateway/message/invisible.hpp"

#include <doctest/doctest.h>

using namespace relaygate::message;

TEST_CASE("invisible code points") {
    for (char32_t cp : {0x00A0u, 0x00ADu, 0x200Bu, 0x200Du, 0x202Eu, 0x2060u, 0x3000u, 0xFEFFu,
                        0xFE0Fu, 0xE0041u, 0x180Eu, 0x3164u})
        CHECK(is_invisible(cp));
    for (char32_t cp : {0x41u, 0x20ACu, 0xFCu, 0x4E2Du, 0x1F600u})
        CHECK_FALSE(is_invisible(cp));
}

TEST_CASE("finding and stripping") {
    CHECK_FALSE(first_invisible("plain.example").has_value());
    CHECK_FALSE(first_invisible("b\xc3\xbc"
                                "cher")
                    .has_value());
    CHECK(first_invisible("a\xe2\x80\x8b"
                          "b") == char32_t{0x200B});
    CHECK(first_invisible("\xf3\xa0\x81\x81") == char32_t{0xE0041});
    CHECK(strip_invisible("a\xe2\x80\x8b"
                          "b\xc2\xa0"
                          "c") == "abc");
    // Malformed bytes are kept and do not hide what follows.
    CHECK(strip_invisible("\xff\xe2\x80\x8bx") == "\xffx");
    CHECK(first_invisible("\xe2\x80") == std::nullopt);
}
