// Tests for gateway/smtp/line_framer: CRLF-only framing, typed errors,
// resynchronisation after a bad line, bounds, and every split point.
#include "gateway/smtp/line_framer.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <random>
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

// The framer as it was before it took ordinary octets in runs: every
// octet on its own. The fast path must give the same events, consumed
// counts and buffered() for any input split anywhere.
class OctetByOctet {
  public:
    explicit OctetByOctet(std::size_t max) : max_(max < 3 ? 3 : max) {}
    std::size_t buffered() const { return line_octets_; }
    LineEvent feed(std::string_view input) {
        if (release_) {
            buf_.clear();
            release_ = false;
        }
        std::size_t start = 0;
        for (std::size_t i = 0; i < input.size(); ++i) {
            const auto c = static_cast<unsigned char>(input[i]);
            ++line_octets_;
            if (pending_cr_) {
                pending_cr_ = false;
                if (c == '\n') {
                    if (!skipping_) return finish(input, start, i + 1);
                    skipping_ = false;
                    line_octets_ = 0;
                    start = i + 1;
                    continue;
                }
                note(LineError::bare_cr);
            }
            if (c == '\r')
                pending_cr_ = true;
            else if (c == '\n')
                note(LineError::bare_lf);
            else if (c == '\0')
                note(LineError::nul);
            if (!skipping_ && line_octets_ + (pending_cr_ ? 1 : 2) > max_) {
                note(LineError::too_long);
                LineEvent ev{LineEvent::Kind::error, i + 1, {}, *error_};
                error_.reset();
                skipping_ = true;
                return ev;
            }
        }
        if (!error_ && !skipping_) buf_.append(input.substr(start));
        return LineEvent{LineEvent::Kind::need_more, input.size(), {}, LineError::too_long};
    }

  private:
    void note(LineError e) {
        if (skipping_) return;
        if (!error_) error_ = e;
        buf_.clear();
    }
    LineEvent finish(std::string_view input, std::size_t start, std::size_t end) {
        LineEvent ev;
        ev.consumed = end;
        line_octets_ = 0;
        if (error_) {
            ev.kind = LineEvent::Kind::error;
            ev.error = *error_;
            error_.reset();
            buf_.clear();
            return ev;
        }
        ev.kind = LineEvent::Kind::line;
        if (buf_.empty()) {
            ev.line = input.substr(start, end - 2 - start);
        } else {
            buf_.append(input.substr(start, end - start));
            ev.line = std::string_view(buf_).substr(0, buf_.size() - 2);
            release_ = true;
        }
        return ev;
    }
    std::size_t max_;
    std::string buf_;
    std::size_t line_octets_ = 0;
    bool pending_cr_ = false, release_ = false, skipping_ = false;
    std::optional<LineError> error_;
};

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

TEST_CASE(
    "runs of ordinary octets: the same events as octet by octet, for random input and splits") {
    std::mt19937 rng(20261207);
    const char alphabet[] = {'a', 'b', 'c', 'd', '\r', '\n', '\0', 'e'};
    for (int round = 0; round < 20000; ++round) {
        const std::size_t max = 3 + rng() % 12;
        std::string in;
        const std::size_t len = rng() % 60;
        for (std::size_t i = 0; i < len; ++i) {
            // Mostly ordinary octets, often CRLF, sometimes a lone CR, LF or NUL.
            const unsigned r = rng() % 16;
            if (r < 10)
                in += alphabet[rng() % 4];
            else if (r < 14)
                in += "\r\n";
            else
                in += alphabet[4 + rng() % 4];
        }
        LineFramer fast(max);
        OctetByOctet slow(max);
        std::size_t at = 0;
        while (at < in.size()) {
            const std::size_t piece = 1 + rng() % (in.size() - at);
            std::string_view a(in.data() + at, piece), b = a;
            at += piece;
            for (;;) {
                CAPTURE(round);
                const LineEvent x = fast.feed(a), y = slow.feed(b);
                REQUIRE(static_cast<int>(x.kind) == static_cast<int>(y.kind));
                REQUIRE(x.consumed == y.consumed);
                REQUIRE(fast.buffered() == slow.buffered());
                if (x.kind == LineEvent::Kind::line) REQUIRE(x.line == y.line);
                if (x.kind == LineEvent::Kind::error) REQUIRE(x.error == y.error);
                a.remove_prefix(x.consumed);
                b.remove_prefix(y.consumed);
                if (x.kind == LineEvent::Kind::need_more) break;
            }
        }
    }
}
