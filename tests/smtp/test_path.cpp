// Tests for gateway/smtp/path: RFC 5321 4.1.2 paths, their limits, and the
// distinct errors for the constructs other parsers read differently.
#include "gateway/smtp/path.hpp"

#include <doctest/doctest.h>

#include <string>

#include "gateway/common/domain.hpp"

using namespace relaygate::smtp;
using relaygate::normalize_domain;

namespace {

struct Good {
    const char* in;
    const char* local;
    const char* domain;
};

struct Bad {
    std::string in;
    PathError err;
};

}  // namespace

TEST_CASE("valid forward and reverse paths") {
    for (auto g : {Good{"<a@b.example>", "a", "b.example"},
                   Good{"<Smith@Bar.COM>", "Smith", "bar.com"},  // RFC 5321 D.1
                   Good{"<first.last+tag@sub.example.org>", "first.last+tag", "sub.example.org"},
                   Good{"<!#$%&'*+-/=?^_`{|}~@x.example>", "!#$%&'*+-/=?^_`{|}~", "x.example"},
                   Good{"<\"john doe\"@x.example>", "\"john doe\"", "x.example"},
                   Good{"<\"a\\\"b\"@x.example>", "\"a\\\"b\"", "x.example"},
                   Good{"<\"a.b\"@x.example>", "\"a.b\"", "x.example"},
                   Good{"<u@xn--bcher-kva.example>", "u", "xn--bcher-kva.example"},
                   Good{"<u@[192.0.2.1]>", "u", "[192.0.2.1]"},
                   Good{"<u@[IPv6:2001:DB8::1]>", "u", "[IPv6:2001:db8::1]"},
                   Good{"<u@[ipv6:2001:db8:0:0:0:0:0:1]>", "u", "[IPv6:2001:db8:0:0:0:0:0:1]"},
                   Good{"<u@[IPv6:::ffff:192.0.2.1]>", "u", "[IPv6:::ffff:192.0.2.1]"},
                   Good{"<u@[IPv6:1:2:3:4:5:6:192.0.2.1]>", "u", "[IPv6:1:2:3:4:5:6:192.0.2.1]"},
                   Good{"<u@[IPv6:1:2:3::6]>", "u", "[IPv6:1:2:3::6]"}}) {
        CAPTURE(std::string(g.in));
        for (bool reverse : {true, false}) {
            auto r = reverse ? parse_reverse_path(g.in, false) : parse_forward_path(g.in, false);
            REQUIRE(r.ok());
            CHECK_FALSE(r->null);
            CHECK(r->local_part == g.local);
            CHECK(r->domain == g.domain);
            CHECK(r->address_literal == (g.domain[0] == '['));
            CHECK(r->mailbox() == std::string(g.local) + "@" + g.domain);
        }
    }
    auto lit = parse_forward_path("<u@[IPv6:::1]>", false);
    REQUIRE(lit.ok());
    CHECK(lit->literal_kind == LiteralKind::ipv6);
    CHECK(parse_forward_path("<u@[10.0.0.1]>", false)->literal_kind == LiteralKind::ipv4);
    CHECK(parse_forward_path("<u@x.example>", false)->literal_kind == LiteralKind::none);
    CHECK(parse_forward_path("<\"q\"@x.example>", false)->quoted_local_part);
}

TEST_CASE("null reverse-path and Postmaster (RFC 5321 4.5.1, 4.5.5)") {
    auto n = parse_reverse_path("<>", false);
    REQUIRE(n.ok());
    CHECK(n->null);
    CHECK(n->mailbox().empty());
    CHECK(parse_forward_path("<>", false).error() == PathError::null_not_allowed);

    for (const char* pm : {"<Postmaster>", "<postmaster>", "<POSTMASTER>"}) {
        auto p = parse_forward_path(pm, false);
        REQUIRE(p.ok());
        CHECK(p->postmaster);
        CHECK(p->domain.empty());
    }
    // Only as a recipient, and only exactly that word.
    CHECK(parse_reverse_path("<Postmaster>", false).error() == PathError::syntax);
    CHECK(parse_forward_path("<postmasters>", false).error() == PathError::syntax);
    auto full = parse_forward_path("<postmaster@x.example>", false);
    REQUIRE(full.ok());
    CHECK_FALSE(full->postmaster);
}

TEST_CASE("malformed paths get typed errors") {
    const std::string l64(64, 'l');
    std::string d255;
    for (int i = 0; i < 4; ++i)
        d255 += std::string(63, 'd') + ".";
    d255.resize(255, 'd');  // 4*64 = 256 > 255: last label trimmed to 59 octets
    for (const auto& b : {
             Bad{"", PathError::missing_brackets},
             Bad{"a@b.example", PathError::missing_brackets},
             Bad{"<a@b.example", PathError::missing_brackets},
             Bad{"a@b.example>", PathError::missing_brackets},
             Bad{"<<a@b.example>>", PathError::missing_brackets},
             Bad{"<a@b.example>>", PathError::missing_brackets},
             Bad{"<a<b@c.example>", PathError::missing_brackets},
             Bad{"<@a.example,@b.example:u@c.example>", PathError::source_route},
             Bad{"<@a.example:u@c.example>", PathError::source_route},
             Bad{"<\"a@b\"@c.example>", PathError::quoted_at},
             Bad{"<\"a\\@b\"@c.example>", PathError::quoted_at},
             Bad{"<a b@c.example>", PathError::whitespace},
             Bad{"<a@c.example >", PathError::whitespace},
             Bad{"< a@c.example>", PathError::whitespace},
             Bad{"<a@c.example (comment)>", PathError::whitespace},
             Bad{"<a(comment)@c.example>", PathError::comment},
             Bad{"<a@c.example(x)>", PathError::comment},
             Bad{std::string("<a\0b@c.example>", 15), PathError::control_character},
             Bad{"<a\tb@c.example>", PathError::control_character},
             Bad{"<a\x7f@c.example>", PathError::control_character},
             Bad{"<\"a\tb\"@c.example>", PathError::control_character},
             Bad{"<.a@c.example>", PathError::bad_local_part},
             Bad{"<a.@c.example>", PathError::bad_local_part},
             Bad{"<a..b@c.example>", PathError::bad_local_part},
             Bad{"<a,b@c.example>", PathError::bad_local_part},
             Bad{"<a\"b\"@c.example>", PathError::bad_local_part},
             Bad{"<\"a\"b@c.example>", PathError::bad_local_part},
             Bad{"<\"\"@c.example>", PathError::bad_local_part},
             Bad{"<\"abc@c.example>", PathError::bad_local_part},
             Bad{"<@c.example>", PathError::source_route},
             Bad{"<a@>", PathError::syntax},
             Bad{"<a>", PathError::syntax},
             Bad{"<a@b@c.example>", PathError::bad_domain},
             Bad{"<a@-c.example>", PathError::bad_domain},
             Bad{"<a@c..example>", PathError::bad_domain},
             Bad{"<a@c.example.>", PathError::bad_domain},
             Bad{"<a@c_d.example>", PathError::bad_domain},
             Bad{"<a@[1.2.3]>", PathError::bad_address_literal},
             Bad{"<a@[1.2.3.256]>", PathError::bad_address_literal},
             Bad{"<a@[01.2.3.4]>", PathError::bad_address_literal},
             Bad{"<a@[1.2.3.4>", PathError::bad_address_literal},
             Bad{"<a@[IPv6:1:2:3:4:5:6:7]>", PathError::bad_address_literal},
             Bad{"<a@[IPv6:1:2:3:4:5:6:7:8:9]>", PathError::bad_address_literal},
             Bad{"<a@[IPv6:1:2:3:4::5:6:7]>", PathError::bad_address_literal},  // > 6 with ::
             Bad{"<a@[IPv6:1::2::3]>", PathError::bad_address_literal},
             Bad{"<a@[IPv6:12345::1]>", PathError::bad_address_literal},
             Bad{"<a@[IPv6:1:2:3:4:5::1.2.3.4]>", PathError::bad_address_literal},
             Bad{"<a@[x-tag:foo]>", PathError::bad_address_literal},
             Bad{"<a@[]>", PathError::bad_address_literal},
             Bad{"<" + l64 + "x@c.example>", PathError::local_part_too_long},
             Bad{"<a@" + d255 + "d>", PathError::domain_too_long},
             Bad{"<" + l64 + "@" + std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                     std::string(63, 'c') + "." + std::string(60, 'd') + ">",
                 PathError::path_too_long},
             Bad{"<j\xc3\xb6rg@c.example>", PathError::utf8_not_allowed},
             Bad{"<a@b\xc3\xbc"
                 "cher.example>",
                 PathError::utf8_not_allowed},
         }) {
        CAPTURE(b.in);
        auto r = parse_forward_path(b.in, false);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error() == b.err);
    }
}

TEST_CASE("limits are inclusive (RFC 5321 4.5.3.1)") {
    const std::string l64(64, 'l');
    CHECK(parse_forward_path("<" + l64 + "@c.example>", false).ok());
    // 256 octets exactly, brackets included.
    std::string dom = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                      std::string(63, 'c') + "." + std::string(56, 'd');
    std::string p = "<" + std::string(3, 'l') + "@" + dom + ">";
    REQUIRE(p.size() == 254);
    CHECK(parse_forward_path(p, false).ok());
    p = "<" + std::string(5, 'l') + "@" + dom + ">";
    CHECK(p.size() == 256);
    CHECK(parse_forward_path(p, false).ok());
    p = "<" + std::string(6, 'l') + "@" + dom + ">";
    CHECK(parse_forward_path(p, false).error() == PathError::path_too_long);
}

TEST_CASE("SMTPUTF8 paths (RFC 6531 3.3)") {
    auto r = parse_forward_path(
        "<j\xc3\xb6rg@b\xc3\xbc"
        "cher.example>",
        true);
    REQUIRE(r.ok());
    CHECK(r->local_part == "j\xc3\xb6rg");
    CHECK(r->domain == "xn--bcher-kva.example");
    CHECK(parse_forward_path("<\"j\xc3\xb6 rg\"@x.example>", true).ok());
    CHECK(parse_forward_path("<j\xff@x.example>", true).error() == PathError::invalid_utf8);
    CHECK(parse_forward_path("<j\xc3@x.example>", true).error() == PathError::invalid_utf8);
    // Not canonical: UTS #46 would map it, so it is ambiguous.
    CHECK(parse_forward_path("<a@B\xc3\x9c"
                             "CHER.example>",
                             true)
              .error() == PathError::bad_domain);
    // The A-label form must fit in 256 octets too: 239 octets as sent, 257
    // once each "b...bü" label becomes "xn--b...b-8yf" (63 octets).
    std::string dom;
    for (int i = 0; i < 3; ++i)
        dom += std::string(55, 'b') + "\xc3\xbc.";
    dom += std::string(55, 'c');
    REQUIRE(normalize_domain(dom, true)->size() == 247);
    const std::string u = "<aaaaaaa@" + dom + ">";
    REQUIRE(u.size() == 239);
    CHECK(parse_forward_path(u, true).error() == PathError::path_too_long);
    CHECK(parse_forward_path("<aaaaaa@" + dom + ">", true).ok());
    // Domains are lower-cased A-labels, never U-labels.
    CHECK(parse_forward_path("<a@XN--BCHER-KVA.example>", false)->domain ==
          "xn--bcher-kva.example");
}

TEST_CASE("path_token_length finds the real end of the path") {
    CHECK(path_token_length("<a@b> SIZE=1") == 5);
    CHECK(path_token_length("<\"a>b\"@c> X") == 9);
    CHECK(path_token_length("<\"a\\\">\"@c>") == 10);
    CHECK(path_token_length("<>") == 2);
    CHECK(path_token_length("a@b") == 0);
    CHECK(path_token_length("<a@b") == 0);
    CHECK(path_token_length("") == 0);
}

TEST_CASE("address literals on their own (for EHLO)") {
    CHECK(parse_address_literal("[192.0.2.1]")->text == "[192.0.2.1]");
    CHECK(parse_address_literal("[0.0.0.0]")->kind == LiteralKind::ipv4);
    CHECK(parse_address_literal("[IPv6:FE80::1]")->text == "[IPv6:fe80::1]");
    CHECK(parse_address_literal("[IPv6:::]").ok());
    CHECK(parse_address_literal("[IPv6:1:2:3:4:5:6:7:8]").ok());
    CHECK(parse_address_literal("[IPv6:1:2:3:4::192.0.2.1]").ok());
    CHECK_FALSE(parse_address_literal("[IPv6:1:2:3:4:5::192.0.2.1]").ok());
    CHECK_FALSE(parse_address_literal("[IPv6:1:2:3:4:5:6:7::]").ok());
    CHECK_FALSE(parse_address_literal("[IPv6::1]").ok());
    CHECK_FALSE(parse_address_literal("[IPv6:1:]").ok());
    CHECK_FALSE(parse_address_literal("[1.2.3.4.5]").ok());
    CHECK_FALSE(parse_address_literal("[1.2.3.]").ok());
    CHECK_FALSE(parse_address_literal("192.0.2.1").ok());
}
