// Tests for gateway/message/header_collector: the end of the header section
// is found at every split, nothing past it is consumed, the bound holds.
#include "gateway/message/header_collector.hpp"

#include <doctest/doctest.h>

#include <string>

using relaygate::message::HeaderCollector;
using Status = HeaderCollector::Status;

namespace {

struct Outcome {
    Status status;
    std::string header;
    std::size_t consumed;  // total bytes taken from the message
};

// Feeds `msg` in chunks of `step` bytes, stopping like the gateway does.
Outcome feed_in_steps(std::string_view msg, std::size_t step, std::size_t max) {
    HeaderCollector c(max);
    std::size_t total = 0;
    Status s = Status::need_more;
    for (std::size_t pos = 0; pos < msg.size() && s == Status::need_more; pos += step) {
        std::size_t used = 0;
        s = c.feed(msg.substr(pos, step), used);
        total += used;
        if (s == Status::need_more) CHECK(used == std::min(step, msg.size() - pos));
    }
    if (s == Status::need_more) s = c.finish();
    return {s, std::string(c.header()), total};
}

}  // namespace

TEST_CASE("the header section ends at the first CRLF CRLF, at every split") {
    struct Case {
        std::string msg;
        std::string header;
    };
    for (const auto& c : {
             Case{"From: a@b.example\r\n\r\nbody\r\n\r\nmore\r\n", "From: a@b.example\r\n\r\n"},
             Case{"\r\nbody\r\n", "\r\n"},
             Case{"\r\n\r\n", "\r\n"},
             Case{"A: 1\r\n\nB: 2\r\n\r\nbody", "A: 1\r\n\nB: 2\r\n\r\n"},  // bare LF is no end
             Case{"A: 1\n\r\n\r\nbody", "A: 1\n\r\n\r\n"},
             Case{"A: 1\r\n \r\n\r\nbody", "A: 1\r\n \r\n\r\n"},
             Case{"From: a@b.example\r\nX: y\r\n", "From: a@b.example\r\nX: y\r\n"},  // finish()
             Case{"", ""},
         }) {
        CAPTURE(c.msg);
        for (std::size_t step = 1; step <= c.msg.size() + 1; ++step) {
            CAPTURE(step);
            auto o = feed_in_steps(c.msg, step, 1024);
            CHECK(o.status == Status::complete);
            CHECK(o.header == c.header);
            CHECK(o.consumed == c.header.size());
        }
        // Two chunks split at every point.
        for (std::size_t cut = 0; cut <= c.msg.size(); ++cut) {
            HeaderCollector hc(1024);
            std::size_t u1 = 0, u2 = 0;
            auto s = hc.feed(std::string_view(c.msg).substr(0, cut), u1);
            if (s == Status::need_more) s = hc.feed(std::string_view(c.msg).substr(cut), u2);
            if (s == Status::need_more) s = hc.finish();
            CHECK(s == Status::complete);
            CHECK(hc.header() == c.header);
            CHECK(u1 + u2 == c.header.size());
        }
    }
}

TEST_CASE("the bound is enforced, never truncating silently") {
    std::string header = "From: a@b.example\r\n\r\n";  // 21 bytes
    for (std::size_t step = 1; step <= 30; ++step) {
        CAPTURE(step);
        CHECK(feed_in_steps(header + "body", step, 21).status == Status::complete);
        CHECK(feed_in_steps(header + "body", step, 20).status == Status::too_big);
        // Without an empty line: more data than the bound is too big...
        CHECK(feed_in_steps("From: a@b.example\r\nX: 1234\r\n", step, 20).status ==
              Status::too_big);
        // ...but exactly the bound at end of data is a complete header.
        CHECK(feed_in_steps("From: a@b.example\r\n", step, 19).status == Status::complete);
    }
    HeaderCollector c(4);
    std::size_t used = 0;
    CHECK(c.feed("abcdef", used) == Status::too_big);
    CHECK(used == 4);
    CHECK(c.feed("\r\n\r\n", used) == Status::too_big);
    CHECK(used == 0);
    CHECK(c.finish() == Status::too_big);
}

TEST_CASE("after completion nothing more is consumed") {
    HeaderCollector c(100);
    std::size_t used = 0;
    CHECK(c.feed("A: b\r\n\r\nrest", used) == Status::complete);
    CHECK(used == 8);
    CHECK(c.feed("more", used) == Status::complete);
    CHECK(used == 0);
    CHECK(c.finish() == Status::complete);
    CHECK(c.header() == "A: b\r\n\r\n");
    CHECK(c.feed("", used) == Status::complete);
}
