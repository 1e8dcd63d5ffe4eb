// Tests for gateway/common/domain: what counts as a domain and its A-label form.
#include "gateway/common/domain.hpp"

#include <doctest/doctest.h>

#include <string>

using relaygate::DomainError;
using relaygate::normalize_domain;

TEST_CASE("ASCII domains are lower-cased and LDH-checked") {
    CHECK(normalize_domain("Example.COM", false).value() == "example.com");
    CHECK(normalize_domain("a-b.c1.example", false).value() == "a-b.c1.example");
    CHECK(normalize_domain("xn--bcher-kva.example", false).value() == "xn--bcher-kva.example");
    CHECK(normalize_domain("XN--BCHER-KVA.example", false).value() == "xn--bcher-kva.example");

    struct Case {
        const char* in;
        DomainError err;
    };
    for (auto c :
         {Case{"", DomainError::empty}, Case{".example", DomainError::empty_label},
          Case{"example.", DomainError::empty_label}, Case{"a..example", DomainError::empty_label},
          Case{"-a.example", DomainError::bad_hyphen}, Case{"a-.example", DomainError::bad_hyphen},
          Case{"a_b.example", DomainError::bad_character},
          Case{"a b.example", DomainError::bad_character},
          Case{"xn--.example", DomainError::bad_hyphen},
          Case{"xn--a.example", DomainError::invalid_idna},
          Case{"xn--u-ccb.example", DomainError::invalid_idna},    // not NFC
          Case{"xn--ls8h.example", DomainError::invalid_idna}}) {  // emoji
        CAPTURE(std::string(c.in));
        auto r = normalize_domain(c.in, true);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error() == c.err);
    }
    CHECK(normalize_domain(std::string(64, 'a') + ".example", false).error() ==
          DomainError::label_too_long);
    std::string long_domain;
    for (int i = 0; i < 5; ++i)
        long_domain += std::string(60, 'a') + ".";
    long_domain += "example";
    CHECK(normalize_domain(long_domain, false).error() == DomainError::too_long);
}

TEST_CASE("U-labels need SMTPUTF8 and canonical form") {
    CHECK(normalize_domain("bücher.example", false).error() == DomainError::utf8_not_allowed);
    CHECK(normalize_domain("bücher.example", true).value() == "xn--bcher-kva.example");
    CHECK(normalize_domain("BÜCHER.example", true).error() == DomainError::not_canonical);
    // Soft hyphen (U+00AD) is mapped away by UTS #46: ambiguous, refused.
    CHECK_FALSE(normalize_domain("b\xc2\xad\xc3\xbc"
                                 "cher.example",
                                 true)
                    .ok());
    // Zero-width space (U+200B) and full-width dot (U+FF0E).
    CHECK_FALSE(normalize_domain("ex\xe2\x80\x8b"
                                 "ample.com",
                                 true)
                    .ok());
    CHECK_FALSE(normalize_domain("example\xef\xbc\x8e"
                                 "com",
                                 true)
                    .ok());
    // No-break space (U+00A0).
    CHECK_FALSE(normalize_domain("example.com\xc2\xa0", true).ok());
    CHECK(normalize_domain("\xff.example", true).error() == DomainError::invalid_utf8);
}

TEST_CASE("UTF-8 validation") {
    using relaygate::is_valid_utf8;
    CHECK(is_valid_utf8("plain"));
    CHECK(is_valid_utf8("\xc3\xbc"));
    CHECK(is_valid_utf8("\xf0\x9f\x98\x80"));
    CHECK_FALSE(is_valid_utf8("\xc3"));
    CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
    CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
}
