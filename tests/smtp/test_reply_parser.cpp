// Tests for gateway/smtp/reply_parser: upstream replies, fed at every split.
#include "gateway/smtp/reply_parser.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/smtp/split_feed.hpp"

using namespace relaygate::smtp;
using relaygate::test::all_splits;

namespace {

// Replies rendered as "code|enhanced|line|line", errors as "E:<error>".
std::vector<std::string> run(std::vector<std::string> pieces, ReplyLimits limits = {}) {
    ReplyParser p(limits);
    std::vector<std::string> out;
    for (auto& piece : pieces) {
        std::string_view rest = piece;
        for (;;) {
            ReplyEvent ev = p.feed(rest);
            REQUIRE(ev.consumed <= rest.size());
            rest.remove_prefix(ev.consumed);
            if (ev.kind == ReplyEvent::Kind::need_more) break;
            if (ev.kind == ReplyEvent::Kind::error) {
                out.push_back("E:" + std::string(to_string(ev.error)));
                // Errors are terminal.
                CHECK(p.feed("250 ok\r\n").kind == ReplyEvent::Kind::error);
                return out;
            }
            std::string s = std::to_string(ev.reply.code) + "|" + ev.reply.enhanced;
            for (auto& l : ev.reply.lines)
                s += "|" + l;
            out.push_back(s);
        }
        piece.assign(piece.size(), '#');
    }
    return out;
}

struct Golden {
    std::string in;
    std::vector<std::string> out;
};

}  // namespace

TEST_CASE("golden upstream replies, at every split") {
    const std::vector<Golden> goldens{
        {"220 foo.com Simple Mail Transfer Service Ready\r\n",
         {"220||foo.com Simple Mail Transfer Service Ready"}},
        // RFC 5321 D.1 EHLO reply.
        {"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
         {"250||foo.com greets bar.com|8BITMIME|SIZE|DSN|HELP"}},
        {"250 2.1.0 Ok\r\n", {"250|2.1.0|Ok"}},
        {"250-2.0.0 a\r\n250 2.0.0 b\r\n", {"250|2.0.0|a|b"}},
        {"550 5.1.1 <x@y>: Recipient address rejected\r\n",
         {"550|5.1.1|<x@y>: Recipient address rejected"}},
        {"451 4.3.0\r\n", {"451|4.3.0|"}},
        {"250 5.0.0 wrong class\r\n", {"250||5.0.0 wrong class"}},
        {"354 End data with <CR><LF>.<CR><LF>\r\n", {"354||End data with <CR><LF>.<CR><LF>"}},
        {"250\r\n", {"250||"}},
        {"250-\r\n250 x\r\n", {"250|||x"}},
        // Several replies in one read (RFC 2920 pipelining).
        {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", {"250|2.1.0|Ok", "250|2.1.5|Ok", "354||go"}},
        {"250 ok\r\n25", {"250||ok"}},
        // Errors.
        {"250-a\r\n251 b\r\n", {"E:reply code changed within a multi-line reply"}},
        {"25 ok\r\n", {"E:malformed reply line"}},
        {"250x\r\n", {"E:malformed reply line"}},
        {"2a0 ok\r\n", {"E:malformed reply line"}},
        {"hello\r\n", {"E:malformed reply line"}},
        {"\r\n", {"E:malformed reply line"}},
        {"150 ok\r\n", {"E:invalid reply code"}},
        {"260 ok\r\n", {"E:invalid reply code"}},
        {"650 ok\r\n", {"E:invalid reply code"}},
        {"250 ok\n", {}},  // no CRLF yet: need more
        {"250 ok\n250 x\r\n", {"E:bare CR or LF in reply"}},
        {"250 o\rk\r\n", {"E:bare CR or LF in reply"}},
        {std::string("250 o\0k\r\n", 9), {"E:NUL in reply"}},
        {"250 ok\r\n550-x\nfoo\r\n", {"250||ok", "E:bare CR or LF in reply"}},
    };
    for (const auto& g : goldens) {
        CAPTURE(g.in);
        for (auto& s : all_splits(g.in)) {
            CAPTURE(s.name);
            CHECK(run(s.pieces) == g.out);
        }
    }
}

TEST_CASE("bounds: line length and line count") {
    const std::string ok = "250 " + std::string(2042, 'a') + "\r\n";  // 2048 with CRLF
    CHECK(run({ok}).size() == 1);
    CHECK(run({"250 " + std::string(2043, 'a') + "\r\n"}) ==
          std::vector<std::string>{"E:reply line too long"});
    std::string many;
    for (int i = 0; i < 99; ++i)
        many += "250-x\r\n";
    CHECK(run({many + "250 y\r\n"}).size() == 1);
    CHECK(run({many + "250-x\r\n250 y\r\n"}) == std::vector<std::string>{"E:too many reply lines"});
    CHECK(run({"250-a\r\n250-b\r\n250 c\r\n"}, ReplyLimits{2048, 2}) ==
          std::vector<std::string>{"E:too many reply lines"});
}

TEST_CASE("state accessors and reset") {
    ReplyParser p;
    CHECK(p.feed("250-a\r\n250-b").kind == ReplyEvent::Kind::need_more);
    CHECK(p.in_reply());
    CHECK(p.buffered() == 5);
    auto ev = p.feed("\r\n250 c\r\n");
    REQUIRE(ev.kind == ReplyEvent::Kind::reply);
    CHECK(std::vector<std::string>(ev.reply.lines.begin(), ev.reply.lines.end()) ==
          std::vector<std::string>{"a", "b", "c"});
    CHECK_FALSE(p.in_reply());
    CHECK(p.feed("xyz\r\n").kind == ReplyEvent::Kind::error);
    CHECK(p.feed("250 ok\r\n").consumed == 0);
    p.reset();
    CHECK(p.feed("250 ok\r\n").kind == ReplyEvent::Kind::reply);
}

TEST_CASE("format_reply output parses back to the same reply") {
    for (const Reply& r : {Reply{250, "2.0.0", {"a", "b c", ""}}, Reply{550, "5.7.1", {"no"}},
                           Reply{250, "", {"relay.example", "SIZE 100", "8BITMIME"}},
                           Reply{421, "4.3.2", {"bye"}}, Reply{354, "", {"go ahead"}}}) {
        const std::string wire = format_reply(r);
        CAPTURE(wire);
        ReplyParser p;
        auto ev = p.feed(wire);
        REQUIRE(ev.kind == ReplyEvent::Kind::reply);
        CHECK(ev.consumed == wire.size());
        CHECK(ev.reply == r);
    }
}
