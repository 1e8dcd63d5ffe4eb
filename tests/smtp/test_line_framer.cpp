// Tests for gateway/smtp/line_framer: CRLF-only framing, typed errors,
// resynchronisation after a bad line, bounds, and every split point.
#include "gateway/smtp/line_framer.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/smtp/split_feed.hpp"

using namespace relaygate::smtp;
using relaygate::test::all_splits;

namespace {

// "L:<line>" or "E:<error>", one per event other than need_more.
std::vector<std::string> run(LineFramer& f, std::vector<std::string> pieces) {
    std::vector<std::string> events;
    for (auto& piece : pieces) {
        std::string_view rest = piece;
        for (;;) {
            LineEvent ev = f.feed(rest);
            REQUIRE(ev.consumed <= rest.size());
            rest.remove_prefix(ev.consumed);
            if (ev.kind == LineEvent::Kind::need_more) {
                REQUIRE(rest.empty());
                break;
            }
            if (ev.kind == LineEvent::Kind::line)
                events.push_back("L:" + std::string(ev.line));
            else
                events.push_back("E:" + std::string(to_string(ev.error)));
        }
        piece.assign(piece.size(), '#');  // a kept view into this piece would show garbage
    }
    return events;
}

std::vector<std::string> run_whole(std::string_view in, std::size_t max = kMaxCommandLine) {
    LineFramer f(max);
    return run(f, {std::string(in)});
}

struct Golden {
    std::string in;
    std::vector<std::string> events;
};

const std::vector<Golden>& goldens() {
    static const std::vector<Golden> g{
        {"", {}},
        {"EHLO a.example\r\n", {"L:EHLO a.example"}},
        {"\r\n", {"L:"}},
        {"a\r\nb\r\n", {"L:a", "L:b"}},
        {"a\r\nb", {"L:a"}},
        {"a\nb\r\n", {"E:bare LF"}},
        {"a\rb\r\n", {"E:bare CR"}},
        {"a\r\r\n", {"E:bare CR"}},
        {"\r\r\n", {"E:bare CR"}},
        {"\n\r\n", {"E:bare LF"}},
        {"a\n", {}},
        {"a\r", {}},
        {std::string("a\0b\r\n", 5), {"E:NUL octet"}},
        {std::string("\0\n\r\n", 4), {"E:NUL octet"}},
        {"x\ny\rz\r\nQUIT\r\n", {"E:bare LF", "L:QUIT"}},
        {"RSET\r\n\r\nNOOP\r\n", {"L:RSET", "L:", "L:NOOP"}},
        {"a\n\nb\r\nc\r\n", {"E:bare LF", "L:c"}},
        {"\r\n\r\n", {"L:", "L:"}},
    };
    return g;
}

}  // namespace

TEST_CASE("golden inputs give the expected events, at every split") {
    for (const auto& g : goldens()) {
        CAPTURE(g.in);
        CHECK(run_whole(g.in) == g.events);
        for (auto& s : all_splits(g.in)) {
            CAPTURE(s.name);
            LineFramer f;
            CHECK(run(f, s.pieces) == g.events);
        }
    }
}

TEST_CASE("line length limit counts the CRLF (RFC 5321 4.5.3.1.4)") {
    const std::string ok(510, 'a');
    const std::string bad(511, 'a');
    CHECK(run_whole(ok + "\r\n") == std::vector<std::string>{"L:" + ok});
    CHECK(run_whole(bad + "\r\n") == std::vector<std::string>{"E:line too long"});
    // The over-long line is reported once, as soon as it is too long, and
    // after its real CRLF we are back in sync.
    CHECK(run_whole(std::string(5000, 'x') + "\r\nQUIT\r\n") ==
          std::vector<std::string>{"E:line too long", "L:QUIT"});
    // Text lines: 1000 including CRLF.
    CHECK(run_whole(std::string(998, 'b') + "\r\n", kMaxTextLine).front() ==
          "L:" + std::string(998, 'b'));
    CHECK(run_whole(std::string(999, 'b') + "\r\n", kMaxTextLine).front() == "E:line too long");
    // A CR exactly at the limit followed by LF still fits.
    CHECK(run_whole("abcd\r\n", 6) == std::vector<std::string>{"L:abcd"});
    CHECK(run_whole("abcde\r\n", 6) == std::vector<std::string>{"E:line too long"});
    // The first fault wins.
    CHECK(run_whole(std::string(600, 'a') + "\n\r\n") ==
          std::vector<std::string>{"E:line too long"});
    CHECK(run_whole("a\n" + std::string(600, 'a') + "\r\n") ==
          std::vector<std::string>{"E:bare LF"});

    for (auto& s : all_splits(bad + "\r\nNOOP\r\n", 0)) {
        CAPTURE(s.name);
        LineFramer f;
        CHECK(run(f, s.pieces) == std::vector<std::string>{"E:line too long", "L:NOOP"});
    }
}

TEST_CASE("no CRLF means need_more, never an unbounded buffer") {
    LineFramer f;
    const std::string chunk(4096, 'z');
    // The error comes as soon as the line cannot fit, without its CRLF.
    auto first = f.feed(chunk);
    CHECK(first.kind == LineEvent::Kind::error);
    CHECK(first.error == LineError::too_long);
    CHECK(first.consumed == kMaxCommandLine - 1);
    CHECK(f.feed(std::string_view(chunk).substr(first.consumed)).kind ==
          LineEvent::Kind::need_more);
    for (int i = 1; i < 256; ++i) {
        auto ev = f.feed(chunk);
        CHECK(ev.kind == LineEvent::Kind::need_more);
        CHECK(ev.consumed == chunk.size());
    }
    // The rest of the line is skipped silently, without being buffered.
    CHECK(f.buffered() == 256u * 4096u);
    auto ev = f.feed("\r\nNOOP\r\n");
    CHECK(ev.kind == LineEvent::Kind::line);
    CHECK(ev.line == "NOOP");
    CHECK(ev.consumed == 8);
    CHECK(f.buffered() == 0);
}

TEST_CASE("an over-long line is reported before its CRLF arrives") {
    LineFramer f(16);
    auto ev = f.feed("0123456789abcde");  // 15 octets: CRLF would make 17
    CHECK(ev.kind == LineEvent::Kind::error);
    CHECK(ev.error == LineError::too_long);
    CHECK(ev.consumed == 15);
    // Faults inside the skipped rest are not reported a second time.
    CHECK(f.feed("more\nand\rmore").kind == LineEvent::Kind::need_more);
    auto next = f.feed("\r\nQUIT\r\n");
    CHECK(next.kind == LineEvent::Kind::line);
    CHECK(next.line == "QUIT");
}

TEST_CASE("buffered() tells the session about pipelined bytes") {
    LineFramer f;
    std::string in = "DATA\r\nSubj";
    auto ev = f.feed(in);
    REQUIRE(ev.kind == LineEvent::Kind::line);
    CHECK(ev.line == "DATA");
    CHECK(ev.consumed == 6);  // the caller still holds "Subj": pipelined after DATA
    CHECK(f.buffered() == 0);

    LineFramer g;
    CHECK(g.feed("STARTTLS").kind == LineEvent::Kind::need_more);
    CHECK(g.buffered() == 8);
    CHECK(g.feed("\r").kind == LineEvent::Kind::need_more);
    CHECK(g.buffered() == 9);
    ev = g.feed("\nEHLO");
    CHECK(ev.kind == LineEvent::Kind::line);
    CHECK(ev.line == "STARTTLS");
    CHECK(ev.consumed == 1);
    CHECK(g.buffered() == 0);
    g.reset();
    CHECK(g.buffered() == 0);
}

TEST_CASE("a line returned from the framer's buffer stays valid until the next feed") {
    LineFramer f;
    CHECK(f.feed("MAIL FROM:<a@").kind == LineEvent::Kind::need_more);
    std::string tail = "b.example>\r\n";
    auto ev = f.feed(tail);
    REQUIRE(ev.kind == LineEvent::Kind::line);
    tail.assign(tail.size(), '#');
    CHECK(ev.line == "MAIL FROM:<a@b.example>");
}

TEST_CASE("set_max_line_length applies and is clamped") {
    LineFramer f;
    f.set_max_line_length(0);
    CHECK(f.max_line_length() == 3);
    f.set_max_line_length(kMaxTextLine);
    auto ev = f.feed(std::string(900, 'q') + "\r\n");
    CHECK(ev.kind == LineEvent::Kind::line);
}
