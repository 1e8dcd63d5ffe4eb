// The session's explicit states: every change goes through enter() and is
// reported to Hooks::on_transition in order.
#include <doctest/doctest.h>

#include "tests/session/session_driver.hpp"

namespace {
std::vector<std::string> only(const std::vector<std::string>& all, const std::string& what) {
    std::vector<std::string> out;
    for (const auto& t : all)
        if (t.starts_with(what + ": ")) out.push_back(t.substr(what.size() + 2));
    return out;
}
}  // namespace

TEST_CASE("one relayed message walks the upstream link, the pending result and the data phase") {
    Run r;
    session::Settings quiet;
    quiet.volume.anomalies = false;  // with no limits either: no store request
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet);
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    const auto& t = r.hooks.transitions;
    CHECK(only(t, "link") == std::vector<std::string>{"closed -> idle", "idle -> in_transaction",
                                                      "in_transaction -> in_data",
                                                      "in_data -> idle", "idle -> closed"});
    // Each result is consumed (none) before the next action is decided. The
    // message came in one read: its data goes out with the "." (no write).
    CHECK(only(t, "pending") ==
          std::vector<std::string>{"none -> connect", "connect -> none", "none -> mail",
                                   "mail -> none", "none -> rcpt", "rcpt -> none", "none -> data",
                                   "data -> none", "none -> dot", "dot -> none"});
    CHECK(r.upstream.writes == 0);
    CHECK(r.upstream.received.ends_with("\r\n" + stuffed(kMessage) + ".\r\n"));
    CHECK(only(t, "data") == std::vector<std::string>{"none -> header", "header -> waiting_354",
                                                      "waiting_354 -> body", "body -> none"});
    CHECK(only(t, "stage") ==
          std::vector<std::string>{"command -> data", "data -> command", "command -> closed"});
}

TEST_CASE("message data is written before the gateway waits for more of it") {
    Run r;
    session::Settings quiet;
    quiet.volume.anomalies = false;
    // The body in one read, its "." in the next: the relay gets the data
    // first (it must not wait on a slow client), then the "." alone.
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage), ".\r\n", "QUIT\r\n"},
          "192.0.2.10", quiet);
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    const auto pending = only(r.hooks.transitions, "pending");
    CHECK(std::vector<std::string>(pending.end() - 4, pending.end()) ==
          std::vector<std::string>{"none -> write", "write -> none", "none -> dot", "dot -> none"});
    CHECK(r.upstream.writes == 1);
    CHECK(r.upstream.received.ends_with("\r\n" + stuffed(kMessage) + ".\r\n"));
}

TEST_CASE("volume control waits for the store at MAIL FROM and before the commit point") {
    Run r;  // default settings: anomaly signals on (volume at MAIL FROM, first-seen From at the
            // end)
    drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::accepted);
    const auto& t = r.hooks.transitions;
    const auto pending = only(t, "pending");
    REQUIRE(pending.size() >= 6);
    // The store answers before the relay is even connected, and again
    // before the final "." (never after it).
    CHECK(std::vector<std::string>(pending.begin(), pending.begin() + 3) ==
          std::vector<std::string>{"none -> limits", "limits -> none", "none -> connect"});
    CHECK(
        std::vector<std::string>(pending.end() - 4, pending.end()) ==
        std::vector<std::string>{"none -> limits", "limits -> none", "none -> dot", "dot -> none"});
    // A network identity is proven at MAIL FROM: the header does not wait.
    CHECK(only(t, "data") == std::vector<std::string>{"none -> header", "header -> waiting_354",
                                                      "waiting_354 -> body", "body -> none"});
    REQUIRE(r.limits_asked.size() == 2);
    CHECK(r.limits_asked[0].volume_key == "vol:{acme}");
    CHECK(r.limits_asked[0].first_seen ==
          relaygate::ratelimit::FirstSeenKeys{"seen:{acme}:net:192.0.2.0/24"});
    CHECK(
        r.limits_asked[1].first_seen ==
        relaygate::ratelimit::FirstSeenKeys{"seen:{acme}:from:network 192.0.2.0/24|acme.example"});
}

TEST_CASE("a refusal in the header ends the relay's transaction with RSET; mid-DATA loss closes") {
    Run r;
    drive(r, {transaction("alice@acme.example"),
              stuffed("From: mallory@rival.example\r\n\r\nhi\r\n") + ".\r\n", "QUIT\r\n"});
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason != Reason::accepted);
    CHECK(only(r.hooks.transitions, "link") ==
          std::vector<std::string>{"closed -> idle", "idle -> in_transaction",
                                   "in_transaction -> idle", "idle -> closed"});
    CHECK(has(r.upstream.received, "RSET\r\n"));

    Run lost;
    lost.upstream.faults["write"] = ::lost(Reason::upstream_failed);
    drive(lost, {transaction("alice@acme.example"), stuffed(kMessage), ".\r\n", "QUIT\r\n"});
    CHECK(only(lost.hooks.transitions, "link") ==
          std::vector<std::string>{"closed -> idle", "idle -> in_transaction",
                                   "in_transaction -> in_data", "in_data -> closed"});
    CHECK(only(lost.hooks.transitions, "data").back() == "discard -> none");
}

TEST_CASE("AUTH waits for its verification as the one pending result") {
    Run r;
    r.auth = [](const std::string&, const std::string&) { return std::string("fail"); };
    session::Settings s;
    s.auth = config::Auth::always;
    drive(r, {"EHLO c.example\r\nAUTH PLAIN AHUAcA==\r\nQUIT\r\n"}, "192.0.2.10", s);
    CHECK(only(r.hooks.transitions, "pending") ==
          std::vector<std::string>{"none -> auth", "auth -> none"});
    CHECK(r.auth_asked == std::vector<std::string>{"u"});
}
