// The recipient lease (rate_limit.recipient_lease): the MAIL FROM decision
// takes recipient units ahead, RCPT uses them without a store call, and
// what is left goes back to the store exactly once however the transaction
// ends. Store calls are counted on the driver's real MemoryStore.
#include <doctest/doctest.h>

#include "tests/session/session_driver.hpp"

namespace {

using Mode = ratelimit::Check::Mode;

// acme (192.0.2.0/24) with every kind of limit: `recipients` per hour.
std::shared_ptr<const policy::Policy> limits_policy(int recipients) {
    const std::string text = R"({
  "version": 1,
  "limits": { "messages": [ { "count": 100, "per": "1h" } ],
              "recipients": [ { "count": )" +
                             std::to_string(recipients) + R"(, "per": "1h" } ],
              "bytes": [ { "count": "1MiB", "per": "1h" } ] },
  "tenants": { "acme": { "domains": ["acme.example"],
                         "identities": [ { "networks": ["192.0.2.0/24"] } ] } }
})";
    auto r = policy::Policy::load_text(text);
    REQUIRE(r.ok());
    return std::move(r).value();
}

const std::string kRecipientsKey = "rl:{acme}:tenant:acme:recipients:3600";

session::Settings quiet(std::uint64_t lease = 1) {
    session::Settings s;
    s.volume.anomalies = false;  // only the limits ask the store
    s.volume.recipient_lease = lease;
    return s;
}

// Recipient units left in the store (asked, nothing taken).
std::uint64_t recipients_left(Run& r, int count) {
    ratelimit::Request ask;
    ask.checks.push_back({kRecipientsKey, 3600.0 / count, 3600.0, 0, Mode::ask});
    return r.store.decide(ask).remaining.at(0);
}

// The checks of `request` as "mode cost" (modes: consume, ask, lease, refund).
std::vector<std::string> checks(const ratelimit::Request& request, const std::string& kind) {
    std::vector<std::string> out;
    for (const auto& c : request.checks) {
        if (c.key.find(":" + kind + ":") == std::string::npos) continue;
        const char* m = c.mode == Mode::consume ? "consume"
                        : c.mode == Mode::ask   ? "ask"
                        : c.mode == Mode::lease ? "lease"
                                                : "refund";
        out.push_back(std::string(m) + " " + std::to_string(c.cost));
    }
    return out;
}

using Strings = std::vector<std::string>;

std::string rcpts(int n) {
    std::string out;
    for (int i = 0; i < n; ++i)
        out += "RCPT TO:<r" + std::to_string(i) + "@example.org>\r\n";
    return out;
}

}  // namespace

TEST_CASE("a 1-recipient message makes 2 store calls: the RCPT uses the lease") {
    Run r;
    r.policy = limits_policy(10);
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet());
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    CHECK(r.hooks.records[0].recipients == 1);
    REQUIRE(r.limits_asked.size() == 2);
    CHECK(checks(r.limits_asked[0], "messages") == Strings{"consume 1"});
    CHECK(checks(r.limits_asked[0], "recipients") == Strings{"lease 1"});
    CHECK(checks(r.limits_asked[1], "bytes").size() == 1);
    CHECK(checks(r.limits_asked[1], "recipients").empty());  // nothing left to give back
    CHECK(r.refunds.empty());
    CHECK(r.hooks.leases == Strings{"granted 1", "used 1"});
    CHECK(has(r.upstream.received, "RCPT TO:<bob@example.org>\r\n"));
    CHECK(recipients_left(r, 10) == 9);  // counted once, at MAIL FROM
}

TEST_CASE("3 recipients with a lease of 1: 1 + 2 + 1 store calls") {
    Run r;
    r.policy = limits_policy(10);
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n" + rcpts(3) + "DATA\r\n",
           stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet());
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    CHECK(r.hooks.records[0].recipients == 3);
    REQUIRE(r.limits_asked.size() == 4);
    CHECK(checks(r.limits_asked[0], "recipients") == Strings{"lease 1"});
    CHECK(checks(r.limits_asked[1], "recipients") == Strings{"consume 1"});
    CHECK(checks(r.limits_asked[2], "recipients") == Strings{"consume 1"});
    CHECK(checks(r.limits_asked[3], "recipients").empty());
    CHECK(r.refunds.empty());
    CHECK(recipients_left(r, 10) == 7);
}

TEST_CASE("lease 0 is the behaviour without leases: every RCPT asks the store") {
    Run r;
    r.policy = limits_policy(10);
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet(0));
    REQUIRE(r.limits_asked.size() == 3);
    CHECK(checks(r.limits_asked[0], "recipients").empty());
    CHECK(checks(r.limits_asked[1], "recipients") == Strings{"consume 1"});
    CHECK(r.hooks.leases.empty());
    CHECK(recipients_left(r, 10) == 9);
}

TEST_CASE("no lease on a request of its own: recipients limits only") {
    Run r;
    r.policy = policy::Policy::load_text(R"({
  "version": 1,
  "limits": { "recipients": [ { "count": 10, "per": "1h" } ] },
  "tenants": { "acme": { "domains": ["acme.example"],
                         "identities": [ { "networks": ["192.0.2.0/24"] } ] } }
})")
                   .value();
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet());
    // MAIL FROM has nothing else to ask: the RCPT asks, as without leases.
    REQUIRE(r.limits_asked.size() == 1);
    CHECK(checks(r.limits_asked[0], "recipients") == Strings{"consume 1"});
    CHECK(r.hooks.leases.empty());
}

TEST_CASE("RSET after MAIL refunds the lease; the next MAIL takes it again") {
    Run r;
    r.policy = limits_policy(10);
    std::uint64_t left_after_rset = 0;
    r.before_chunk = [&](SessionMachine&, std::size_t i) {
        if (i == 1) left_after_rset = recipients_left(r, 10);
    };
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\nRSET\r\n",
           "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
           stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet());
    CHECK(left_after_rset == 10);  // given back before the client's next command
    REQUIRE(r.refunds.size() == 1);
    CHECK(checks(r.refunds[0], "recipients") == Strings{"refund 1"});
    REQUIRE(r.hooks.records.size() == 2);
    CHECK(r.hooks.records[0].reason == Reason::transaction_reset);
    CHECK(r.hooks.records[1].reason == Reason::accepted);
    CHECK(r.hooks.leases == Strings{"granted 1", "granted 1", "used 1"});
    CHECK(recipients_left(r, 10) == 9);
}

TEST_CASE("every way a transaction ends gives an unused lease back exactly once") {
    struct Case {
        const char* name;
        std::vector<std::string> chunks;
        std::function<void(Run&)> setup;
        std::uint64_t lease = 1;  // one RCPT before the end: lease 3, 2 unused
    };
    const std::string mail = "EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n";
    const std::string rcpt = "RCPT TO:<bob@example.org>\r\n";
    const std::vector<Case> cases = {
        {"QUIT", {mail + "QUIT\r\n"}, {}},
        {"client gone", {mail}, {}},
        {"timeout", {mail}, [](Run& r) { r.end_with_timeout = Reason::timeout; }},
        {"EHLO", {mail + "EHLO c.example\r\nQUIT\r\n"}, {}},
        {"relay refuses MAIL",
         {mail + "QUIT\r\n"},
         [](Run& r) { r.upstream.faults["mail"] = answers(550, "5.7.1", "no"); }},
        {"relay down",
         {mail + "QUIT\r\n"},
         [](Run& r) { r.upstream.faults["connect"] = lost(Reason::upstream_unavailable); }},
        {"DATA without a recipient, then QUIT", {mail + "DATA\r\nQUIT\r\n"}, {}},
        {"DATA refused: bytes before the 354", {mail + rcpt + "DATA\r\nFrom: x\r\n"}, {}, 3},
        {"DATA refused by the relay",
         {mail + rcpt + "DATA\r\n", stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
         [](Run& r) { r.upstream.faults["data"] = answers(554, "5.5.1", "no"); },
         3},
        {"refused at the header",
         {mail + rcpt + "DATA\r\n", stuffed("From: mallory@rival.example\r\n\r\nhi\r\n") + ".\r\n",
          "QUIT\r\n"},
         {},
         3},
        {"relay lost mid-DATA",
         {mail + rcpt + "DATA\r\n", stuffed(kMessage), ".\r\n", "QUIT\r\n"},
         [](Run& r) { r.upstream.faults["write"] = lost(Reason::upstream_failed); },
         3},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        Run r;
        r.policy = limits_policy(10);
        if (c.setup) c.setup(r);
        drive(r, c.chunks, "192.0.2.10", quiet(c.lease));
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason != Reason::accepted);
        const std::uint64_t unused = c.lease == 1 ? 1 : 2;
        REQUIRE(r.refunds.size() == 1);
        CHECK(checks(r.refunds[0], "recipients") == Strings{"refund " + std::to_string(unused)});
        // What the store holds is what the transaction used, no more.
        CHECK(recipients_left(r, 10) == 10 - (c.lease - unused));
        // None rode on a store call as well.
        for (const auto& asked : r.limits_asked)
            CHECK(checks(asked, "recipients") != Strings{"refund " + std::to_string(unused)});
    }
}

TEST_CASE("a lease that does not fit is not granted: RCPT asks the store and gets 452") {
    Run r;
    r.policy = limits_policy(2);
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n" + rcpts(2) + "DATA\r\n",
           stuffed(kMessage) + ".\r\n",
           "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<late@example.org>\r\nQUIT\r\n"},
          "192.0.2.10", quiet());
    REQUIRE(r.hooks.records.size() == 2);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    CHECK(r.hooks.records[0].recipients == 2);
    // The second MAIL FROM is allowed (its messages limit has room); its
    // lease does not fit and is not taken; the RCPT asks and is refused
    // with the reply it always had.
    REQUIRE(r.limits_asked.size() == 5);
    CHECK(checks(r.limits_asked[3], "recipients") == Strings{"lease 1"});
    CHECK(checks(r.limits_asked[4], "recipients") == Strings{"consume 1"});
    CHECK(has(r.client_out,
              "452 4.5.3 Recipient rate limit reached for your account; send the rest later: "
              "recipients 2 per 1h (tenant acme); retry in 30m\r\n"));
    CHECK_FALSE(has(r.upstream.received, "late@example.org"));
    CHECK(r.hooks.leases == Strings{"granted 1", "used 1"});
    CHECK(r.refunds.empty());  // nothing was leased, nothing goes back
    CHECK(r.hooks.records[1].limit == "recipients 2 per 1h (tenant acme)");
}

TEST_CASE("report-only: the lease is used; the excess RCPT is asked, reported, not refused") {
    Run r;
    r.policy = limits_policy(1);
    session::Settings s = quiet();
    s.volume.report_only = true;
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n" + rcpts(2) + "DATA\r\n",
           stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", s);
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    CHECK(r.hooks.records[0].recipients == 2);
    CHECK(r.hooks.records[0].limit == "recipients 1 per 1h (tenant acme)");
    CHECK_FALSE(has(r.client_out, "452"));
    REQUIRE(r.limits_asked.size() == 3);
    CHECK(checks(r.limits_asked[1], "recipients") == Strings{"consume 1"});
    CHECK(r.hooks.leases == Strings{"granted 1", "used 1"});
}

TEST_CASE("a larger lease: unused units ride back on the end-of-data request") {
    Run r;
    r.policy = limits_policy(10);
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n" + rcpts(2) + "DATA\r\n",
           stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet(5));
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    REQUIRE(r.limits_asked.size() == 2);
    CHECK(checks(r.limits_asked[0], "recipients") == Strings{"lease 5"});
    CHECK(checks(r.limits_asked[1], "recipients") == Strings{"refund 3"});
    CHECK(r.refunds.empty());
    CHECK(r.hooks.leases == Strings{"granted 5", "used 1", "used 1", "refunded 3"});
    CHECK(recipients_left(r, 10) == 8);
}

TEST_CASE("a refund the store did not get is counted lost, never sent twice") {
    Run r;
    r.policy = limits_policy(10);
    r.before_chunk = [&](SessionMachine&, std::size_t i) { r.store_down = i == 1; };
    drive(r,
          {"EHLO c.example\r\nMAIL FROM:<alice@acme.example>\r\n" + rcpts(1) + "DATA\r\n",
           stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet(3));
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::rate_limit_unavailable);
    CHECK(r.hooks.leases == Strings{"granted 3", "used 1", "lost 2"});
    CHECK(r.refunds.empty());
}

TEST_CASE(
    "pipelining to the relay: a RCPT the lease covers joins the MAIL, one that asks the store does "
    "not") {
    const Strings group{"MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\n",
                        "DATA\r\n"};
    Run leased;
    leased.policy = limits_policy(10);
    leased.upstream.pipelining = true;
    drive(leased, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet());
    CHECK(leased.upstream.commands == group);
    CHECK(leased.hooks.records.at(0).reason == Reason::accepted);
    CHECK(recipients_left(leased, 10) == 9);

    // No lease: the RCPT's own store call decides, and a refusal must not
    // come before the MAIL's reply: without upstream.defer_mail the MAIL
    // goes alone; with it (the MAIL answered already) the RCPT joins the
    // MAIL after the store's answer.
    for (const bool defer : {false, true}) {
        CAPTURE(defer);
        Run asks;
        asks.policy = limits_policy(10);
        asks.upstream.pipelining = true;
        auto settings = quiet(0);
        settings.upstream_defer_mail = defer;
        drive(asks, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", settings);
        CHECK(asks.upstream.commands ==
              (defer ? group
                     : Strings{"MAIL FROM:<alice@acme.example>\r\n",
                               "RCPT TO:<bob@example.org>\r\n", "DATA\r\n"}));
        CHECK(asks.hooks.records.at(0).reason == Reason::accepted);
        CHECK(recipients_left(asks, 10) == 9);
    }
}
