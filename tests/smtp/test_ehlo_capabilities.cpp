// Tests for gateway/smtp/ehlo_capabilities: keyword extraction from EHLO.
#include "gateway/smtp/ehlo_capabilities.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace relaygate::smtp;

TEST_CASE("EHLO keywords are upper-cased and looked up case-insensitively") {
    Reply r{250,
            "",
            {"relay.example Hello client.example", "PIPELINING", "size 10240000", "STARTTLS",
             "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN", "8BITMIME", "ENHANCEDSTATUSCODES",
             "X-EXPS=LOGIN", "XCLIENT NAME ADDR PROTO HELO", "DSN", "SMTPUTF8", "-bad", "",
             "BAD  DOUBLE-SPACE", "PIPELINING again"}};
    auto caps = parse_ehlo_capabilities(r);
    CHECK(caps.greeting == "relay.example Hello client.example");
    CHECK(caps.has("pipelining"));
    CHECK(caps.has("STARTTLS"));
    CHECK(caps.has("Smtputf8"));
    CHECK(caps.has("8BITMIME"));
    CHECK_FALSE(caps.has("CHUNKING"));
    CHECK_FALSE(caps.has("AUTH=PLAIN"));
    CHECK_FALSE(caps.has("X-EXPS=LOGIN"));
    CHECK_FALSE(caps.has("-BAD"));
    CHECK_FALSE(caps.has("BAD"));
    CHECK_FALSE(caps.has(""));
    REQUIRE(caps.params("auth") != nullptr);
    CHECK(*caps.params("AUTH") == std::vector<std::string>{"PLAIN", "LOGIN"});
    CHECK(*caps.params("XCLIENT") == std::vector<std::string>{"NAME", "ADDR", "PROTO", "HELO"});
    CHECK(caps.params("PIPELINING")->empty());  // the first line wins
    CHECK(caps.params("CHUNKING") == nullptr);
    CHECK(caps.size_limit() == 10240000u);
    CHECK(caps.keywords.size() == 9);
}

TEST_CASE("SIZE and non-250 replies") {
    CHECK_FALSE(parse_ehlo_capabilities(Reply{250, "", {"x", "SIZE"}}).size_limit());
    CHECK_FALSE(parse_ehlo_capabilities(Reply{250, "", {"x", "SIZE 0"}}).size_limit());
    CHECK_FALSE(parse_ehlo_capabilities(Reply{250, "", {"x", "SIZE 12x"}}).size_limit());
    CHECK_FALSE(
        parse_ehlo_capabilities(Reply{250, "", {"x", "SIZE 99999999999999999999"}}).size_limit());
    auto bad = parse_ehlo_capabilities(Reply{502, "5.5.1", {"no EHLO", "PIPELINING"}});
    CHECK(bad.keywords.empty());
    CHECK(bad.greeting.empty());
    CHECK(parse_ehlo_capabilities(Reply{250, "", {"only.greeting"}}).keywords.empty());
}
