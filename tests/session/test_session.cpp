// Tests for the session state machine that a transcript cannot express:
// state the runner reads from the machine rather than from its actions.
// Every scripted conversation (client, relay, DNS, AUTH, TLS, audit) is a
// golden transcript in tests/session/transcripts/, run by
// test_transcripts.cpp, which also splits the client's bytes at every byte
// and loses the relay at every upstream action.
#include "gateway/session/session.hpp"

#include <doctest/doctest.h>

#include "tests/session/session_driver.hpp"

TEST_CASE("the client's EHLO/HELO name is kept for XCLIENT, latest wins") {
    FakeHooks hooks;
    session::Settings settings;
    SessionMachine m(settings, test_policy(), session::ClientInfo{"t-1", "192.0.2.10", 1}, hooks);
    auto drain = [&] {
        while (true) {
            Flat a = flatten(m.next());
            if (a.kind == TK::read_client) return;
        }
    };
    drain();
    CHECK(m.client_helo().empty());
    m.on_client_data("EHLO Client.Example\r\n");
    drain();
    CHECK(m.client_helo() == "client.example");
    m.on_client_data("EHLO [192.0.2.10]\r\n");
    drain();
    CHECK(m.client_helo() == "[192.0.2.10]");
    m.on_client_data("HELO mx.other.example\r\n");
    drain();
    CHECK(m.client_helo() == "mx.other.example");
    m.on_client_data("EHLO -bad-\r\n");  // refused: the last good name stays
    drain();
    CHECK(m.client_helo() == "mx.other.example");
}

// RFC 2920 towards the relay (the transcript upstream-pipelining.txt shows
// the conversation): what a transcript's scripted relay cannot vary. These
// are without upstream.defer_mail; the next test case is with it.
TEST_CASE("pipelining to the relay: MAIL and the first RCPT in one write, when it may") {
    session::Settings no_defer;
    no_defer.upstream_defer_mail = false;
    const std::string mail = "MAIL FROM:<alice@acme.example>\r\n";
    const std::string rcpt = "RCPT TO:<bob@example.org>\r\n";
    auto sent = [](const Run& r) { return r.upstream.commands; };
    using Strings = std::vector<std::string>;
    SUBCASE("offered and pipelined by the client: one group") {
        Run r;
        r.upstream.pipelining = true;
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", no_defer);
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::accepted);
        CHECK(sent(r) == Strings{mail + rcpt, "DATA\r\n"});
        CHECK(has(r.client_out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 "));
    }
    SUBCASE("not offered, or upstream.pipelining off: MAIL alone") {
        Run r;
        session::Settings off;
        off.upstream_pipelining = false;
        r.upstream.pipelining = true;
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", off);
        CHECK(sent(r) == Strings{mail, rcpt, "DATA\r\n"});
        Run plain;
        drive(plain, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
        CHECK(sent(plain) == Strings{mail, rcpt, "DATA\r\n"});
    }
    SUBCASE("the RCPT arrives in a later read: MAIL alone") {
        Run r;
        r.upstream.pipelining = true;
        drive(r,
              {"EHLO client.example\r\nMAIL FROM:<alice@acme.example>\r\n",
               "RCPT TO:<bob@example.org>\r\nDATA\r\n", stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", no_defer);
        CHECK(sent(r) == Strings{mail, rcpt, "DATA\r\n"});
        CHECK(r.hooks.records.at(0).reason == Reason::accepted);
    }
    SUBCASE("a RCPT the session refuses itself: MAIL alone, replies in order") {
        Run r;
        r.upstream.pipelining = true;
        drive(r,
              {"EHLO client.example\r\nMAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org> "
               "NOTIFY=NEVER\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
               stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", no_defer);
        CHECK(sent(r) == Strings{mail, rcpt, "DATA\r\n"});
        CHECK(has(r.client_out, "250 2.1.0 Ok\r\n504 5.5.4 "));
        CHECK(r.hooks.records.at(0).reason == Reason::accepted);
    }
    SUBCASE("the group is lost: sent again on a fresh connection, the client sees nothing") {
        Run r;
        r.upstream.pipelining = true;
        r.upstream.lose_at = 1;  // 0: connect, 1: the group
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n", "QUIT\r\n"},
              "192.0.2.10", no_defer);
        CHECK(count(r.upstream.log, "connect") == 2);
        CHECK(sent(r) == Strings{mail + rcpt, "DATA\r\n"});  // the lost one never answered
        CHECK(r.hooks.records.at(0).reason == Reason::accepted);
        CHECK(has(r.client_out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 "));
    }
    SUBCASE("lost twice: 4xx for the MAIL, 503 for its RCPT, nothing relayed") {
        Run r;
        r.upstream.pipelining = true;
        r.upstream.faults["mail"] = lost(Reason::upstream_failed);
        drive(r, {transaction("alice@acme.example"), "QUIT\r\n"}, "192.0.2.10", no_defer);
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::upstream_failed);
        CHECK(has(r.client_out, "\r\n451 "));
        CHECK(has(r.client_out, "\r\n503 5.5.1 "));
        CHECK_FALSE(has(r.upstream.received, "DATA"));
    }
}

// upstream.defer_mail (on by default): with a relay that offers PIPELINING,
// the MAIL is answered as soon as the policy passed and goes to the relay
// with the client's first RCPT, whenever that comes (the transcript
// upstream-defer-mail.txt shows the conversation).
TEST_CASE("CHUNKING: a message that ends within the batch goes as one BDAT LAST") {
    const std::string head =
        "EHLO client.example\r\nMAIL FROM:<alice@acme.example>\r\n"
        "RCPT TO:<bob@example.org>\r\nDATA\r\n";
    using Strings = std::vector<std::string>;
    // What the relay stores from the message data it was sent.
    const auto delivered = [](const std::string& received) {
        const auto at = received.find("X-Relaygate-Verdict: ");
        REQUIRE(at != std::string::npos);
        std::string data = received.substr(at);
        if (!data.ends_with("\r\n.\r\n")) return data;  // BDAT: as is
        data.resize(data.size() - 3);
        std::string out;  // un-stuffed: the verdict line never starts with "."
        for (std::size_t i = 0; i < data.size(); ++i)
            if (!(data[i] == '.' && i >= 2 && data[i - 1] == '\n' && data[i - 2] == '\r'))
                out += data[i];
            else if (i + 1 < data.size() && data[i + 1] == '.')
                out += data[++i];
        return out;
    };
    SUBCASE("small: no DATA, the content un-stuffed and counted exactly") {
        Run r;
        r.upstream.chunking = true;
        drive(r, {head, stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
        CHECK(r.upstream.commands ==
              Strings{"MAIL FROM:<alice@acme.example>\r\n", "RCPT TO:<bob@example.org>\r\n"});
        CHECK(r.upstream.writes == 0);
        const auto bdat = r.upstream.received.find("BDAT ");
        REQUIRE(bdat != std::string::npos);
        const auto eol = r.upstream.received.find("\r\n", bdat);
        const std::string content = r.upstream.received.substr(eol + 2);
        CHECK(r.upstream.received.substr(bdat, eol - bdat) ==
              "BDAT " + std::to_string(content.size()) + " LAST");
        CHECK(content.ends_with("\r\n" + kMessage));
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::accepted);
        CHECK(has(r.client_out, "\r\n250 2.0.0 Ok: queued as ABC123\r\n"));
    }
    SUBCASE("too big to hold: DATA once the batch is full, then streamed as before") {
        std::string big = kMessage;
        while (big.size() < 3 * SessionMachine::kUpstreamBatch)
            big += ".a line that starts with a dot, then some text to fill it up\r\n";
        std::vector<std::string> chunks{head};
        const std::string data = stuffed(big) + ".\r\n";
        for (std::size_t at = 0; at < data.size(); at += 4096)
            chunks.push_back(data.substr(at, 4096));
        chunks.push_back("QUIT\r\n");
        Run with, without;
        with.upstream.chunking = true;
        drive(with, chunks);
        drive(without, chunks);
        CHECK(with.upstream.commands.back() == "DATA\r\n");
        CHECK_FALSE(has(with.upstream.received, "BDAT "));
        CHECK(with.upstream.writes > 0);
        CHECK(delivered(with.upstream.received) == delivered(without.upstream.received));
        CHECK(delivered(with.upstream.received).ends_with(big));
        REQUIRE(with.hooks.records.size() == 1);
        CHECK(with.hooks.records[0].reason == Reason::accepted);
    }
    SUBCASE("held too long (a relay idle meanwhile could time out): DATA, then the rest") {
        const std::string data = stuffed(kMessage) + ".\r\n";
        const std::size_t half = data.find("Hello Bob.");  // in the body, after the header
        Run r;
        r.upstream.chunking = true;
        // The client pauses before its last read, which ends the data.
        r.before_chunk = [&r](SessionMachine&, std::size_t i) {
            if (i == 2) r.hooks.t += SessionMachine::kHoldSeconds;
        };
        drive(r, {head, data.substr(0, half), data.substr(half), "QUIT\r\n"});
        CHECK(r.upstream.commands.back() == "DATA\r\n");
        CHECK_FALSE(has(r.upstream.received, "BDAT "));
        CHECK(delivered(r.upstream.received).ends_with("\r\n" + kMessage));
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::accepted);
    }
    SUBCASE("refused at the header: nothing of the message goes out, RSET ends it") {
        Run r;
        r.upstream.chunking = true;
        std::string rival = kMessage;
        rival.replace(rival.find("alice@acme.example"), 18, "eve@rival.example");
        drive(r, {head, stuffed(rival) + ".\r\n", "QUIT\r\n"});
        CHECK_FALSE(has(r.upstream.received, "BDAT "));
        CHECK_FALSE(has(r.upstream.received, "DATA"));
        CHECK(r.upstream.commands.back() == "RSET\r\n");
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::from_domain_unauthorized);
    }
}

TEST_CASE("deferred MAIL: answered at once, sent with the first RCPT") {
    const std::string mail = "MAIL FROM:<alice@acme.example>\r\n";
    const std::string rcpt = "RCPT TO:<bob@example.org>\r\n";
    using Strings = std::vector<std::string>;
    const std::string head = "EHLO client.example\r\n" + mail;
    SUBCASE("the RCPT in a later read still joins the MAIL") {
        Run r;
        r.upstream.pipelining = true;
        drive(r, {head, rcpt + "DATA\r\n", stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
        CHECK(r.upstream.commands == Strings{mail + rcpt, "DATA\r\n"});
        CHECK(has(r.client_out, "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 "));
        CHECK(r.hooks.records.at(0).reason == Reason::accepted);
    }
    SUBCASE("lines the session answers itself wait for nothing, in order") {
        Run r;
        r.upstream.pipelining = true;
        drive(r, {head, "NOOP\r\n", "RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n", rcpt + "DATA\r\n",
                  stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
        CHECK(r.upstream.commands == Strings{mail + rcpt, "DATA\r\n"});
        CHECK(has(r.client_out, "\r\n250 2.1.0 Ok\r\n250 2.0.0 OK\r\n504 5.5.4 "));
        CHECK(has(r.client_out, "\r\n250 2.1.5 Ok\r\n354 "));
    }
    SUBCASE("RSET, EHLO or QUIT before a RCPT: the relay never sees the MAIL") {
        for (const std::string end : {"RSET\r\n", "EHLO client.example\r\n", "QUIT\r\n"}) {
            CAPTURE(end);
            Run r;
            r.upstream.pipelining = true;
            drive(r, {head, end, "QUIT\r\n"});
            CHECK(r.upstream.commands.empty());
            REQUIRE(r.hooks.records.size() == 1);
            CHECK(r.hooks.records[0].reason ==
                  (end == "QUIT\r\n" ? Reason::client_disconnected : Reason::transaction_reset));
        }
    }
    SUBCASE("DATA before any RCPT: refused by the session, nothing sent") {
        Run r;
        r.upstream.pipelining = true;
        drive(r, {head, "DATA\r\n", "QUIT\r\n"});
        CHECK(r.upstream.commands.empty());
        CHECK(has(r.client_out, "\r\n250 2.1.0 Ok\r\n554 5.5.1 "));
    }
    SUBCASE("the relay refuses the MAIL: its reply answers the RCPT, and nothing more") {
        Run r;
        r.upstream.pipelining = true;
        r.upstream.faults["mail"] = answers(550, "5.7.1", "sender refused");
        drive(r, {head, rcpt, "DATA\r\n", "QUIT\r\n"});
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::upstream_rejected);
        CHECK(has(r.client_out, "\r\n250 2.1.0 Ok\r\n550 5.7.1 sender refused\r\n503 5.5.1 "));
        CHECK(count(r.client_out, "\r\n503 ") == 1);  // for the DATA, not the RCPT
        CHECK_FALSE(has(r.upstream.received, "DATA"));
    }
    SUBCASE("lost twice: the 4xx answers the RCPT, nothing relayed") {
        Run r;
        r.upstream.pipelining = true;
        r.upstream.faults["mail"] = lost(Reason::upstream_failed);
        drive(r, {head, rcpt, "QUIT\r\n"});
        REQUIRE(r.hooks.records.size() == 1);
        CHECK(r.hooks.records[0].reason == Reason::upstream_failed);
        CHECK(has(r.client_out, "\r\n250 2.1.0 Ok\r\n451 4.4.2 "));
        CHECK_FALSE(has(r.client_out, "\r\n503 "));
    }
    SUBCASE("lost once, then a relay without PIPELINING: MAIL alone, its 250 not passed on") {
        Run r;
        r.upstream.pipelining = true;
        r.upstream.lose_at = 1;  // 0: connect, 1: the group
        int connects = 0;
        r.upstream.faults["connect"] = [&connects] {  // PIPELINING only the first time
            UpstreamResult u;
            u.ok = true;
            u.reply = smtp::Reply{250, "", {"relay.test", "8BITMIME"}};
            if (connects++ == 0) u.reply.lines.push_back("PIPELINING");
            u.capabilities = std::make_shared<const smtp::EhloCapabilities>(
                smtp::parse_ehlo_capabilities(u.reply));
            return u;
        };
        drive(r, {head, rcpt + "DATA\r\n", stuffed(kMessage) + ".\r\n", "QUIT\r\n"});
        CHECK(connects == 2);
        CHECK(r.upstream.commands == Strings{mail, rcpt, "DATA\r\n"});  // the lost group unanswered
        // The session's own 250 for the MAIL and the relay's (the fake's)
        // for the RCPT; a third would be the relay's reply to the MAIL.
        CHECK(count(r.client_out, "250 2.1.0 Ok\r\n") == 2);
        CHECK(r.hooks.records.at(0).reason == Reason::accepted);
    }
    SUBCASE("a relay without PIPELINING: the MAIL goes at once, with its own reply") {
        Run r;
        r.upstream.faults["mail"] = answers(550, "5.7.1", "sender refused");
        drive(r, {head, "QUIT\r\n"});
        CHECK(has(r.client_out, "ENHANCEDSTATUSCODES\r\n550 5.7.1 sender refused\r\n221 "));
        CHECK(r.hooks.records.at(0).reason == Reason::upstream_rejected);
    }
}
