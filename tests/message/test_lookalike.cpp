// Tests for gateway/message/lookalike: encoded-word decoding as lenient
// readers do it, and addresses of other domains hidden in display text.
#include "gateway/message/lookalike.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace relaygate::message;

TEST_CASE("encoded-word recognition") {
    CHECK(is_encoded_word("=?utf-8?q?abc?="));
    CHECK(is_encoded_word("=?UTF-8*en?B?YWJj?="));
    CHECK_FALSE(is_encoded_word("=?utf-8?x?abc?="));
    CHECK_FALSE(is_encoded_word("=?utf-8?q?a c?="));
    CHECK_FALSE(is_encoded_word("=??q?abc?="));
    CHECK_FALSE(is_encoded_word("=?utf-8?q?abc?"));
    CHECK(contains_encoded_word("x=?y?=z"));
    CHECK_FALSE(contains_encoded_word("a?=b=?c"));
}

TEST_CASE("decoding") {
    CHECK(decode_encoded_words("=?utf-8?q?a=40b_c?=").text == "a@b c");
    CHECK(decode_encoded_words("=?utf-8?b?YWRtaW5AbGVnaXQuZXhhbXBsZQ==?=").text ==
          "admin@legit.example");
    // RFC 2047 6.2: whitespace between adjacent encoded-words is dropped.
    CHECK(decode_encoded_words("=?utf-8?q?admin?= =?utf-8?q?=40legit.example?=").text ==
          "admin@legit.example");
    CHECK(decode_encoded_words("x =?utf-8?q?y?= z").text == "x y z");
    CHECK(decode_encoded_words("\"=?utf-8?q?a?=\"").text == "\"a\"");
    CHECK(decode_encoded_words("=?utf-16?b?AEA=?=").opaque_charset);
    CHECK_FALSE(decode_encoded_words("=?iso-8859-1?q?caf=E9?=").opaque_charset);
}

TEST_CASE("foreign addresses in display text") {
    const std::vector<std::string_view> own{"attack.example"};
    struct Case {
        const char* text;
        const char* found;  // nullptr: none
    };
    for (auto c : {
             Case{"admin@legit.example", "legit.example"},
             Case{"Admin <ADMIN@LEGIT.EXAMPLE>", "LEGIT.EXAMPLE"},
             Case{"=?utf-8?q?admin=40legit.example?=", "legit.example"},
             Case{"admin\xef\xbc\xa0legit.example", "legit.example"},  // full-width at
             Case{"admin\xef\xb9\xablegit\xef\xbc\x8e"
                  "example",
                  "legit.example"},                                     // small at, wide dot
             Case{"admin@legit\xe2\x80\x8b.example", "legit.example"},  // zero-width space
             Case{"me@Attack.Example", nullptr},
             Case{"Sales @ Acme", nullptr},
             Case{"root@localhost", nullptr},
             Case{"his account", nullptr},
             Case{"a@.", nullptr},
         }) {
        CAPTURE(std::string(c.text));
        auto r = foreign_address_domain(c.text, own);
        if (c.found) {
            REQUIRE(r.has_value());
            CHECK(*r == c.found);
        } else {
            CHECK_FALSE(r.has_value());
        }
    }
    const std::vector<std::string_view> idn{"xn--bcher-kva.example"};
    CHECK_FALSE(foreign_address_domain("a@b\xc3\xbc"
                                       "cher.example",
                                       idn)
                    .has_value());
}
