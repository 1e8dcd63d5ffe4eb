// Tests for gateway/dkim/signature: the RFC 6376 3.2 tag-list grammar and the
// 3.5 tag rules, one case per rejection, folded values, and key_query_name.
#include "gateway/dkim/signature.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace relaygate::dkim;
using namespace std::string_literals;

namespace {

// A valid value; each rejection case changes one thing.
const std::string kBh = "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
const std::string kB =
    "b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

std::string value(const std::string& extra = "", const std::string& d = "d=Football.Example.COM",
                  const std::string& s = "s=Brisbane") {
    return " v=1; a=ed25519-sha256; " + d + "; " + s + "; h=From:To; " + kBh + "; " + kB + extra;
}

std::string error_of(std::string_view v) {
    auto r = parse_signature(v);
    return r ? "ok" : r.error();
}

}  // namespace

TEST_CASE("a valid signature parses and normalizes") {
    auto r = parse_signature(
        value("; c=relaxed/simple; l=42; t=10; x=20; i=joe@sub.football.example.com; z=From:x"));
    REQUIRE(r.ok());
    CHECK(r->algorithm == Algorithm::ed25519_sha256);
    CHECK(r->header_canon == Canon::relaxed);
    CHECK(r->body_canon == Canon::simple);
    CHECK(r->domain == "football.example.com");
    CHECK(r->selector == "brisbane");
    CHECK(r->signed_headers == std::vector<std::string>{"from", "to"});
    CHECK(r->body_hash.size() == 32);
    CHECK(r->signature.size() == 64);
    CHECK(r->length == 42u);
    CHECK(r->timestamp == 10u);
    CHECK(r->expiration == 20u);
    CHECK(r->identity == "joe@sub.football.example.com");
    CHECK(key_query_name(*r) == "brisbane._domainkey.football.example.com");
}

TEST_CASE("defaults: c= simple/simple, no l/t/x/i") {
    auto r = parse_signature(value());
    REQUIRE(r.ok());
    CHECK(r->header_canon == Canon::simple);
    CHECK(r->body_canon == Canon::simple);
    CHECK(!r->length);
    CHECK(!r->timestamp);
    CHECK(!r->expiration);
    CHECK(r->identity.empty());
    auto c = parse_signature(value("; c=relaxed"));
    REQUIRE(c.ok());
    CHECK(c->header_canon == Canon::relaxed);
    CHECK(c->body_canon == Canon::simple);
}

TEST_CASE("folding whitespace is allowed where FWS is, including inside b= and bh=") {
    const std::string folded =
        " v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n d=football.example.com; s=test;\r\n"
        "\th=from : to :\r\n subject ;\r\n bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
        " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
        " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==;\r\n";
    // A trailing ";" and FWS after it are part of the grammar; a final CRLF is not FWS.
    CHECK(error_of(folded) != "ok");
    const std::string ok = folded.substr(0, folded.size() - 2);
    auto r = parse_signature(ok);
    REQUIRE(r.ok());
    CHECK(r->algorithm == Algorithm::rsa_sha256);
    CHECK(r->signed_headers == std::vector<std::string>{"from", "to", "subject"});
    CHECK(r->signature.size() == 64);
    CHECK(parse_signature(ok + "\r\n ").ok());
    CHECK(parse_signature(" v = 1 ;" + value().substr(5)).ok());
}

TEST_CASE("every rejection") {
    struct Case {
        const char* name;
        std::string value;
    };
    const std::vector<Case> cases = {
        {"empty", ""},
        {"only WSP", "  "},
        {"only ;", ";"},
        {"empty spec", value().replace(value().find("a="), 0, "; ")},
        {"no =", value("; novalue")},
        {"bad tag name", value("; 1x=2")},
        {"bad tag name _", value("; _x=2")},
        {"duplicate tag", value("; s=other")},
        {"duplicate unknown tag", value("; z=a; z=b")},
        {"duplicate d= differing in case", value("; D=evil.example")},
        {"duplicate s= differing in case", value("; S=other")},
        {"duplicate d= before the others", "D=evil.example;" + value()},
        {"v=2", value().replace(1, 3, "v=2")},
        {"missing v", value().replace(1, 5, "")},
        {"missing a", value().replace(value().find("a=ed"), 17, "")},
        {"missing d", value("", "x=y")},
        {"missing s", value("", "d=example.com", "y=z")},
        {"missing h", value().replace(value().find("h="), 11, "")},
        {"missing bh", value().replace(value().find("bh="), kBh.size() + 2, "")},
        {"missing b", value().replace(value().find(kB), kB.size(), "k=1")},
        {"rsa-sha1", value().replace(value().find("ed25519-sha256"), 14, "rsa-sha1")},
        {"unknown a=", value().replace(value().find("ed25519-sha256"), 14, "rsa-sha512")},
        {"unknown c=", value("; c=nowsp")},
        {"unknown body c=", value("; c=relaxed/nowsp")},
        {"c= empty body", value("; c=relaxed/")},
        {"d= underscore", value("", "d=foo_bar.example")},
        {"d= trailing dot", value("", "d=example.com.")},
        {"d= empty label", value("", "d=example..com")},
        {"d= leading hyphen", value("", "d=-example.com")},
        {"d= U-label", value("",
                             "d=b\xc3\xbc"
                             "cher.example")},
        {"d= long label", value("", "d=" + std::string(64, 'a') + ".example")},
        {"d= too long", value("", "d=" + std::string(60, 'a') + "." + std::string(60, 'a') + "." +
                                      std::string(60, 'a') + "." + std::string(60, 'a') + "." +
                                      std::string(60, 'a') + ".example")},
        {"d= inner space", value("", "d=exam ple.com")},
        {"d= folded inside", value("", "d=exam\r\n ple.com")},
        {"d= comma list", value("", "d=a.example,b.example")},
        {"s= underscore", value("", "d=example.com", "s=sel_1")},
        {"s= trailing dot", value("", "d=example.com", "s=sel.")},
        {"s= U-label", value("", "d=example.com", "s=s\xc3\xa9l")},
        {"s= with @", value("", "d=example.com", "s=a@b")},
        {"s= empty", value("", "d=example.com", "s=")},
        {"h= without from", value().replace(value().find("h=From:To"), 9, "h=To:Subject")},
        {"h= empty item", value().replace(value().find("h=From:To"), 9, "h=From::To")},
        {"h= space in name", value().replace(value().find("h=From:To"), 9, "h=From:X Y")},
        {"q= other", value("; q=dns")},
        {"q= list with other", value("; q=dns/txt:http")},
        {"NUL", value("; z=a"s + '\0' + "b")},
        {"8-bit", value("; z=\xe9")},
        {"control char", value("; z=a\x01")},
        {"bare LF", value("; z=a\n b")},
        {"bare CR", value("; z=a\r b")},
        {"CRLF without WSP", value("; z=a\r\nb")},
        {"bad base64 b=", value().replace(value().find(kB), kB.size(), "b=abc")},
        {"bad base64 bh=", value().replace(value().find(kBh), kBh.size(), "bh=*==")},
        {"empty bh=", value().replace(value().find(kBh), kBh.size(), "bh=")},
        {"l= not a number", value("; l=12a")},
        {"l= negative", value("; l=-1")},
        {"l= overflow", value("; l=99999999999999999999999")},
        {"t= not a number", value("; t=1.5")},
        {"x= overflow", value("; x=18446744073709551616")},
        {"x= before t=", value("; t=20; x=10")},
        {"x= equal t=", value("; t=20; x=20")},
        {"i= without @", value("; i=football.example.com")},
        {"i= other domain", value("; i=@evil.example")},
        {"i= suffix but not subdomain", value("; i=@xfootball.example.com")},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.name));
        CAPTURE(c.value);
        CHECK(error_of(c.value) != "ok");
    }
}

TEST_CASE("error strings name the problem") {
    CHECK(error_of(value("; s=x")) == "duplicate tag s=");
    CHECK(error_of(value("; D=x")) == "tags differing only in case: d=");
    CHECK(error_of(value().replace(1, 5, "")) == "missing v=");
    CHECK(error_of(value("; q=dns")) == "unsupported query method q=dns");
    CHECK(error_of(value().replace(value().find("h=From:To"), 9, "h=To")) ==
          "h= does not include from");
}

TEST_CASE("unknown tags are ignored; q=dns/txt and i= forms accepted") {
    CHECK(parse_signature(value("; foo=bar baz; q=dns/txt")).ok());
    CHECK(parse_signature(value("; i=@football.example.com")).ok());
    CHECK(parse_signature(value("; i=\"joe\"@FOOTBALL.example.com")).ok());
    CHECK(parse_signature(value(";")).ok());  // trailing ";"
    CHECK(parse_signature(value("", "d=xn--bcher-kva.example")).ok());
}

TEST_CASE("parse_tag_list keeps order and unfolds") {
    auto r = parse_tag_list("v=DKIM1; k=rsa;\r\n\tp=AB\r\n CD ");
    REQUIRE(r.ok());
    REQUIRE(r->size() == 3);
    CHECK((*r)[0].name == "v");
    CHECK((*r)[2].name == "p");
    CHECK((*r)[2].value == "AB CD");  // CRLF removed, the WSP kept
}

TEST_CASE("is_lower_ldh_name") {
    CHECK(is_lower_ldh_name("a"));
    CHECK(is_lower_ldh_name("sel-1.sub"));
    CHECK(!is_lower_ldh_name("Sel"));
    CHECK(!is_lower_ldh_name(""));
    CHECK(!is_lower_ldh_name("a-"));
    CHECK(!is_lower_ldh_name("a."));
}
