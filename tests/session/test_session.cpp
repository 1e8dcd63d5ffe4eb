// Tests for the session state machine: scripted transcripts with a scripted
// upstream, no sockets. Client input is fed split at every byte position
// where the transcript is short enough, and the upstream sees exactly the
// bytes the machine chose to send.
#include "gateway/session/session.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/session/session_driver.hpp"

TEST_CASE("an authorized message reaches the relay unchanged but for the verdict header") {
    const std::string input =
        "EHLO client.example\r\n"
        "MAIL FROM:<alice@acme.example>\r\n"
        "RCPT TO:<bob@example.org>\r\n"
        "DATA\r\n";
    const std::string data = stuffed(kMessage) + ".\r\n";
    auto whole = [&] {
        Run r;
        drive(r, {input, data, "QUIT\r\n"});
        return r;
    }();
    CHECK(has(whole.client_out, "220 relaygate.local"));
    CHECK(has(whole.client_out, "354 "));
    CHECK(has(whole.client_out, "250 2.0.0 Ok: queued as ABC123\r\n"));
    CHECK(has(whole.client_out, "221 2.0.0"));
    const std::string expected_upstream =
        "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
        "X-Relaygate-Verdict: tenant=acme; identity=network; domain=acme.example; policy=" +
        test_policy()->hash() + "\r\n" + stuffed(kMessage) + ".\r\n";
    CHECK(whole.upstream.received == expected_upstream);
    REQUIRE(whole.hooks.records.size() == 1);
    CHECK(whole.hooks.records[0].reason == Reason::accepted);
    CHECK(whole.hooks.records[0].queue_id == "ABC123");
    CHECK(whole.hooks.records[0].tenant == "acme");

    // The same session split at every byte of the data gives the same result.
    for (std::size_t cut = 1; cut < data.size(); ++cut) {
        Run r;
        drive(r, {input, data.substr(0, cut), data.substr(cut), "QUIT\r\n"});
        CAPTURE(cut);
        REQUIRE(r.upstream.received == expected_upstream);
        REQUIRE(r.client_out == whole.client_out);
    }
    // And every command byte by byte.
    std::vector<std::string> bytes;
    for (char c : input)
        bytes.emplace_back(1, c);
    bytes.push_back(data);
    bytes.push_back("QUIT\r\n");
    Run r;
    drive(r, bytes);
    CHECK(r.upstream.received == expected_upstream);
    CHECK(r.client_out == whole.client_out);
}

TEST_CASE("a client's own verdict header is removed") {
    const std::string msg = "X-Relaygate-Verdict: tenant=acme; forged\r\n" + kMessage;
    Run run;
    drive(run, {transaction("alice@acme.example"), stuffed(msg) + ".\r\n"});
    CHECK_FALSE(has(run.upstream.received, "forged"));
    CHECK(has(run.upstream.received, "X-Relaygate-Verdict: tenant=acme; identity=network"));
    CHECK(has(run.client_out, "250 2.0.0 Ok: queued"));
}

TEST_CASE("an unauthorized envelope is refused at MAIL and the relay is never contacted") {
    Run r;
    drive(r, {"EHLO c\r\nMAIL FROM:<ceo@rival.example>\r\nRCPT TO:<x@example.org>\r\nQUIT\r\n"});
    CHECK(has(r.client_out, "550 5.7.1 Sender domain is not authorized"));
    CHECK(has(r.client_out, "503 5.5.1"));  // RCPT without an accepted MAIL
    CHECK(r.upstream.log.empty());
    CHECK(r.upstream.received.empty());
    REQUIRE(r.hooks.records.size() == 1);
    CHECK(r.hooks.records[0].reason == Reason::envelope_domain_unauthorized);
}

TEST_CASE("an unknown client is refused") {
    Run r;
    drive(r, {"EHLO c\r\nMAIL FROM:<a@acme.example>\r\nQUIT\r\n"}, "203.0.113.5");
    CHECK(has(r.client_out, "550 5.7.1 Relay access denied"));
    CHECK(r.upstream.log.empty());
}

TEST_CASE("a spoofed header From is refused after the data and nothing is queued upstream") {
    const std::string msg = "From: ceo@rival.example\r\nTo: x@example.org\r\n\r\nPay me.\r\n";
    Run r;
    drive(r, {transaction("alice@acme.example"), stuffed(msg) + ".\r\nQUIT\r\n"});
    CHECK(has(r.client_out, "550 5.7.1 From header domain is not authorized"));
    CHECK_FALSE(has(r.upstream.received, "DATA"));
    CHECK(has(r.upstream.received, "RSET\r\n"));
    CHECK(count(r.upstream.log, "commit") == 0);
    CHECK(r.hooks.records.back().reason == Reason::from_domain_unauthorized);
}

TEST_CASE("header ambiguity is refused before DATA goes upstream") {
    for (const std::string msg : {"From: a@acme.example\r\nFrom: b@acme.example\r\n\r\nx\r\n",
                                  "From: a@acme.example, ceo@rival.example\r\n\r\nx\r\n",
                                  "From: \"ceo@rival.example\" <a@acme.example>\r\n\r\nx\r\n",
                                  "To: x@example.org\r\n\r\nx\r\n"}) {
        CAPTURE(msg);
        Run r;
        drive(r, {transaction("alice@acme.example"), stuffed(msg) + ".\r\n"});
        CHECK(has(r.client_out, "\r\n550 5."));
        CHECK_FALSE(has(r.upstream.received, "DATA"));
        CHECK(count(r.upstream.log, "commit") == 0);
    }
}

TEST_CASE(
    "Authentication-Results claiming this gateway or the signer: 550 5.7.1, nothing committed") {
    session::Settings settings;
    settings.authserv_ids = {"signer.example"};
    // The hostname (relaygate.local) is always an authserv-id of ours.
    for (const std::string field :
         {"Authentication-Results: relaygate.local; dkim=pass header.d=acme.example\r\n",
          "authentication-results : (ok) \"Signer.Example\" 1; spf=pass\r\n",
          "ARC-Authentication-Results: i=1; signer.example; dkim=pass\r\n"}) {
        CAPTURE(field);
        Run r;
        drive(r, {transaction("alice@acme.example"), stuffed(field + kMessage) + ".\r\nQUIT\r\n"},
              "192.0.2.10", settings);
        CHECK(has(r.client_out,
                  "\r\n550 5.7.1 Authentication-Results or ARC fields claim this relay's "
                  "authentication service; remove them before sending\r\n"));
        CHECK_FALSE(has(r.upstream.received, "DATA"));
        CHECK_FALSE(has(r.upstream.received, "dkim=pass"));
        CHECK(count(r.upstream.log, "commit") == 0);
        REQUIRE_FALSE(r.hooks.records.empty());
        CHECK(r.hooks.records.back().reason == Reason::authentication_results_forged);
    }
    // Another verifier's results are relayed unchanged.
    const std::string other = "Authentication-Results: mx.other.example; dkim=pass\r\n";
    Run r;
    drive(r, {transaction("alice@acme.example"), stuffed(other + kMessage) + ".\r\nQUIT\r\n"},
          "192.0.2.10", settings);
    CHECK(has(r.client_out, "250 2.0.0 Ok: queued"));
    CHECK(has(r.upstream.received, other));
}

TEST_CASE(
    "a malformed DKIM-Signature or a duplicated MIME field is refused before DATA goes upstream") {
    const std::string sig =
        "DKIM-Signature: v=1; a=rsa-sha256; d=acme.example; s=sel; h=from;\r\n"
        " bh=AAAA; b=AAAA";
    struct Case {
        std::string field;
        std::string reply;  // empty: relayed
        Reason reason;
    };
    for (const auto& c : std::vector<Case>{
             {sig + "; d=rival.example\r\n", "550 5.7.7 ", Reason::dkim_signature_malformed},
             {sig + "; D=rival.example\r\n", "550 5.7.7 ", Reason::dkim_signature_malformed},
             {"dkim-signature : v=1; a=rsa-sha256; d=acme_x.example; s=sel; h=from; bh=AAAA; "
              "b=AAAA\r\n",
              "550 5.7.7 ", Reason::dkim_signature_malformed},
             {"Content-Type: text/plain\r\ncontent-type : text/html\r\n", "550 5.6.0 ",
              Reason::duplicate_mime_field},
             {sig + "\r\n", "", Reason::accepted},
             // Not ambiguous, only unsupported: every verifier fails it alike.
             {"DKIM-Signature: v=1; a=rsa-sha1; d=acme.example; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
              "", Reason::accepted},
         }) {
        CAPTURE(c.field);
        Run r;
        drive(r,
              {transaction("alice@acme.example"), stuffed(c.field + kMessage) + ".\r\nQUIT\r\n"});
        REQUIRE_FALSE(r.hooks.records.empty());
        CHECK(r.hooks.records.back().reason == c.reason);
        if (c.reply.empty()) {
            CHECK(has(r.client_out, "250 2.0.0 Ok: queued"));
            CHECK(count(r.upstream.log, "commit") == 1);
        } else {
            CHECK(has(r.client_out, "\r\n" + c.reply));
            CHECK_FALSE(has(r.upstream.received, "DATA"));
            CHECK(count(r.upstream.log, "commit") == 0);
        }
    }
}

TEST_CASE("bare-LF smuggling never ends the data and the partial message is discarded") {
    const std::string smuggled = "\n.\nMAIL FROM:<ceo@rival.example>\r\n";
    SUBCASE("in one packet: nothing reaches the relay after RCPT") {
        Run r;
        drive(r, {transaction("alice@acme.example"), kMessage + smuggled + "\r\n.\r\n"});
        CHECK_FALSE(has(r.upstream.received, "DATA"));
        CHECK(count(r.upstream.log, "commit") == 0);
        CHECK(has(r.client_out, "554 5.6.0"));
    }
    // The header and the start of the body were fine, so DATA went upstream;
    // the smuggling attempt arrives later and the commit never happens.
    Run r;
    drive(r, {transaction("alice@acme.example"), kMessage, smuggled + "\r\n.\r\n"});
    CHECK(has(r.upstream.received, "DATA\r\n"));
    CHECK(count(r.upstream.log, "commit") == 0);
    CHECK(count(r.upstream.log, "abort") == 1);
    CHECK(has(r.client_out, "554 5.6.0"));
    CHECK_FALSE(has(r.client_out, "250 2.0.0 Ok: queued"));
    // The smuggled command was data: it never reached the relay as a command.
    CHECK_FALSE(has(r.upstream.received, "MAIL FROM:<ceo@rival.example>\r\n"));
}

TEST_CASE("data pipelined before the 354 is a synchronization error") {
    Run r;
    drive(r, {transaction("alice@acme.example") + stuffed(kMessage) + ".\r\n"});
    CHECK(has(r.client_out, "554 5.5.0"));
    CHECK_FALSE(has(r.client_out, "\r\n354 "));
    CHECK(r.closed);
    CHECK(count(r.upstream.log, "commit") == 0);
    CHECK_FALSE(has(r.upstream.received, "DATA"));
}

TEST_CASE("relay faults become 4xx and never 2xx") {
    SUBCASE("relay down at connect") {
        Run r;
        r.upstream.faults["connect"] = lost(Reason::upstream_unavailable);
        drive(r, {transaction("alice@acme.example")});
        CHECK(has(r.client_out, "451 4.4.1"));
        CHECK(has(r.client_out, "503 5.5.1"));  // DATA without a transaction
    }
    SUBCASE("relay lost at the final dot: 451, never a 250") {
        Run r;
        r.upstream.faults["dot"] = lost(Reason::upstream_failed);
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n"});
        CHECK(has(r.client_out, "451 4.4.2"));
        CHECK_FALSE(has(r.client_out, "queued"));
    }
    SUBCASE("relay timeout while writing the body") {
        Run r;
        r.upstream.faults["write"] = lost(Reason::upstream_timeout);
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n"});
        CHECK(has(r.client_out, "451 4.4.2"));
        CHECK(count(r.upstream.log, "commit") == 0);
    }
    SUBCASE("relay refuses the message at the dot: its reply is relayed") {
        Run r;
        r.upstream.faults["dot"] = answers(554, "5.7.1", "signer says no");
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\n"});
        CHECK(has(r.client_out, "554 5.7.1 signer says no"));
        CHECK(r.hooks.records.back().reason == Reason::upstream_rejected);
    }
}

TEST_CASE("an idle relay connection that died is replaced once") {
    Run r;
    int mails = 0;
    r.upstream.faults["mail"] = [&] {
        UpstreamResult u;
        if (++mails == 2) {  // the second transaction's MAIL finds the connection dead
            u.ok = false;
            u.failure = Reason::upstream_failed;
            return u;
        }
        u.ok = true;
        u.reply = smtp::Reply{250, "2.1.0", {"Ok"}};
        return u;
    };
    const std::string t = "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n";
    drive(r, {"EHLO c\r\n" + t, stuffed(kMessage) + ".\r\n", t, stuffed(kMessage) + ".\r\n"});
    CHECK(count(r.upstream.log, "connect") == 2);
    CHECK(count(r.upstream.log, "commit") == 2);
    REQUIRE(r.hooks.records.size() == 2);
    CHECK(r.hooks.records[1].reason == Reason::accepted);
}

TEST_CASE("recipients refused by the relay are relayed; no valid recipient means no DATA") {
    Run r;
    drive(r, {"EHLO c\r\nMAIL FROM:<alice@acme.example>\r\nRCPT TO:<bad@example.org>\r\nDATA\r\n"});
    CHECK(has(r.client_out, "550 5.1.1 no such user"));
    CHECK(has(r.client_out, "554 5.5.1 No valid recipients"));
    CHECK_FALSE(has(r.upstream.received, "DATA"));
}

TEST_CASE("command sequencing, limits and error counting") {
    session::Settings s;
    s.limits.max_recipients = 2;
    s.limits.max_errors = 3;
    Run r;
    drive(r,
          {"MAIL FROM:<alice@acme.example>\r\n"  // before EHLO: 503
           "EHLO c\r\n"
           "MAIL FROM:<alice@acme.example> SIZE=999999999999\r\n"  // 552
           "MAIL FROM:<alice@acme.example>\r\n"
           "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"
           "VRFY bob\r\nNOOP\r\nRSET\r\nBOGUS\r\nDATA\r\n"},
          "192.0.2.10", s);
    CHECK(has(r.client_out, "503 5.5.1"));
    CHECK(has(r.client_out, "552 5.3.4"));
    CHECK(has(r.client_out, "452 4.5.3"));
    CHECK(has(r.client_out, "252 2.5.0"));
    CHECK(has(r.client_out, "500 5.5.2"));
    // Three errors: 421 and close.
    CHECK(has(r.client_out, "421 4.7.0"));
    CHECK(r.closed);
    CHECK(has(r.upstream.received, "RSET\r\n"));  // the client's RSET ended the relay transaction
}

TEST_CASE("a too-long command line and a bare LF in a command are refused once each") {
    Run r;
    // "NOOP\nNOOP\r\n" is one line with a bare LF in it, not two commands.
    drive(r, {"EHLO c\r\nNOOP " + std::string(600, 'x') + "\r\nNOOP\nNOOP\r\nNOOP\r\nQUIT\r\n"});
    CHECK(has(r.client_out, "500 5.5.2 Line too long"));
    CHECK(has(r.client_out, "500 5.5.2 Commands must end with CRLF"));
    CHECK(has(r.client_out, "250 2.0.0 OK"));
    CHECK(has(r.client_out, "221 2.0.0"));
}

TEST_CASE("draining answers 421 4.3.2 at the next command") {
    session::ClientInfo info{"t", "192.0.2.10", 1};
    FakeHooks hooks;
    session::Settings settings;
    SessionMachine m(settings, test_policy(), info, hooks);
    std::string out;
    CHECK(flatten(m.next()).kind == TK::send_client);  // greeting
    CHECK(flatten(m.next()).kind == TK::read_client);
    m.on_drain();
    m.on_client_data("NOOP\r\n");
    Flat a = flatten(m.next());
    REQUIRE(a.kind == TK::send_client);
    CHECK(a.bytes.starts_with("421 4.3.2"));
    CHECK(flatten(m.next()).kind == TK::close);
}

TEST_CASE("a timeout mid-DATA discards the relay's partial message") {
    session::ClientInfo info{"t", "192.0.2.10", 1};
    FakeHooks hooks;
    session::Settings settings;
    SessionMachine m(settings, test_policy(), info, hooks);
    FakeUpstream up;
    m.on_client_data(transaction("alice@acme.example"));
    const std::string partial = stuffed(kMessage);  // no terminator
    bool fed = false;
    std::vector<std::string> upstream_log;
    for (int i = 0; i < 1000; ++i) {
        Flat a = flatten(m.next());
        if (a.kind == TK::read_client) {
            if (fed) break;
            m.on_client_data(partial);
            fed = true;
        } else if (a.kind == TK::send_client || a.kind == TK::upstream_abort) {
            if (a.kind == TK::upstream_abort) upstream_log.push_back("abort");
        } else {
            m.on_upstream_result(up.handle(a));
        }
    }
    m.on_timeout(Reason::data_too_slow);
    std::string out;
    for (Flat a = flatten(m.next()); a.kind != TK::close; a = flatten(m.next())) {
        if (a.kind == TK::send_client) out += a.bytes;
        if (a.kind == TK::upstream_abort) upstream_log.push_back("abort");
    }
    CHECK(out.starts_with("421 4.4.2"));
    CHECK(count(upstream_log, "abort") == 1);
    CHECK(count(up.log, "commit") == 0);
}

TEST_CASE("a relay's own 421 (idle timeout) is a lost connection, not the client's 421") {
    Run r;
    int mails = 0;
    r.upstream.faults["mail"] = [&] {
        UpstreamResult u;
        u.ok = true;
        u.reply = ++mails == 2 ? smtp::Reply{421, "4.4.2", {"relay Error: timeout exceeded"}}
                               : smtp::Reply{250, "2.1.0", {"Ok"}};
        return u;
    };
    const std::string t = "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n";
    drive(r, {"EHLO c\r\n" + t, stuffed(kMessage) + ".\r\n", t, stuffed(kMessage) + ".\r\n"});
    CHECK_FALSE(has(r.client_out, "421"));
    CHECK(count(r.upstream.log, "abort") == 1);
    CHECK(count(r.upstream.log, "connect") == 2);
    CHECK(count(r.upstream.log, "commit") == 2);
}

// --- DNS-verified domains and DKIM corroboration --------------------------

namespace {

const char* kDnsPolicy = R"({
  "version": 1,
  "providers": {
    "m365": { "networks": ["40.92.0.0/15"], "tenant_header": "X-Tenant" }
  },
  "tenants": {
    "verified": { "domains": [{"domain": "verified.example", "verify": "dns"}],
                  "identities": [ { "networks": ["192.0.2.0/24"] } ] },
    "brand": { "domains": ["vectors.example"],
               "identities": [ { "provider": "m365", "tenant_id": "brand-id",
                                 "require": ["header", "dkim"],
                                 "dkim_domains": ["vectors.example"] } ] }
  }
})";

std::shared_ptr<const policy::Policy> dns_policy() {
    static auto p = [] {
        auto r = policy::Policy::load_text(kDnsPolicy);
        REQUIRE(r.ok());
        return std::move(r).value();
    }();
    return p;
}

std::string read_vector(const std::string& name) {
    std::ifstream in(std::string(RELAYGATE_SOURCE_DIR) + "/tests/dkim/vectors/" + name,
                     std::ios::binary);
    REQUIRE(in);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The key record of a vector, as the DNS answer for its key name.
dns::Answer key_answer(const std::string& key_name) {
    std::string record = read_vector("dns/" + key_name + ".txt");
    while (!record.empty() && (record.back() == '\n' || record.back() == '\r'))
        record.pop_back();
    return txt({record});
}

}  // namespace

TEST_CASE("a DNS-verified domain is sent on only while its TXT record names the tenant") {
    const std::string mail = transaction("a@verified.example");
    const std::string data =
        stuffed("From: a@verified.example\r\nSubject: s\r\n\r\nhi\r\n") + ".\r\n";
    auto run = [&](std::optional<dns::Answer> answer) {
        Run r;
        r.policy = dns_policy();
        if (answer) r.dns["_relaygate.verified.example"] = *answer;
        drive(r, {mail, data, "QUIT\r\n"});
        return r;
    };
    auto ok = run(txt({"v=spf1 -all", "v=relaygate1; tenant=verified"}));
    CHECK(has(ok.client_out, "250 2.0.0 Ok: queued as ABC123"));
    // Asked once at MAIL FROM; the header's From reuses the answer.
    CHECK(ok.dns_asked == std::vector<std::string>{"_relaygate.verified.example"});
    CHECK(count(ok.upstream.log, "commit") == 1);

    auto other = run(txt({"v=relaygate1; tenant=someone-else"}));
    CHECK(has(other.client_out,
              "550 5.7.1 Domain is not verified in DNS for your account: publish TXT "
              "_relaygate.verified.example \"v=relaygate1; tenant=verified\"\r\n"));
    CHECK(other.upstream.log.empty());  // the relay never heard of it

    auto missing = run(std::nullopt);  // NXDOMAIN
    CHECK(has(missing.client_out, "550 5.7.1 Domain is not verified"));
    CHECK(missing.hooks.records.at(0).reason == Reason::domain_not_verified);

    auto broken = run(txt({}, dns::Status::servfail));
    CHECK(has(broken.client_out, "451 4.4.3 "));
    CHECK(broken.hooks.records.at(0).reason == Reason::dns_tempfail);
    CHECK(broken.upstream.log.empty());
}

TEST_CASE("a provider identity that requires DKIM is committed only with a passing signature") {
    // A real signature (tests/dkim/vectors, made by python3-dkim), with the
    // provider's tenant header added on top (not covered by h=).
    const std::string signed_message =
        "X-Tenant: brand-id\r\n" + read_vector("dkimpy_ed25519_relaxed_relaxed.eml");
    auto run = [&](const std::string& message, bool key_available) {
        Run r;
        r.policy = dns_policy();
        if (key_available)
            r.dns["ed25519._domainkey.vectors.example"] =
                key_answer("ed25519._domainkey.vectors.example");
        else
            r.dns["ed25519._domainkey.vectors.example"] = txt({}, dns::Status::timeout);
        drive(r, {transaction("joe@vectors.example"), stuffed(message) + ".\r\n", "QUIT\r\n"},
              "40.92.1.1");
        return r;
    };
    auto ok = run(signed_message, true);
    CHECK(has(ok.client_out, "250 2.0.0 Ok: queued as ABC123"));
    CHECK(ok.dns_asked == std::vector<std::string>{"ed25519._domainkey.vectors.example"});
    REQUIRE(ok.hooks.records.size() == 1);
    CHECK(ok.hooks.records[0].dkim == "pass d=vectors.example s=ed25519");
    CHECK(count(ok.upstream.log, "commit") == 1);

    // Split at many points: the body hash is the same however it streams.
    for (std::size_t split : {1u, 100u, 777u, 1500u}) {
        Run r;
        r.policy = dns_policy();
        r.dns["ed25519._domainkey.vectors.example"] =
            key_answer("ed25519._domainkey.vectors.example");
        std::string data = stuffed(signed_message) + ".\r\n";
        split = std::min(split, data.size() - 1);
        drive(r,
              {transaction("joe@vectors.example"), data.substr(0, split), data.substr(split),
               "QUIT\r\n"},
              "40.92.1.1");
        CAPTURE(split);
        CHECK(has(r.client_out, "250 2.0.0 Ok: queued as ABC123"));
    }

    // Tampered body: the relay had the data but never gets the final dot.
    std::string tampered = signed_message;
    tampered.replace(tampered.find("\r\n\r\n") + 4, 1, "X");  // the body's first byte
    auto bad = run(tampered, true);
    CHECK(has(bad.client_out, "550 5.7.20 "));
    CHECK(bad.hooks.records.at(0).reason == Reason::provider_dkim_unverified);
    CHECK(count(bad.upstream.log, "commit") == 0);
    CHECK(count(bad.upstream.log, "abort") == 1);

    // No signature at all.
    auto unsigned_run =
        run("X-Tenant: brand-id\r\nFrom: joe@vectors.example\r\nSubject: s\r\n\r\nhi\r\n", true);
    CHECK(has(unsigned_run.client_out, "550 5.7.20 "));
    CHECK(unsigned_run.dns_asked.empty());

    // The key cannot be fetched: try again later, never accept.
    auto timeout = run(signed_message, false);
    CHECK(has(timeout.client_out, "451 4.4.3 "));
    CHECK(count(timeout.upstream.log, "commit") == 0);
}

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
