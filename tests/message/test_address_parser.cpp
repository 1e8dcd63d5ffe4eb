// Tests for gateway/message/address_parser: RFC 5322 3.4 address lists,
// including the To/Cc fields of Appendix A, and each refused obsolete form.
#include "gateway/message/address_parser.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace relaygate;
using namespace relaygate::message;

namespace {

// "local@domain|local@domain" with "[group]" markers, or the reject label.
std::string parse(std::string_view v, bool utf8 = false) {
    auto r = parse_address_list(v, AddressOptions{utf8});
    if (!r) return std::string(label(r.error().reason));
    std::string out;
    for (const auto& m : r->mailboxes)
        out += (out.empty() ? "" : "|") + std::string(m.in_group ? "[g]" : "") + m.local_part +
               "@" + m.domain;
    out += "/groups=" + std::to_string(r->groups.size());
    return out;
}

}  // namespace

TEST_CASE("Appendix A address lists") {
    struct Case {
        const char* in;
        const char* out;
    };
    for (auto c : {
             Case{"Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
                  "mary@x.test|jdoe@example.org|one@y.test/groups=0"},
             Case{"<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>",
                  "boss@nil.test|sysservices@example.net/groups=0"},
             Case{"A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
                  "[g]c@a.test|[g]joe@where.test|[g]jdoe@one.test/groups=1"},
             Case{"Undisclosed recipients:;", "/groups=1"},
             Case{"A Group(Some people)\t:Chris Jones <c@(Chris's host.)public.example>,"
                  "\t joe@example.org,  John <jdoe@one.test> (my dear friend); (the end of the "
                  "group)",
                  "[g]c@public.example|[g]joe@example.org|[g]jdoe@one.test/groups=1"},
             Case{"(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;", "/groups=1"},
             Case{"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
                  "pete@silly.test/groups=0"},
             Case{"\"Mary Smith: Personal Account\" <smith@home.example>",
                  "smith@home.example/groups=0"},
             Case{"", "/groups=0"},
             Case{"  (just a comment) ", "/groups=0"},
         }) {
        CAPTURE(std::string(c.in));
        CHECK(parse(c.in) == c.out);
    }
}

TEST_CASE("refused forms and their reasons") {
    struct Case {
        const char* in;
        const char* reason;
    };
    for (auto c : {
             Case{"Mary Smith <@node.test:mary@example.net>", "address_route"},  // A.6.1
             Case{"jdoe@test  . example", "address_syntax"},                     // A.6.1 obs-domain
             Case{"a@b.example, , c@d.example", "address_syntax"},               // obs-addr-list
             Case{"g: a@b.example,,c@d.example;", "address_syntax"},             // obs-group-list
             Case{"g: a@b.example", "address_syntax"},                           // group not closed
             Case{"g: h: a@b.example;;", "address_syntax"},                      // nested group
             Case{": a@b.example;", "address_syntax"},  // group without name
             Case{"g: a@b.example x;", "address_trailing_text"},
             Case{". John <a@b.example>", "address_syntax"},
             Case{"<a@b.example", "address_syntax"},
             Case{"<a.@b.example>", "address_syntax"},
             Case{"<.a@b.example>", "address_syntax"},
             Case{"<a..b@b.example>", "address_syntax"},
             Case{"<a@>", "address_syntax"},
             Case{"<@>", "address_route"},
             Case{"<a>", "address_syntax"},
             Case{"<foo:a@b.example>", "address_route"},
             Case{"<a@[IPv6:2001:db8::1]>", "address_domain_literal"},
             Case{"\"unterminated@b.example", "address_syntax"},
             Case{"\"\"@b.example", "address_syntax"},
             Case{"\"a\\\x01\"@b.example", "address_syntax"},  // obs-qp
             Case{"a@b.example\\", "address_trailing_text"},
             Case{"a@b.example (x\\", "address_syntax"},
             Case{"a@b.example (\x01)", "address_syntax"},
             Case{"a@b.example >", "address_trailing_text"},
             Case{"a@xn--a.example", "address_invalid_domain"},
             Case{"a@b.example\xc3\xa9", "header_8bit_without_smtputf8"},
         }) {
        CAPTURE(std::string(c.in));
        CHECK(parse(c.in) == c.reason);
    }
}

TEST_CASE("display names, local-parts and UTF-8") {
    auto r = parse_address_list("Joe Q. Public <john.q.public@Example.COM>", {});
    REQUIRE(r.ok());
    CHECK(r->mailboxes[0].display_name == "Joe Q. Public");
    CHECK(r->mailboxes[0].local_part == "john.q.public");
    CHECK(r->mailboxes[0].domain == "example.com");
    CHECK_FALSE(r->mailboxes[0].quoted_local_part);

    r = parse_address_list("\"Giant; \\\"Big\\\" Box\" (c1) <\"sys services\"@example.net> (c2)",
                           {});
    REQUIRE(r.ok());
    CHECK(r->mailboxes[0].display_name == "Giant; \"Big\" Box");
    CHECK(r->mailboxes[0].local_part == "sys services");
    CHECK(r->mailboxes[0].quoted_local_part);
    CHECK(r->comments == std::vector<std::string>{"c1", "c2"});

    r = parse_address_list("(outer (inner) \\( text)a@b.example", {});
    REQUIRE(r.ok());
    CHECK(r->comments == std::vector<std::string>{"outer (inner) ( text"});

    CHECK(parse("J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc"
                "cher.example>",
                true) == "j\xc3\xb6rg@xn--bcher-kva.example/groups=0");
    CHECK(parse("a@b.example\xc3", true) == "address_syntax");  // invalid UTF-8
    CHECK(parse("<a@\xe2\x80\x8b"
                "b.example>",
                true) == "address_invalid_domain");
    CHECK(parse("<\xc2\xa0"
                "a@b.example>",
                true) == "address_syntax");
}
