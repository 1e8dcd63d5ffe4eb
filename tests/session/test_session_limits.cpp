// Tests for the session's hardening: every transaction leaves a record
// however it ends, session lifetime and transaction limits, AUTH throttling,
// the policy taken per transaction, idle upstream connections, and the
// RFC 1047 mark on a lost final reply.
#include <doctest/doctest.h>

#include "tests/session/session_driver.hpp"

namespace {

const std::string kData = stuffed(kMessage) + ".\r\n";

std::string auth_plain(const std::string& user, const std::string& password) {
    std::string raw = std::string(1, '\0') + user + '\0' + password;
    static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < raw.size(); i += 3) {
        const unsigned v = (unsigned char)raw[i] << 16 | (unsigned char)raw[i + 1] << 8 |
                           (unsigned char)raw[i + 2];
        out += {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
    }
    if (raw.size() - i == 1) {
        const unsigned v = (unsigned char)raw[i] << 16;
        out += {b64[v >> 18], b64[(v >> 12) & 63], '=', '='};
    } else if (raw.size() - i == 2) {
        const unsigned v = (unsigned char)raw[i] << 16 | (unsigned char)raw[i + 1] << 8;
        out += {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], '='};
    }
    return "AUTH PLAIN " + out + "\r\n";
}

}  // namespace

TEST_CASE("a client that disconnects mid-DATA leaves a record and nothing is committed") {
    Run r;
    drive(r, {transaction("alice@acme.example"), "From: alice@acme.example\r\n\r\npartial"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::client_disconnected);
    CHECK(r.hooks.records[0].stage == "data");
    CHECK(r.hooks.records[0].tenant == "acme");
    CHECK(count(r.upstream.log, "commit") == 0);
    CHECK(count(r.upstream.log, "abort") == 1);  // the relay discards the partial message
}

TEST_CASE("a timeout inside a transaction leaves a record with its reason") {
    for (auto reason : {Reason::timeout, Reason::data_too_slow}) {
        CAPTURE(label(reason));
        Run r;
        r.end_with_timeout = reason;
        drive(r, {transaction("alice@acme.example")});
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == reason);
        CHECK(has(r.client_out, std::to_string(info(reason).smtp_code) + " " +
                                    std::string(info(reason).enhanced)));
        CHECK(r.closed);
    }
    // After RCPT, before DATA: the stage says how far it got.
    Run r;
    r.end_with_timeout = Reason::timeout;
    drive(r, {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\nRCPT TO:<b@example.org>\r\n"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].stage == "rcpt");
    CHECK(r.hooks.records[0].recipients == 1);
    // No transaction, no record.
    Run idle;
    idle.end_with_timeout = Reason::timeout;
    drive(idle, {"EHLO c.example\r\n"});
    CHECK(idle.hooks.records.empty());
}

TEST_CASE("QUIT in the middle of a transaction is recorded") {
    Run r;
    drive(r, {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\nQUIT\r\n"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::client_disconnected);
    CHECK(has(r.client_out, "221 2.0.0"));
}

TEST_CASE("a session past its lifetime gets 421 at its next command") {
    session::Settings s;
    s.session_seconds = 60;
    Run r;
    r.before_chunk = [&](SessionMachine&, std::size_t i) {
        if (i == 1) r.hooks.t += 61;
    };
    drive(r, {"EHLO c.example\r\nNOOP\r\n", "NOOP\r\n", "NOOP\r\n"}, "192.0.2.10", s);
    CHECK(has(r.client_out, "250 2.0.0 OK\r\n421 4.7.0 Session open too long"));
    CHECK(r.closed);
    // ... also in the middle of a transaction, which is then recorded.
    Run t;
    t.before_chunk = [&](SessionMachine&, std::size_t i) {
        if (i == 1) t.hooks.t += 61;
    };
    drive(t,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n", "RCPT TO:<b@example.org>\r\n"},
          "192.0.2.10", s);
    REQUIRE(t.hooks.records.size() == 1);
    CHECK(t.hooks.records[0].reason == Reason::session_lifetime_exceeded);
    CHECK(count(t.upstream.log, "quit") == 1);
}

TEST_CASE("the transaction limit closes the session at the next MAIL") {
    session::Settings s;
    s.limits.max_transactions_per_session = 2;
    Run r;
    const std::string one = "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n";
    drive(r, {"EHLO c.example\r\n" + one, kData, one, kData, "MAIL FROM:<alice@acme.example>\r\n"},
          "192.0.2.10", s);
    CHECK(r.hooks.records.size() == 2);
    CHECK(count(r.upstream.log, "commit") == 2);
    CHECK(has(r.client_out, "421 4.7.0 Too many transactions in one session"));
    CHECK(r.closed);
}

TEST_CASE("each transaction takes the policy in force at its MAIL FROM") {
    auto revoked = policy::Policy::load_text(R"({
      "version": 1,
      "tenants": { "acme": { "domains": ["other.example"],
                             "identities": [ { "networks": ["192.0.2.0/24"] } ] } }
    })");
    REQUIRE(revoked.ok());
    std::shared_ptr<const policy::Policy> after = std::move(revoked).value();
    Run r;
    const std::string one = "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n";
    r.before_chunk = [&](SessionMachine&, std::size_t i) {
        if (i == 2) r.hooks.current = after;  // a reload between the transactions
    };
    drive(r, {"EHLO c.example\r\n" + one, kData, "MAIL FROM:<alice@acme.example>\r\n"});
    REQUIRE(r.hooks.records.size() == 2);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    CHECK(r.hooks.records[1].reason == Reason::envelope_domain_unauthorized);
    CHECK(has(r.client_out, "550 5.7.1 Sender domain is not authorized"));
    CHECK(count(r.upstream.log, "commit") == 1);
}

TEST_CASE("AUTH throttling: 454 once, then 421 and close; the password is never checked") {
    session::Settings s;
    s.auth = config::Auth::always;
    Run r;
    r.auth = [](const std::string&, const std::string&) { return std::string("throttled"); };
    drive(r, {"EHLO c.example\r\n" + auth_plain("u", "p"), auth_plain("u", "right"), "NOOP\r\n"},
          "192.0.2.10", s);
    CHECK(has(r.client_out, "454 4.7.0 Too many failed authentication attempts; wait"));
    CHECK(has(r.client_out, "421 4.7.0 Too many failed authentication attempts from your address"));
    CHECK(r.closed);
    CHECK(!has(r.client_out, "235"));
    // The fake answered both verify_auth actions with "throttled": in the
    // gateway the throttle answers before any hash is computed.
    CHECK(r.auth_asked.size() == 2);
}

TEST_CASE("AUTH: a failure then a success on the same connection") {
    session::Settings s;
    s.auth = config::Auth::always;
    Run r;
    r.auth = [](const std::string&, const std::string& pw) {
        return std::string(pw == "right" ? "ok" : "fail");
    };
    drive(r, {"EHLO c.example\r\n" + auth_plain("u", "wrong"), auth_plain("u", "right")},
          "192.0.2.10", s);
    CHECK(has(r.client_out, "535 5.7.8"));
    CHECK(has(r.client_out, "235 2.7.0"));
}

TEST_CASE("an idle upstream connection is closed and the next transaction reconnects") {
    Run r;
    const std::string one = "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n";
    r.before_chunk = [&](SessionMachine& m, std::size_t i) {
        if (i == 2) {
            CHECK(m.upstream_idle());
            m.on_upstream_idle();
            CHECK(!m.upstream_idle());
        }
    };
    drive(r, {"EHLO c.example\r\n" + one, kData, one, kData, "QUIT\r\n"});
    CHECK(count(r.upstream.log, "connect") == 2);
    CHECK(count(r.upstream.log, "quit") >= 1);
    CHECK(count(r.upstream.log, "commit") == 2);
}

TEST_CASE("a lost final reply is a 4xx and the record marks the outcome unknown (RFC 1047)") {
    Run r;
    r.upstream.faults["dot"] = lost(Reason::upstream_timeout);
    drive(r, {transaction("alice@acme.example"), kData, "QUIT\r\n"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::upstream_timeout);
    CHECK(r.hooks.records[0].commit_unknown);
    CHECK(has(r.client_out, "451 4.4.2"));
    CHECK(!has(r.client_out, "250 2.0.0 Ok: queued"));
}

TEST_CASE("partial_command() tells the runner a command line has started") {
    Run r;
    bool seen_partial = false;
    r.before_chunk = [&](SessionMachine& m, std::size_t i) {
        if (i == 1) seen_partial = m.partial_command();
    };
    drive(r, {"NO", "OP\r\nQUIT\r\n"});
    CHECK(seen_partial);
    CHECK(has(r.client_out, "250 2.0.0 OK"));
}

TEST_CASE("a reply the command cannot get is never relayed: 250 to DATA, 354 to the dot") {
    SUBCASE("DATA answered 250: nothing was committed, so the client gets 451") {
        Run r;
        r.upstream.faults["data"] = answers(250, "2.0.0", "Ok");
        drive(r, {transaction("alice@acme.example"), kData, "QUIT\r\n"});
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::upstream_failed);
        CHECK(!r.hooks.records[0].relayed);
        CHECK(has(r.client_out, "451 4.4.2"));
        CHECK(!has(r.client_out, "\r\n250 2.0.0 Ok\r\n"));
        CHECK(count(r.upstream.log, "commit") == 0);
    }
    SUBCASE("the final dot answered 354: outcome unknown, 451") {
        Run r;
        r.upstream.faults["dot"] = answers(354, "", "go on");
        drive(r, {transaction("alice@acme.example"), kData, "QUIT\r\n"});
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::upstream_failed);
        CHECK(r.hooks.records[0].commit_unknown);
        CHECK(!r.hooks.records[0].relayed);
        CHECK(has(r.client_out, "451 4.4.2"));
    }
    SUBCASE("MAIL answered 354") {
        Run r;
        r.upstream.faults["mail"] = answers(354, "", "what");
        drive(r, {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n"});
        CHECK(!has(r.client_out, "354"));
        CHECK(has(r.client_out, "451 4.4."));
    }
}

TEST_CASE("RSET and EHLO inside a transaction leave a record too") {
    Run r;
    drive(r, {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\nRSET\r\n"
              "MAIL FROM:<alice@acme.example>\r\nEHLO c.example\r\nQUIT\r\n"});
    REQUIRE(r.hooks.records.size() == 2);
    CHECK(r.hooks.records[0].reason == Reason::transaction_reset);
    CHECK(r.hooks.records[1].reason == Reason::transaction_reset);
}
