// Tests for gateway/smtp/reply: the wire format of replies we send.
#include "gateway/smtp/reply.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace relaygate;
using namespace relaygate::smtp;

TEST_CASE("format_reply: single, multi-line, enhanced on every line (RFC 2034 4)") {
    CHECK(format_reply(Reply{250, "2.1.0", {"Sender OK"}}) == "250 2.1.0 Sender OK\r\n");
    CHECK(format_reply(Reply{250, "2.0.0", {"first", "second", "last"}}) ==
          "250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 last\r\n");
    CHECK(format_reply(Reply{250, "", {"relay.example", "PIPELINING", "SIZE 10240000"}}) ==
          "250-relay.example\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n");
    CHECK(format_reply(Reply{220, "", {"relay.example ESMTP"}}) == "220 relay.example ESMTP\r\n");
    CHECK(format_reply(Reply{354, "", {"End data with <CR><LF>.<CR><LF>"}}) ==
          "354 End data with <CR><LF>.<CR><LF>\r\n");
    // Empty text.
    CHECK(format_reply(Reply{250, "", {}}) == "250\r\n");
    CHECK(format_reply(Reply{250, "2.0.0", {}}) == "250 2.0.0\r\n");
    CHECK(format_reply(Reply{250, "", {"", ""}}) == "250-\r\n250\r\n");
    CHECK(format_reply(Reply{250, "2.0.0", {"", "x"}}) == "250-2.0.0\r\n250 2.0.0 x\r\n");
}

TEST_CASE("format_reply never emits line breaks or non-text octets from its input") {
    const std::string out = format_reply(
        Reply{550, "5.7.1", {"evil\r\n250 ok", std::string("nul\0x", 5), "\xc3\xa4\t."}});
    CHECK(out == "550-5.7.1 evil??250 ok\r\n550-5.7.1 nul?x\r\n550 5.7.1 ??\t.\r\n");
    // RFC 5321 4.5.3.1.5: 512 octets per reply line including CRLF.
    const std::string lng = format_reply(Reply{250, "2.0.0", {std::string(2000, 'a'), "b"}});
    const auto first = lng.substr(0, lng.find("\r\n") + 2);
    CHECK(first.size() == 512);
    CHECK(first.starts_with("250-2.0.0 aaa"));
    CHECK(lng.ends_with("\r\n250 2.0.0 b\r\n"));
}

TEST_CASE("make_reply follows the reason table") {
    for (const auto& row : all_reasons()) {
        CAPTURE(row.label);
        Reply r = make_reply(row.reason);
        CHECK(r.code == row.smtp_code);
        CHECK(r.enhanced == row.enhanced);
        REQUIRE(r.lines.size() == 1);
        CHECK(r.lines[0] == row.text);
        const std::string wire = format_reply(r);
        CHECK(wire.starts_with(std::to_string(row.smtp_code) + " " + std::string(row.enhanced) +
                               " "));
        CHECK(wire.ends_with("\r\n"));
        CHECK(wire.find('\n') == wire.size() - 1);
    }
    CHECK(format_reply(make_reply(Reason::syntax_error)) ==
          "500 5.5.2 Syntax error, command unrecognized\r\n");
    CHECK(make_reply(Reason::bad_sender_syntax).code == 501);
    CHECK(make_reply(Reason::parameter_unrecognized).code == 555);
    CHECK(make_reply(Reason::upstream_failed).tempfail());
    CHECK(make_reply(Reason::accepted).positive());
    CHECK(make_reply(Reason::tenant_unknown).permfail());
}

TEST_CASE("is_enhanced_code (RFC 3463 2)") {
    for (const char* ok : {"2.0.0", "4.7.1", "5.1.10", "5.123.999", "2.1.5"})
        CHECK(is_enhanced_code(ok));
    for (const char* bad : {"", "2.0", "3.0.0", "1.0.0", "6.0.0", "2.0.0.", "2..0", "2.0000.0",
                            "2.0.1000", "2.a.0", " 2.0.0", "2.0.0 ", "20.0.0"})
        CHECK_FALSE(is_enhanced_code(bad));
}

TEST_CASE("ReplyLines: a sequence of strings, the first line held apart") {
    ReplyLines lines;
    CHECK(lines.empty());
    CHECK(lines.size() == 0);
    CHECK(lines.begin() == lines.end());
    lines.push_back("first");
    CHECK_FALSE(lines.empty());
    CHECK(lines.size() == 1);
    CHECK(&lines.front() == &lines.back());
    lines.emplace_back(std::string_view("second"));
    lines.push_back("third");
    CHECK(lines.size() == 3);
    CHECK(lines[0] == "first");
    CHECK(lines[1] == "second");
    CHECK(lines.back() == "third");
    CHECK(std::vector<std::string>(lines.begin(), lines.end()) ==
          std::vector<std::string>{"first", "second", "third"});
    std::vector<std::string> seen;
    for (auto& l : lines)
        seen.push_back(l + "!");
    CHECK(seen == std::vector<std::string>{"first!", "second!", "third!"});

    // Copies compare equal; a moved-from list is empty and equals an empty one.
    ReplyLines copy = lines;
    CHECK(copy == lines);
    copy[1] = "changed";
    CHECK_FALSE(copy == lines);
    ReplyLines moved = std::move(lines);
    CHECK(moved.size() == 3);
    CHECK(lines.empty());  // NOLINT(bugprone-use-after-move): what a move leaves is the point
    CHECK(lines == ReplyLines{});
    lines.push_back("again");
    CHECK(lines.size() == 1);
    CHECK(lines[0] == "again");
    ReplyLines assigned;
    assigned.push_back("old");
    assigned = std::move(moved);
    CHECK(assigned.size() == 3);
    CHECK(moved.empty());  // NOLINT(bugprone-use-after-move)
    moved.push_back("x");  // a list moved from is used again from empty
    moved.push_back("y");
    CHECK(std::vector<std::string>(moved.begin(), moved.end()) ==
          std::vector<std::string>{"x", "y"});
    assigned.clear();
    CHECK(assigned.empty());
    CHECK(assigned == ReplyLines{});
    // One empty line is not no line (format_reply writes "250" for both,
    // but the parser's replies compare by their lines).
    CHECK_FALSE(ReplyLines{""} == ReplyLines{});
    CHECK(Reply{250, "2.0.0", {"a", "b"}} == Reply{250, "2.0.0", {"a", "b"}});
    CHECK_FALSE(Reply{250, "2.0.0", {"a", "b"}} == Reply{250, "2.0.0", {"a"}});
}
