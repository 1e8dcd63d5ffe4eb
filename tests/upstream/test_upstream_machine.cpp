// Tests for gateway/upstream/upstream_machine: scripted relay transcripts
// (every action the machine hands out, with its timeout), every failure
// branch, a fault injected at every action, and every reply fed split at
// every byte (Beast's parsegrind, Boost.MySQL's scripted network).
#include "gateway/upstream/upstream_machine.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/smtp/split_feed.hpp"

using namespace relaygate;
using namespace relaygate::upstream;
using relaygate::test::all_splits;

namespace {

constexpr std::size_t kNoSplit = static_cast<std::size_t>(-1);

// Everything the machine reported, in order.
struct Recorder : Observer {
    Recorder() = default;
    explicit Recorder(std::vector<std::string> e) : events(std::move(e)) {}
    std::vector<std::string> events;
    void reply_wait(Step s) override { events.push_back("wait " + std::string(to_string(s))); }
    void reply_received(Step s) override { events.push_back("got " + std::string(to_string(s))); }
    void failed(std::string_view kind) override { events.push_back("fail " + std::string(kind)); }
    void transition(State from, State to) override {
        events.push_back(std::string(to_string(from)) + "->" + std::string(to_string(to)));
    }
    std::vector<std::string> transitions() const {
        std::vector<std::string> out;
        for (const auto& e : events)
            if (e.find("->") != std::string::npos) out.push_back(e);
        return out;
    }
    std::vector<std::string> failures() const {
        std::vector<std::string> out;
        for (const auto& e : events)
            if (e.rfind("fail ", 0) == 0) out.push_back(e.substr(5));
        return out;
    }
};

std::string render(const Action& a) {
    const std::string t = std::to_string(a.timeout.count());
    switch (a.kind) {
        case Action::Kind::connect:
            return "connect " + t;
        case Action::Kind::send:
            return "send " + t + " " + std::string(a.bytes);
        case Action::Kind::read:
            return "read " + t;
        case Action::Kind::tls_handshake:
            return "tls " + std::string(a.server_name) + " " + t;
        case Action::Kind::close:
            return "close";
        case Action::Kind::done:
            return "done";
    }
    return "?";
}

std::string render(const upstream::Result& r) {
    if (!r.ok) return "fail " + std::string(label(r.failure));
    std::string s = "ok";
    if (r.reply.code != 0) s += " " + std::to_string(r.reply.code);
    if (r.capabilities)  // an open's result only
        for (const auto& [k, v] : r.capabilities->keywords)
            s += " " + k;
    if (r.rcpt_reply) s += " rcpt " + std::to_string(r.rcpt_reply->code);
    return s;
}

// One scripted answer to one action: the action the machine must hand out
// (rendered), the octets a read delivers, and how the operation ended.
struct Entry {
    std::string action;
    std::string input = {};
    IoStatus status = IoStatus::ok;
    bool atomic = false;  // a read whose octets must arrive in one piece
};

// One request and the relay's script for it.
struct Request {
    std::function<Action(UpstreamMachine&)> start;
    std::vector<Entry> script;
};

struct Config {
    config::Upstream cfg;
    bool tls = false;
};

struct Outcome {
    std::vector<std::string> results;
    std::vector<std::string> events;
    bool operator==(const Outcome&) const = default;
};

// Plays the requests against a fresh machine. The read with global index
// `split_read` (counting reads with input) delivers `pieces`, one per read.
Outcome play(const Config& c, const std::vector<Request>& requests,
             std::size_t split_read = kNoSplit, std::vector<std::string> pieces = {}) {
    while (!pieces.empty() && pieces.back().empty())
        pieces.pop_back();  // nothing reads past a complete reply
    Recorder rec;
    UpstreamMachine m(c.cfg, "gw.example", c.tls, rec);
    Outcome out;
    std::size_t read_index = 0;
    for (const auto& req : requests) {
        Action a = req.start(m);
        for (const Entry& e : req.script) {
            REQUIRE(render(a) == e.action);
            if (a.kind == Action::Kind::read && !e.input.empty() && read_index++ == split_read) {
                for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
                    std::string piece = pieces[i];  // destroyed before the next
                    a = m.resume(IoStatus::ok, piece);
                    REQUIRE(render(a) == e.action);
                }
                std::string last = pieces.empty() ? std::string() : pieces.back();
                a = m.resume(e.status, last);
            } else {
                std::string input = e.input;
                a = m.resume(e.status, input);
            }
        }
        REQUIRE(render(a) == "done");
        out.results.push_back(render(a.result));
    }
    out.events = std::move(rec.events);
    return out;
}

// The same outcome with every read's octets split at every position.
void check_splits(const Config& c, const std::vector<Request>& requests) {
    const Outcome whole = play(c, requests);
    std::size_t index = 0;
    for (const auto& req : requests) {
        for (const Entry& e : req.script) {
            if (!e.action.starts_with("read") || e.input.empty()) continue;
            if (!e.atomic) {
                for (const auto& split : all_splits(e.input, 40)) {
                    CAPTURE(e.input);
                    CAPTURE(split.name);
                    CHECK(play(c, requests, index, split.pieces) == whole);
                }
            }
            ++index;
        }
    }
}

Request open_request(std::string addr = "192.0.2.7", std::string helo = "client.example") {
    return {[addr, helo](UpstreamMachine& m) { return m.open({addr, helo}); }, {}};
}

Request request(std::function<Action(UpstreamMachine&)> start, std::vector<Entry> script) {
    return {std::move(start), std::move(script)};
}

Config plain() {
    Config c;
    c.cfg.host = "relay.example";
    c.cfg.connect_timeout = std::chrono::seconds(30);
    c.cfg.reply_timeout = std::chrono::seconds(300);
    c.cfg.final_reply_timeout = std::chrono::seconds(600);
    c.cfg.data_block_timeout = std::chrono::seconds(180);
    c.cfg.quit_timeout = std::chrono::seconds(5);
    c.cfg.xclient = true;
    return c;
}

Config with_tls(config::UpstreamTls mode) {
    Config c = plain();
    c.cfg.starttls = mode;
    c.tls = true;
    return c;
}

const std::string kGreeting = "220 relay.example ESMTP\r\n";
const std::string kEhloPlain = "250-relay.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
const std::string kEhloTls = "250-relay.example\r\n250-STARTTLS\r\n250 PIPELINING\r\n";
const std::string kEhloXclient =
    "250-relay.example\r\n250-XCLIENT ADDR HELO PROTO NAME\r\n250 PIPELINING\r\n";
const std::string kEhloTlsXclient =
    "250-relay.example\r\n250-STARTTLS\r\n250 XCLIENT ADDR HELO PROTO\r\n";
const std::string kXclientLine = "XCLIENT ADDR=192.0.2.7 HELO=client.example PROTO=ESMTP\r\n";

std::vector<Entry> greet_ehlo(const std::string& ehlo_reply) {
    return {{"connect 30"},
            {"read 30", kGreeting},
            {"send 300 EHLO gw.example\r\n"},
            {"read 300", ehlo_reply}};
}

std::vector<Entry> operator+(std::vector<Entry> a, const std::vector<Entry>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<Entry> closed() {
    return {{"close"}};
}

// The open request with this script; its outcome.
Outcome open_with(const Config& c, std::vector<Entry> script, std::string addr = "192.0.2.7",
                  std::string helo = "client.example") {
    Request r = open_request(std::move(addr), std::move(helo));
    r.script = std::move(script);
    return play(c, {r});
}

}  // namespace

TEST_CASE("open: greeting and EHLO, nothing else offered") {
    const Config c = plain();
    Request r = open_request();
    r.script = greet_ehlo(kEhloPlain);
    const Outcome o = play(c, {r});
    CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
    CHECK(o.events == std::vector<std::string>{"closed->connecting", "connecting->greeting",
                                               "wait greeting", "got greeting", "greeting->ehlo",
                                               "wait ehlo", "got ehlo", "ehlo->ready"});
    check_splits(c, {r});
}

TEST_CASE("open: STARTTLS, EHLO again inside TLS") {
    for (auto mode : {config::UpstreamTls::opportunistic, config::UpstreamTls::required}) {
        const Config c = with_tls(mode);
        Request r = open_request();
        r.script = greet_ehlo(kEhloTls) + std::vector<Entry>{{"send 300 STARTTLS\r\n"},
                                                             {"read 300", "220 2.0.0 go ahead\r\n"},
                                                             {"tls relay.example 30"},
                                                             {"send 300 EHLO gw.example\r\n"},
                                                             {"read 300", kEhloPlain}};
        const Outcome o = play(c, {r});
        // The capabilities are those announced inside TLS.
        CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
        CHECK(Recorder(o.events).transitions() ==
              std::vector<std::string>{
                  "closed->connecting", "connecting->greeting", "greeting->ehlo", "ehlo->starttls",
                  "starttls->tls_handshake", "tls_handshake->tls_ehlo", "tls_ehlo->ready"});
        check_splits(c, {r});
    }
}

TEST_CASE("open: the handshake checks verify_name when set") {
    Config c = with_tls(config::UpstreamTls::required);
    c.cfg.verify_name = "signer.internal";
    c.cfg.connect_timeout = std::chrono::seconds(7);
    const Outcome o = open_with(c, {{"connect 7"},
                                    {"read 7", kGreeting},
                                    {"send 300 EHLO gw.example\r\n"},
                                    {"read 300", kEhloTls},
                                    {"send 300 STARTTLS\r\n"},
                                    {"read 300", "220 go\r\n"},
                                    {"tls signer.internal 7"},
                                    {"send 300 EHLO gw.example\r\n"},
                                    {"read 300", kEhloPlain}});
    CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
}

TEST_CASE("open: XCLIENT with the offered attributes, then EHLO again") {
    const Config c = plain();
    Request r = open_request();
    r.script =
        greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                      {"read 300", "220 relay.example ESMTP\r\n"},
                                                      {"send 300 EHLO client.example\r\n"},
                                                      {"read 300", kEhloXclient}};
    const Outcome o = play(c, {r});
    CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT"});
    CHECK(Recorder(o.events).transitions() ==
          std::vector<std::string>{"closed->connecting", "connecting->greeting", "greeting->ehlo",
                                   "ehlo->xclient", "xclient->xclient_ehlo",
                                   "xclient_ehlo->ready"});
    check_splits(c, {r});
}

TEST_CASE("open: STARTTLS, then XCLIENT as offered inside TLS") {
    const Config c = with_tls(config::UpstreamTls::required);
    Request r = open_request();
    r.script =
        greet_ehlo(kEhloTls) +
        std::vector<Entry>{{"send 300 STARTTLS\r\n"},        {"read 300", "220 go ahead\r\n"},
                           {"tls relay.example 30"},         {"send 300 EHLO gw.example\r\n"},
                           {"read 300", kEhloXclient},       {"send 300 " + kXclientLine},
                           {"read 300", "250 2.0.0 Ok\r\n"}, {"send 300 EHLO client.example\r\n"},
                           {"read 300", kEhloXclient}};
    const Outcome o = play(c, {r});
    CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT"});
    CHECK(Recorder(o.events).transitions() ==
          std::vector<std::string>{"closed->connecting", "connecting->greeting", "greeting->ehlo",
                                   "ehlo->starttls", "starttls->tls_handshake",
                                   "tls_handshake->tls_ehlo", "tls_ehlo->xclient",
                                   "xclient->xclient_ehlo", "xclient_ehlo->ready"});
    check_splits(c, {r});
}

TEST_CASE("XCLIENT: only announced attributes, xtext-encoded; none without ADDR") {
    const Config c = plain();
    SUBCASE("only ADDR offered") {
        const Outcome o =
            open_with(c, greet_ehlo("250-r\r\n250 XCLIENT ADDR\r\n") +
                             std::vector<Entry>{{"send 300 XCLIENT ADDR=192.0.2.7\r\n"},
                                                {"read 300", "250 ok\r\n"},
                                                {"send 300 EHLO client.example\r\n"},
                                                {"read 300", "250 r\r\n"}});
        CHECK(o.results == std::vector<std::string>{"ok 250"});
    }
    SUBCASE("xtext: '+', '=', space and octets outside 33..126") {
        const Outcome o =
            open_with(c,
                      greet_ehlo("250-r\r\n250 XCLIENT ADDR HELO\r\n") +
                          std::vector<Entry>{{"send 300 XCLIENT ADDR=IPV6:2001:db8::1 "
                                              "HELO=a+2Bb+3Dc+20d+7F+C3+A9\r\n"},
                                             {"read 300", "220 again\r\n"},
                                             {"send 300 EHLO a+b=c d\x7f\xc3\xa9\r\n"},
                                             {"read 300", "250 r\r\n"}},
                      "IPV6:2001:db8::1", "a+b=c d\x7f\xc3\xa9");
        CHECK(o.results == std::vector<std::string>{"ok 250"});
    }
    SUBCASE("an empty HELO is sent as [UNAVAILABLE]: the relay keeps a value left out") {
        const Outcome o = open_with(
            c,
            greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 XCLIENT ADDR=192.0.2.7 "
                                                           "HELO=[UNAVAILABLE] PROTO=ESMTP\r\n"},
                                                          {"read 300", "250 ok\r\n"},
                                                          {"send 300 EHLO gw.example\r\n"},
                                                          {"read 300", kEhloPlain}},
            "192.0.2.7", "");
        CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
    }
    SUBCASE("no client address: no XCLIENT") {
        const Outcome o = open_with(c, greet_ehlo(kEhloXclient), "", "client.example");
        CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT"});
    }
    SUBCASE("XCLIENT without ADDR: no XCLIENT") {
        const Outcome o = open_with(c, greet_ehlo("250-r\r\n250 XCLIENT HELO NAME\r\n"));
        CHECK(o.results == std::vector<std::string>{"ok 250 XCLIENT"});
    }
    SUBCASE("xclient off in the config") {
        Config off = plain();
        off.cfg.xclient = false;
        const Outcome o = open_with(off, greet_ehlo(kEhloXclient));
        CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT"});
    }
}

TEST_CASE("open failures") {
    const Config c = plain();
    auto fails = [&](const Config& cfg, std::vector<Entry> script, const char* result,
                     const char* kind) {
        const Outcome o = open_with(cfg, std::move(script) + closed());
        CHECK(o.results == std::vector<std::string>{result});
        Recorder rec{{o.events}};
        CHECK(rec.failures() == std::vector<std::string>{kind});
        CHECK(rec.transitions().back() == "closing->closed");
    };
    SUBCASE("connect fails or times out") {
        fails(c, {{"connect 30", "", IoStatus::error}}, "fail upstream_unavailable", "connect");
        fails(c, {{"connect 30", "", IoStatus::timeout}}, "fail upstream_unavailable", "connect");
    }
    SUBCASE("refused greeting") {
        fails(c, {{"connect 30"}, {"read 30", "554 5.3.2 go away\r\n"}},
              "fail upstream_unavailable", "refused");
        fails(c, {{"connect 30"}, {"read 30", "421 busy\r\n"}}, "fail upstream_unavailable",
              "refused");
    }
    SUBCASE("greeting times out, connection lost") {
        fails(c, {{"connect 30"}, {"read 30", "", IoStatus::timeout}}, "fail upstream_timeout",
              "timeout");
        fails(c, {{"connect 30"}, {"read 30", "220-partial\r\n"}, {"read 30", "", IoStatus::error}},
              "fail upstream_failed", "reset");
    }
    SUBCASE("non-250 EHLO") {
        fails(c,
              {{"connect 30"},
               {"read 30", kGreeting},
               {"send 300 EHLO gw.example\r\n"},
               {"read 300", "502 5.5.1 no EHLO here\r\n"}},
              "fail upstream_unavailable", "refused");
        fails(c,
              {{"connect 30"},
               {"read 30", kGreeting},
               {"send 300 EHLO gw.example\r\n"},
               {"read 300", "220 odd\r\n"}},
              "fail upstream_unavailable", "refused");
    }
    SUBCASE("protocol error in a reply") {
        fails(c, {{"connect 30"}, {"read 30", "22x hello\r\n"}}, "fail upstream_failed",
              "protocol");
        fails(c, {{"connect 30"}, {"read 30", "220 hello\n220 x\r\n"}}, "fail upstream_failed",
              "protocol");
        fails(c,
              {{"connect 30"},
               {"read 30", kGreeting},
               {"send 300 EHLO gw.example\r\n"},
               {"read 300", "250-a\r\n251 b\r\n"}},
              "fail upstream_failed", "protocol");
    }
    SUBCASE("EHLO cannot be sent") {
        fails(c,
              {{"connect 30"},
               {"read 30", kGreeting},
               {"send 300 EHLO gw.example\r\n", "", IoStatus::error}},
              "fail upstream_failed", "reset");
    }
    SUBCASE("XCLIENT refused") {
        fails(c,
              greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                            {"read 300", "550 5.7.0 denied\r\n"}},
              "fail upstream_unavailable", "refused");
        fails(c,
              greet_ehlo(kEhloXclient) +
                  std::vector<Entry>{{"send 300 " + kXclientLine}, {"read 300", "421 later\r\n"}},
              "fail upstream_unavailable", "refused");
    }
    SUBCASE("non-250 EHLO after XCLIENT") {
        fails(c,
              greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                            {"read 300", "220 again\r\n"},
                                                            {"send 300 EHLO client.example\r\n"},
                                                            {"read 300", "554 no\r\n"}},
              "fail upstream_unavailable", "refused");
    }
}

TEST_CASE("STARTTLS rules") {
    auto starttls_reply = [](const std::string& reply) {
        return greet_ehlo(kEhloTlsXclient) +
               std::vector<Entry>{{"send 300 STARTTLS\r\n"},
                                  {"read 300", reply, IoStatus::ok, true}};
    };
    SUBCASE("required but not offered") {
        const Outcome o =
            open_with(with_tls(config::UpstreamTls::required), greet_ehlo(kEhloPlain) + closed());
        CHECK(o.results == std::vector<std::string>{"fail upstream_unavailable"});
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"tls"});
    }
    SUBCASE("opportunistic and not offered: clear text, XCLIENT still used") {
        const Outcome o = open_with(
            with_tls(config::UpstreamTls::opportunistic),
            greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                          {"read 300", "250 ok\r\n"},
                                                          {"send 300 EHLO client.example\r\n"},
                                                          {"read 300", kEhloPlain}});
        CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
    }
    SUBCASE("454 to STARTTLS, required: fail") {
        const Outcome o = open_with(with_tls(config::UpstreamTls::required),
                                    starttls_reply("454 4.7.0 TLS not available\r\n") + closed());
        CHECK(o.results == std::vector<std::string>{"fail upstream_unavailable"});
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"tls"});
    }
    SUBCASE("454 to STARTTLS, opportunistic: clear text with the first EHLO's capabilities") {
        const Outcome o = open_with(with_tls(config::UpstreamTls::opportunistic),
                                    starttls_reply("454 4.7.0 TLS not available\r\n") +
                                        std::vector<Entry>{{"send 300 " + kXclientLine},
                                                           {"read 300", "250 ok\r\n"},
                                                           {"send 300 EHLO client.example\r\n"},
                                                           {"read 300", kEhloPlain}});
        CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING"});
        CHECK(Recorder(o.events).failures().empty());
    }
    SUBCASE("bytes after the 220 (RFC 3207 6): protocol error, in either mode") {
        for (auto mode : {config::UpstreamTls::opportunistic, config::UpstreamTls::required}) {
            const Outcome o = open_with(
                with_tls(mode), starttls_reply("220 go ahead\r\n250 injected\r\n") + closed());
            CHECK(o.results == std::vector<std::string>{"fail upstream_failed"});
            CHECK(Recorder(o.events).failures() == std::vector<std::string>{"protocol"});
        }
    }
    SUBCASE("the handshake fails") {
        const Outcome o = open_with(
            with_tls(config::UpstreamTls::opportunistic),
            starttls_reply("220 go\r\n") +
                std::vector<Entry>{{"tls relay.example 30", "", IoStatus::error}} + closed());
        CHECK(o.results == std::vector<std::string>{"fail upstream_unavailable"});
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"tls"});
    }
    SUBCASE("non-250 EHLO inside TLS") {
        const Outcome o = open_with(with_tls(config::UpstreamTls::required),
                                    starttls_reply("220 go\r\n") +
                                        std::vector<Entry>{{"tls relay.example 30"},
                                                           {"send 300 EHLO gw.example\r\n"},
                                                           {"read 300", "421 bye\r\n"}} +
                                        closed());
        CHECK(o.results == std::vector<std::string>{"fail upstream_unavailable"});
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"refused"});
    }
    SUBCASE("no TLS context: STARTTLS is never tried") {
        Config c = with_tls(config::UpstreamTls::required);
        c.tls = false;
        const Outcome o = open_with(c, greet_ehlo(kEhloTls));
        CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING STARTTLS"});
    }
    SUBCASE("starttls off: never tried") {
        Config c = with_tls(config::UpstreamTls::off);
        const Outcome o = open_with(c, greet_ehlo(kEhloTls));
        CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING STARTTLS"});
    }
}

TEST_CASE("a transaction: commands, data, commit, QUIT, with their timeouts") {
    Config c = plain();
    c.cfg.reply_timeout = std::chrono::seconds(11);
    c.cfg.final_reply_timeout = std::chrono::seconds(22);
    c.cfg.data_block_timeout = std::chrono::seconds(33);
    c.cfg.quit_timeout = std::chrono::seconds(4);
    Request open = open_request();
    open.script = {{"connect 30"},
                   {"read 30", kGreeting},
                   {"send 11 EHLO gw.example\r\n"},
                   {"read 11", kEhloPlain}};
    const std::vector<Request> requests = {
        open,
        request(
            [](UpstreamMachine& m) {
                return m.command("MAIL FROM:<a@acme.example>\r\n", Step::mail);
            },
            {{"send 11 MAIL FROM:<a@acme.example>\r\n"}, {"read 11", "250 2.1.0 Ok\r\n"}}),
        request(
            [](UpstreamMachine& m) { return m.command("RCPT TO:<b@x.example>\r\n", Step::rcpt); },
            {{"send 11 RCPT TO:<b@x.example>\r\n"},
             {"read 11", "550-5.1.1 no such\r\n550 5.1.1 user\r\n"}}),
        request([](UpstreamMachine& m) { return m.command("DATA\r\n", Step::data); },
                {{"send 11 DATA\r\n"}, {"read 11", "354 go ahead\r\n"}}),
        request([](UpstreamMachine& m) { return m.write("Subject: x\r\n\r\nhi\r\n"); },
                {{"send 33 Subject: x\r\n\r\nhi\r\n"}}),
        request([](UpstreamMachine& m) { return m.commit(".\r\n"); },
                {{"send 11 .\r\n"}, {"read 22", "250 2.0.0 Ok: queued as 4Xyz\r\n"}}),
        request([](UpstreamMachine& m) { return m.command("RSET\r\n", Step::rset); },
                {{"send 11 RSET\r\n"}, {"read 11", "250 2.0.0 Ok\r\n"}}),
        request([](UpstreamMachine& m) { return m.quit(); }, {{"send 4 QUIT\r\n"}, {"close"}}),
    };
    const Outcome o = play(c, requests);
    CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING", "ok 250", "ok 550",
                                                "ok 354", "ok", "ok 250", "ok 250", "ok"});
    std::vector<std::string> waits;
    for (const auto& e : o.events)
        if (e.rfind("got ", 0) == 0) waits.push_back(e.substr(4));
    CHECK(waits ==
          std::vector<std::string>{"greeting", "ehlo", "mail", "rcpt", "data", "dot", "rset"});
    CHECK(Recorder(o.events).transitions().back() == "closing->closed");
    check_splits(c, requests);
}

TEST_CASE("pipelined replies already received are used before reading again") {
    const Config c = plain();
    const std::vector<Request> requests = {
        request(
            [](UpstreamMachine& m) {
                return m.open({"", ""});
            },
            {{"connect 30"},
             {"read 30", kGreeting},
             {"send 300 EHLO gw.example\r\n"},
             {"read 300", kEhloPlain + "250 2.1.0 early\r\n", IoStatus::ok, true}}),
        request([](UpstreamMachine& m) { return m.command("MAIL FROM:<>\r\n", Step::mail); },
                {{"send 300 MAIL FROM:<>\r\n"}}),
    };
    CHECK(play(c, requests).results ==
          std::vector<std::string>{"ok 250 8BITMIME PIPELINING", "ok 250"});
}

TEST_CASE("MAIL and RCPT pipelined: one write, both replies, however they arrive") {
    const Config c = plain();
    Request open = open_request("", "");
    open.script = greet_ehlo(kEhloPlain);
    auto group = [](UpstreamMachine& m) {
        return m.command("MAIL FROM:<a@acme.example>\r\nRCPT TO:<b@x.example>\r\n", Step::mail,
                         true);
    };
    const std::string sent = "send 300 MAIL FROM:<a@acme.example>\r\nRCPT TO:<b@x.example>\r\n";
    SUBCASE("both replies in one read, split at every octet") {
        const std::vector<Request> requests = {
            open, request(group, {{sent}, {"read 300", "250 2.1.0 Ok\r\n550 5.1.1 no\r\n"}}),
            request([](UpstreamMachine& m) { return m.command("RSET\r\n", Step::rset); },
                    {{"send 300 RSET\r\n"}, {"read 300", "250 Ok\r\n"}})};
        const Outcome o = play(c, requests);
        CHECK(o.results ==
              std::vector<std::string>{"ok 250 8BITMIME PIPELINING", "ok 250 rcpt 550", "ok 250"});
        std::vector<std::string> steps;
        for (const auto& e : o.events)
            if (e.starts_with("wait ") || e.starts_with("got ")) steps.push_back(e);
        CHECK(std::vector<std::string>(steps.begin() + 4, steps.end()) ==
              std::vector<std::string>{"wait mail", "got mail", "wait rcpt", "got rcpt",
                                       "wait rset", "got rset"});
        check_splits(c, requests);
    }
    SUBCASE("the replies in two reads") {
        CHECK(play(c, {open, request(group, {{sent},
                                             {"read 300", "451 4.3.0 later\r\n"},
                                             {"read 300", "503 5.5.1 need MAIL\r\n"}})})
                  .results.back() == "ok 451 rcpt 503");
    }
    SUBCASE("the connection breaks after the MAIL's reply: the group fails as one") {
        const Outcome o = play(c, {open, request(group, {{sent},
                                                         {"read 300", "250 2.1.0 Ok\r\n"},
                                                         {"read 300", "", IoStatus::error},
                                                         {"close"}})});
        CHECK(o.results.back() == "fail upstream_failed");
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"reset"});
    }
    SUBCASE("after a group, a plain command carries no RCPT reply") {
        CHECK(play(c, {open, request(group, {{sent}, {"read 300", "250 a\r\n250 b\r\n"}}),
                       request([](UpstreamMachine& m) { return m.command("DATA\r\n", Step::data); },
                               {{"send 300 DATA\r\n"}, {"read 300", "354 go\r\n"}})})
                  .results.back() == "ok 354");
    }
}

TEST_CASE("transaction failures") {
    const Config c = plain();
    Request open = open_request("", "");
    open.script = greet_ehlo(kEhloPlain);
    auto run = [&](Request second) {
        const Outcome o = play(c, {open, std::move(second)});
        REQUIRE(o.results.size() == 2);
        return std::make_pair(o.results[1], Recorder(o.events).failures());
    };
    using Fail = std::pair<std::string, std::vector<std::string>>;
    auto mail = [](UpstreamMachine& m) { return m.command("MAIL FROM:<>\r\n", Step::mail); };
    CHECK(run(request(mail, {{"send 300 MAIL FROM:<>\r\n", "", IoStatus::error}, {"close"}})) ==
          Fail{"fail upstream_failed", {"reset"}});
    CHECK(run(request(mail, {{"send 300 MAIL FROM:<>\r\n", "", IoStatus::timeout}, {"close"}})) ==
          Fail{"fail upstream_failed", {"reset"}});
    CHECK(run(request(mail, {{"send 300 MAIL FROM:<>\r\n"},
                             {"read 300", "", IoStatus::timeout},
                             {"close"}})) == Fail{"fail upstream_timeout", {"timeout"}});
    CHECK(run(request(mail, {{"send 300 MAIL FROM:<>\r\n"},
                             {"read 300", "", IoStatus::error},
                             {"close"}})) == Fail{"fail upstream_failed", {"reset"}});
    CHECK(run(request(mail,
                      {{"send 300 MAIL FROM:<>\r\n"}, {"read 300", "2500 ok\r\n"}, {"close"}})) ==
          Fail{"fail upstream_failed", {"protocol"}});
    auto write = [](UpstreamMachine& m) { return m.write("x\r\n"); };
    CHECK(run(request(write, {{"send 180 x\r\n", "", IoStatus::timeout}, {"close"}})) ==
          Fail{"fail upstream_failed", {"reset"}});
    auto commit = [](UpstreamMachine& m) { return m.commit(".\r\n"); };
    CHECK(run(request(commit,
                      {{"send 300 .\r\n"}, {"read 600", "", IoStatus::timeout}, {"close"}})) ==
          Fail{"fail upstream_timeout", {"timeout"}});
    auto quit = [](UpstreamMachine& m) { return m.quit(); };
    CHECK(run(request(quit, {{"send 5 QUIT\r\n", "", IoStatus::error}, {"close"}})) ==
          Fail{"fail upstream_failed", {}});
}

TEST_CASE("requests without an open connection") {
    const Config c = plain();
    Recorder rec;
    UpstreamMachine m(c.cfg, "gw.example", false, rec);
    CHECK(render(m.command("MAIL FROM:<>\r\n", Step::mail)) == "close");
    Action a = m.resume(IoStatus::ok);
    CHECK(render(a) == "done");
    CHECK(render(a.result) == "fail upstream_failed");
    CHECK(rec.failures() == std::vector<std::string>{"reset"});
    CHECK(render(m.write("x")) == "close");
    CHECK(render(m.resume(IoStatus::ok).result) == "fail upstream_failed");
    CHECK(render(m.commit(".\r\n")) == "close");
    CHECK(render(m.resume(IoStatus::ok).result) == "fail upstream_failed");
    // QUIT with nothing open: close only, no metric.
    CHECK(render(m.quit()) == "close");
    CHECK(render(m.resume(IoStatus::ok)) == "done");
    CHECK(rec.failures().size() == 3);
    CHECK(m.state() == State::closed);
}

TEST_CASE("abort closes; a later open starts over with fresh buffers") {
    const Config c = plain();
    Recorder rec;
    UpstreamMachine m(c.cfg, "gw.example", false, rec);
    Action a = m.open({"", ""});
    a = m.resume(IoStatus::ok);
    a = m.resume(IoStatus::ok, "220-half a gree");
    CHECK(render(a) == "read 30");
    m.abort();
    CHECK(m.state() == State::closed);
    CHECK(render(m.command("RSET\r\n", Step::rset)) == "close");
    m.resume(IoStatus::ok);
    a = m.open({"", ""});
    a = m.resume(IoStatus::ok);
    a = m.resume(IoStatus::ok, kGreeting);
    CHECK(render(a) == "send 300 EHLO gw.example\r\n");
}

TEST_CASE("a fault injected at every action of the full open sequence") {
    const Config c = with_tls(config::UpstreamTls::required);
    const std::vector<Entry> full =
        greet_ehlo(kEhloTls) +
        std::vector<Entry>{{"send 300 STARTTLS\r\n"},     {"read 300", "220 go\r\n"},
                           {"tls relay.example 30"},      {"send 300 EHLO gw.example\r\n"},
                           {"read 300", kEhloXclient},    {"send 300 " + kXclientLine},
                           {"read 300", "220 again\r\n"}, {"send 300 EHLO client.example\r\n"},
                           {"read 300", kEhloXclient}};
    for (std::size_t i = 0; i < full.size(); ++i) {
        for (IoStatus st : {IoStatus::error, IoStatus::timeout}) {
            CAPTURE(i);
            CAPTURE(static_cast<int>(st));
            std::vector<Entry> script(full.begin(), full.begin() + static_cast<long>(i) + 1);
            script.back().status = st;
            script.back().input.clear();
            script.push_back({"close"});
            const Outcome o = open_with(c, script);
            const std::string& what = full[i].action;
            std::string expect_result = "fail upstream_failed", expect_kind = "reset";
            if (what.starts_with("connect")) {
                expect_result = "fail upstream_unavailable";
                expect_kind = "connect";
            } else if (what.starts_with("tls")) {
                expect_result = "fail upstream_unavailable";
                expect_kind = "tls";
            } else if (what.starts_with("read") && st == IoStatus::timeout) {
                expect_result = "fail upstream_timeout";
                expect_kind = "timeout";
            }
            CHECK(o.results == std::vector<std::string>{expect_result});
            CHECK(Recorder(o.events).failures() == std::vector<std::string>{expect_kind});
        }
    }
    CHECK(open_with(c, full).results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT"});
}

// --- the upstream connection pool: taking an idle connection over ---------

namespace {

const std::vector<Entry> kOpenWithXclient =
    greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                  {"read 300", "220 relay.example ESMTP\r\n"},
                                                  {"send 300 EHLO client.example\r\n"},
                                                  {"read 300", kEhloXclient}};

Request reuse_request(std::string addr, std::string helo, std::vector<Entry> script) {
    return request(
        [addr, helo](UpstreamMachine& m) {
            return m.reuse({addr, helo});
        },
        std::move(script));
}

// Runs `script` for the request `first` hands out; the final action.
Action drive(UpstreamMachine& m, Action a, const std::vector<Entry>& script) {
    for (const Entry& e : script) {
        REQUIRE(render(a) == e.action);
        a = m.resume(e.status, e.input);
    }
    return a;
}

}  // namespace

TEST_CASE("reuse: RSET, then XCLIENT announces the new client with every attribute") {
    const Config c = plain();
    Request open = open_request();
    open.script = kOpenWithXclient;
    // The second client gave no HELO name: the first client's must not stay.
    const Request second =
        reuse_request("198.51.100.9", "",
                      {{"send 300 RSET\r\n"},
                       {"read 300", "250 2.0.0 Ok\r\n"},
                       {"send 300 XCLIENT ADDR=198.51.100.9 HELO=[UNAVAILABLE] PROTO=ESMTP\r\n"},
                       {"read 300", "220 relay.example ESMTP\r\n"},
                       {"send 300 EHLO gw.example\r\n"},
                       {"read 300", kEhloXclient}});
    const Request third =
        reuse_request("203.0.113.5", "third.example",
                      {{"send 300 RSET\r\n"},
                       {"read 300", "250 2.0.0 Ok\r\n"},
                       {"send 300 XCLIENT ADDR=203.0.113.5 HELO=third.example PROTO=ESMTP\r\n"},
                       {"read 300", "250 2.0.0 Ok\r\n"},  // smtp-sink answers 250
                       {"send 300 EHLO third.example\r\n"},
                       {"read 300", kEhloPlain}});
    const Outcome o = play(c, {open, second, third});
    CHECK(o.results == std::vector<std::string>{"ok 250 PIPELINING XCLIENT",
                                                "ok 250 PIPELINING XCLIENT",
                                                "ok 250 8BITMIME PIPELINING"});
    const auto t = Recorder(o.events).transitions();
    CHECK(std::vector<std::string>(t.end() - 4, t.end()) ==
          std::vector<std::string>{"ready->resetting", "resetting->xclient",
                                   "xclient->xclient_ehlo", "xclient_ehlo->ready"});
    check_splits(c, {open, second, third});
}

TEST_CASE("reuse without XCLIENT: RSET only, and the capabilities of the open") {
    Config c = plain();
    c.cfg.xclient = false;
    Request open = open_request();
    open.script = greet_ehlo(kEhloXclient);
    const Outcome o =
        play(c, {open, reuse_request("198.51.100.9", "b.example",
                                     {{"send 300 RSET\r\n"}, {"read 300", "250 2.0.0 Ok\r\n"}})});
    CHECK(o.results ==
          std::vector<std::string>{"ok 250 PIPELINING XCLIENT", "ok 250 PIPELINING XCLIENT"});
}

TEST_CASE("reuse: a connection the relay dropped while idle fails quietly and closes") {
    const Config c = plain();
    Request open = open_request();
    open.script = kOpenWithXclient;
    for (const auto& failing : std::vector<std::vector<Entry>>{
             {{"send 300 RSET\r\n", "", IoStatus::error}, {"close"}},
             {{"send 300 RSET\r\n"}, {"read 300", "", IoStatus::error}, {"close"}},
             {{"send 300 RSET\r\n"}, {"read 300", "421 4.4.2 timeout\r\n"}, {"close"}}}) {
        const Outcome o = play(c, {open, reuse_request("198.51.100.9", "b.example", failing)});
        CHECK(o.results[1] == "fail upstream_failed");
        // Not a relay error: the pool counts it as stale.
        CHECK(Recorder(o.events).failures().empty());
        CHECK(Recorder(o.events).transitions().back() == "closing->closed");
    }
    // XCLIENT refused after a good RSET is the relay's error, as at open.
    const Outcome refused =
        play(c, {open, reuse_request("198.51.100.9", "b.example",
                                     {{"send 300 RSET\r\n"},
                                      {"read 300", "250 ok\r\n"},
                                      {"send 300 XCLIENT ADDR=198.51.100.9 HELO=b.example "
                                       "PROTO=ESMTP\r\n"},
                                      {"read 300", "550 5.7.0 denied\r\n"},
                                      {"close"}})});
    CHECK(refused.results[1] == "fail upstream_unavailable");
    CHECK(Recorder(refused.events).failures() == std::vector<std::string>{"refused"});
}

TEST_CASE("reuse with a deferred RSET: it rides with the first command, and finds dead ones") {
    Config c = plain();
    c.cfg.xclient = false;  // nothing to announce
    Request open = open_request();
    open.script = greet_ehlo(kEhloPlain);  // offers PIPELINING
    auto deferred = [](std::vector<Entry> script) {
        return request(
            [](UpstreamMachine& m) {
                return m.reuse({"198.51.100.9", "b.example"}, true);
            },
            std::move(script));
    };
    auto mail = [](std::vector<Entry> script) {
        return request(
            [](UpstreamMachine& m) { return m.command("MAIL FROM:<a@x>\r\n", Step::mail); },
            std::move(script));
    };
    SUBCASE("taken over at once; RSET and MAIL in one write, both replies, split anywhere") {
        const std::vector<Request> requests = {
            open, deferred({}),
            mail({{"send 300 RSET\r\nMAIL FROM:<a@x>\r\n"},
                  {"read 300", "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n"}}),
            mail({{"send 300 MAIL FROM:<a@x>\r\n"}, {"read 300", "250 2.1.0 Ok\r\n"}})};
        const Outcome o = play(c, requests);
        CHECK(o.results == std::vector<std::string>{"ok 250 8BITMIME PIPELINING",
                                                    "ok 250 8BITMIME PIPELINING", "ok 250",
                                                    "ok 250"});
        std::vector<std::string> got;
        for (const auto& e : o.events)
            if (e.starts_with("got ")) got.push_back(e.substr(4));
        CHECK(got == std::vector<std::string>{"greeting", "ehlo", "rset", "mail", "mail"});
        check_splits(c, requests);
    }
    SUBCASE("with a pipelined RCPT: three replies") {
        CHECK(play(c, {open, deferred({}),
                       request(
                           [](UpstreamMachine& m) {
                               return m.command("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", Step::mail,
                                                true);
                           },
                           {{"send 300 RSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"},
                            {"read 300", "250 a\r\n250 b\r\n550 c\r\n"}})})
                  .results.back() == "ok 250 rcpt 550");
    }
    SUBCASE("a dead connection fails the command as stale, not as a relay error") {
        for (const auto& failing : std::vector<std::vector<Entry>>{
                 {{"send 300 RSET\r\nMAIL FROM:<a@x>\r\n", "", IoStatus::error}, {"close"}},
                 {{"send 300 RSET\r\nMAIL FROM:<a@x>\r\n"},
                  {"read 300", "", IoStatus::error},
                  {"close"}},
                 {{"send 300 RSET\r\nMAIL FROM:<a@x>\r\n"},
                  {"read 300", "421 4.4.2 bye\r\n"},
                  {"close"}}}) {
            Recorder rec;
            UpstreamMachine m(c.cfg, "gw.example", false, rec);
            Action a = m.open({"", ""});
            for (const auto& e : open.script)
                a = m.resume(e.status, e.input);
            REQUIRE(render(a) == "done");
            a = m.reuse({"198.51.100.9", "b.example"}, true);
            REQUIRE(render(a) == "done");
            a = m.command("MAIL FROM:<a@x>\r\n", Step::mail);
            for (const auto& e : failing) {
                REQUIRE(render(a) == e.action);
                a = m.resume(e.status, e.input);
            }
            REQUIRE(render(a) == "done");
            CHECK_FALSE(a.result.ok);
            CHECK(a.result.stale);
            CHECK(rec.failures().empty());
        }
    }
    SUBCASE("after the RSET's 250, a failure is the relay's") {
        const Outcome o = play(c, {open, deferred({}),
                                   mail({{"send 300 RSET\r\nMAIL FROM:<a@x>\r\n"},
                                         {"read 300", "250 ok\r\n"},
                                         {"read 300", "", IoStatus::error},
                                         {"close"}})});
        CHECK(o.results.back() == "fail upstream_failed");
        CHECK(Recorder(o.events).failures() == std::vector<std::string>{"reset"});
    }
    SUBCASE("not deferred: no PIPELINING, upstream.pipelining off, or XCLIENT to send") {
        Request plain_open = open_request();
        plain_open.script = greet_ehlo("250-relay.example\r\n250 8BITMIME\r\n");
        CHECK(play(c, {plain_open, deferred({{"send 300 RSET\r\n"}, {"read 300", "250 ok\r\n"}})})
                  .results.back() == "ok 250 8BITMIME");
        Config off = c;
        off.cfg.pipelining = false;
        CHECK(play(off, {open, deferred({{"send 300 RSET\r\n"}, {"read 300", "250 ok\r\n"}})})
                  .results.back() == "ok 250 8BITMIME PIPELINING");
        Request xopen = open_request();
        xopen.script = kOpenWithXclient;
        CHECK(play(plain(), {xopen, deferred({{"send 300 RSET\r\n"},
                                              {"read 300", "250 ok\r\n"},
                                              {"send 300 XCLIENT ADDR=198.51.100.9 HELO=b.example "
                                               "PROTO=ESMTP\r\n"},
                                              {"read 300", "220 relay.example ESMTP\r\n"},
                                              {"send 300 EHLO b.example\r\n"},
                                              {"read 300", kEhloXclient}})})
                  .results.back() == "ok 250 PIPELINING XCLIENT");
    }
}

TEST_CASE("reusable_for: idle, clean, and able to tell the relay about that client") {
    Config c = plain();
    Recorder rec;
    UpstreamMachine m(c.cfg, "gw.example", false, rec);
    const XclientInfo first{"192.0.2.7", "client.example"};
    const XclientInfo other{"198.51.100.9", "b.example"};
    CHECK_FALSE(m.reusable_for(first));  // closed
    CHECK_FALSE(m.idle_and_clean());
    SUBCASE("XCLIENT withdrawn after use (Postfix): the same client only, RSET alone") {
        // Postfix checks smtpd_authorized_xclient_hosts against the announced
        // address and stops offering XCLIENT when it is not in the list.
        Action a = drive(
            m, m.open(first),
            greet_ehlo(kEhloXclient) + std::vector<Entry>{{"send 300 " + kXclientLine},
                                                          {"read 300", "220 again\r\n"},
                                                          {"send 300 EHLO client.example\r\n"},
                                                          {"read 300", kEhloPlain}});
        REQUIRE(render(a) == "done");
        CHECK(m.idle_and_clean());
        CHECK_FALSE(m.reusable_for(other));
        CHECK_FALSE(m.reusable_for({"192.0.2.7", "other-helo.example"}));
        REQUIRE(m.reusable_for(first));
        a = drive(m, m.reuse(first), {{"send 300 RSET\r\n"}, {"read 300", "250 ok\r\n"}});
        REQUIRE(render(a) == "done");
        CHECK(render(a.result) == "ok 250 8BITMIME PIPELINING");
        // Asked for another client anyway, it closes instead of sending mail
        // under the last client's name.
        CHECK(render(m.reuse(other)) == "close");
    }
    SUBCASE("XCLIENT still offered: any client, re-announced") {
        Action a = drive(m, m.open(first), kOpenWithXclient);
        REQUIRE(render(a) == "done");
        CHECK(m.reusable_for(other));
        CHECK(m.reusable_for(first));
        // The same client again needs no second XCLIENT.
        a = drive(m, m.reuse(first), {{"send 300 RSET\r\n"}, {"read 300", "250 ok\r\n"}});
        CHECK(render(a.result) == "ok 250 PIPELINING XCLIENT");
    }
    SUBCASE("not while a command is outstanding, nor with a reply buffered") {
        Action a = drive(m, m.open(first), kOpenWithXclient);
        REQUIRE(render(a) == "done");
        a = m.command("MAIL FROM:<a@x.example>\r\n", Step::mail);
        CHECK_FALSE(m.reusable_for(first));
        // Two replies in one read: the second stays buffered.
        a = drive(m, a, {{"send 300 MAIL FROM:<a@x.example>\r\n"}});
        a = m.resume(IoStatus::ok, "250 ok\r\n250 extra\r\n");
        REQUIRE(render(a) == "done");
        CHECK(m.ready());
        CHECK_FALSE(m.idle_and_clean());
        CHECK_FALSE(m.reusable_for(first));
    }
    SUBCASE("without XCLIENT in use, any client") {
        c.cfg.xclient = false;
        Action a = drive(m, m.open(first), greet_ehlo(kEhloPlain));
        REQUIRE(render(a) == "done");
        CHECK(m.reusable_for(other));
        CHECK_FALSE(m.announced().has_value());
    }
}

TEST_CASE("a written block of message data is not kept by an idle connection") {
    Config c = plain();
    c.cfg.xclient = false;
    Recorder rec;
    UpstreamMachine m(c.cfg, "gw.example", false, rec);
    Action a = drive(m, m.open({"192.0.2.7", "a.example"}), greet_ehlo(kEhloPlain));
    REQUIRE(render(a) == "done");
    const std::string block(100 * 1024, 'x');
    a = m.write(block);
    a = m.resume(IoStatus::ok);
    REQUIRE(render(a) == "done");
    CHECK(m.held_bytes() < 4096);
    a = m.commit(block + "\r\n.\r\n");
    a = m.resume(IoStatus::ok);  // written; now the reply
    REQUIRE(render(a) == "read 600");
    a = m.resume(IoStatus::ok, "250 2.0.0 queued\r\n");
    REQUIRE(render(a) == "done");
    CHECK(m.held_bytes() < 4096);
}
