// libFuzzer target for the session state machine (gateway/session): the
// input is a little program that plays the runner, answering exactly what
// the machine asked for with fuzzer-chosen client bytes and upstream, AUTH,
// DNS and TLS results. It traps when an invariant of the gateway breaks;
// it must never touch a socket or a real clock.
//
// Input: byte 0 picks the listener settings, the client address, the
// recipient lease (1 or 2) and upstream.defer_mail; then, each time the machine waits for
// something, one byte (plus operands) says what happens:
//   read_client       op%16: 0-5 raw chunk (next byte = length, then bytes),
//                     6-10 a canned token (next byte = index), 11 command
//                     timeout, 12 data too slow, 13 client closes, 14 the
//                     clock moves (next byte = seconds), 15 next byte:
//                     0 drain, 1 upstream idle timer, else clock
//   upstream_*        op%8: 0-3 the natural reply (250, 354 to DATA, 250
//                     queued to ".", 250 EHLO with capabilities op>>3:
//                     SIZE, 8BITMIME, SMTPUTF8, PIPELINING, CHUNKING),
//                     4 a 4xx, 5 a 5xx, 6 a failure (reset, timeout,
//                     refused), 7 an odd code (2xx-5xx, op>>3 picks) with
//                     fuzzer text (next byte % 64 = length, then bytes)
//   verify_auth       op%3: success, failure, throttled
//   dns_lookup        op%8: tenant proof, other tenant, NXDOMAIN, SERVFAIL,
//                     timeout, the ed25519 DKIM key, NODATA, junk
//   start_tls         op%4: 0 handshake fails, 2 with the pinned client
//                     certificate, else without one
//   check_limits      op%5: allowed (its lease granted), the last limit
//                     denied, store error (fail_closed), a volume spike
//                     (held; lease granted), first seen (lease not granted)
// When the input runs out the client closes and every result is natural.
//
// Invariants (each trap prints which one first):
//   owed      a result-expecting action comes only while the machine waits
//             for it, and the machine never stalls waiting for a result it
//             did not ask for (step()'s "local_error" fail-closed branch)
//   commit    a 2xx reply to the final "." only after an upstream_commit
//             answered 2xx in that DATA; a record says "relayed" only then
//   upstream  upstream_write/upstream_commit only after DATA got 354, or a
//             commit as one exact "BDAT <n> LAST" with the whole message to
//             a relay that offers CHUNKING, with no DATA before it; no
//             command while the relay is reading message data; the data
//             starts with our verdict header and never contains a
//             "\r\n.\r\n" of its own
//   reply     every reply to the client is well-formed (RFC 5321 4.2), also
//             when it relays the relay's text
//   records   a transaction the client was told started (MAIL 2xx) ends with
//             exactly one on_transaction, also when ended by timeout, close or
//             drain (FUZZ_SESSION_CHECK_RECORDS; FUZZ_SESSION_STRICT_RECORDS
//             also asks it of transactions ended by RSET or EHLO)
//   bounded   at most kActionsPerByte actions per input byte, and no reads
//             after the client closed
//   lease     recipient-lease units granted are used or given back (refunded,
//             lost, or a refund_limits action) exactly once: never more
//             than granted, and none left at the next MAIL FROM or the end
// FUZZ_SESSION_TRACE=1 in the environment prints the transcript of an input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/session/session.hpp"
#include "tests/session/action_view.hpp"

#ifndef FUZZ_SESSION_CHECK_RECORDS
#define FUZZ_SESSION_CHECK_RECORDS 1
#endif
#ifndef FUZZ_SESSION_STRICT_RECORDS
#define FUZZ_SESSION_STRICT_RECORDS 1
#endif

using namespace relaygate;
using session::Action;
using session::SessionMachine;
using session::UpstreamResult;
using session::testing::Flat;
using session::testing::flatten;
using Kind = session::testing::Kind;

namespace {

[[noreturn]] void fail(const char* invariant, const std::string& detail = {}) {
    std::fprintf(stderr, "\nfuzz_session: invariant '%s' broken%s%s\n", invariant,
                 detail.empty() ? "" : ": ", detail.c_str());
    std::fflush(stderr);
    __builtin_trap();
}

constexpr std::size_t kActionsPerByte = 64;

// FUZZ_SESSION_TRACE=1 prints the transcript (for reading a reproducer).
const bool kTrace = std::getenv("FUZZ_SESSION_TRACE") != nullptr;

std::string printable(std::string_view s, std::size_t max = 160) {
    std::string out;
    for (char c : s.substr(0, max)) {
        if (c == '\r')
            out += "\\r";
        else if (c == '\n')
            out += "\\n";
        else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
            out += '?';
        else
            out += c;
    }
    if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

void trace(const char* who, std::string_view what) {
    std::fprintf(stderr, "%-16s %s\n", who, printable(what).c_str());
}
// Builds the text only when tracing: the fuzzer's speed is its coverage.
#define TRACE(who, what)                  \
    do {                                  \
        if (kTrace) trace((who), (what)); \
    } while (0)

const char* kind_name(Kind k) {
    static const char* const names[] = {"read_client",      "send_client",    "upstream_connect",
                                        "upstream_command", "upstream_write", "upstream_commit",
                                        "upstream_abort",   "upstream_quit",  "start_tls",
                                        "verify_auth",      "dns_lookup",     "check_limits",
                                        "refund_limits",    "close"};
    return names[static_cast<int>(k)];
}

const char* kPolicy = R"({
  "version": 1,
  "limits": { "messages": [ { "count": 5, "per": "1h" } ],
              "recipients": [ { "count": 20, "per": "1h" } ],
              "bytes": [ { "count": "1MiB", "per": "1d" } ] },
  "providers": {
    "m365": { "networks": ["40.92.0.0/15"], "tenant_header": "X-Tenant" }
  },
  "tenants": {
    "acme": { "domains": ["acme.example"], "allow_null_sender": true,
              "identities": [ { "networks": ["192.0.2.0/24", "2001:db8::/32"] } ],
              "limits": { "on_spike": "hold" } },
    "rival": { "domains": ["rival.example"], "mode": "report",
               "limits": { "mode": "report" },
               "identities": [ { "networks": ["198.51.100.0/24"] } ] },
    "verified": { "domains": [{"domain": "verified.example", "verify": "dns"}],
                  "identities": [ { "networks": ["192.0.2.0/24"] } ] },
    "brand": { "domains": ["vectors.example"],
               "identities": [ { "provider": "m365", "tenant_id": "brand-id",
                                 "require": ["header", "dkim"],
                                 "dkim_domains": ["vectors.example"] } ] },
    "saslco": { "domains": ["saslco.example"],
                "identities": [ { "sasl_user": "app", "password_hash":
                  "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU" } ] },
    "certco": { "domains": ["certco.example"],
                "identities": [ { "client_cert_sha256":
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" } ] }
  }
})";

const std::shared_ptr<const policy::Policy>& fuzz_policy() {
    static const std::shared_ptr<const policy::Policy> p = [] {
        auto r = policy::Policy::load_text(kPolicy);
        if (!r) {
            for (const auto& e : r.error())
                std::fprintf(stderr, "%s\n", policy::format_diagnostic(e).c_str());
            std::abort();
        }
        return std::move(r).value();
    }();
    return p;
}

// The DKIM vector tests/dkim/vectors/dkimpy_ed25519_relaxed_relaxed.eml with
// the provider's tenant header on top: the one message that passes "brand".
const char* kSignedMessage =
    "X-Tenant: brand-id\r\n"
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=vectors.example; i=@vectors.example; q=dns/txt; s=ed25519;\r\n"
    " t=1795884546; h=from : to : subject : date : message-id : mime-version\r\n"
    " : content-type : from : reply-to;\r\n"
    " bh=Conrdf4c/wh+kWGfB5sqAWlKVXNTG2XCNp+J3egFIOM=;\r\n"
    " b=Y0AdTIyqpbnWhDdwDPu3h+ffXCQgUDmOPzH6TQHt0El98ZFFWkFpTRQ2QEl0MgTH/0eKH\r\n"
    " ivL+o0zykCrI3p7Cw==\r\n"
    "Received: from client.vectors.example (client [192.0.2.10])\r\n"
    "\tby mx.vectors.example; Fri, 11 Jul 2003 21:01:00 -0700\r\n"
    "From: Joe SixPack <joe@vectors.example>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner   ready?\r\n"
    "  (folded\tsubject)\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@vectors.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?   \r\n"
    "\t tabs and  spaces\t\r\n"
    " \r\n"
    "Joe.\r\n"
    "\r\n"
    "\r\n"
    ".\r\n";

// Client input the fuzzer can pick whole: the commands and message pieces
// that lead deep into the machine faster than random bytes would.
const std::string_view kTokens[] = {
    "EHLO c.example\r\n",
    "HELO c.example\r\n",
    "MAIL FROM:<alice@acme.example>\r\n",
    "MAIL FROM:<a@verified.example>\r\n",
    "MAIL FROM:<joe@vectors.example>\r\n",
    "MAIL FROM:<app@saslco.example>\r\n",
    "MAIL FROM:<ceo@rival.example>\r\n",
    "MAIL FROM:<>\r\n",
    "MAIL FROM:<alice@acme.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n",
    "RCPT TO:<bob@example.org>\r\n",
    "RCPT TO:<Postmaster>\r\n",
    "DATA\r\n",
    "From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\n",
    "From: a@verified.example\r\n\r\n",
    "X-Tenant: brand-id\r\n",
    "body line\r\n",
    "..dot line\r\n",
    ".\r\n",
    "\r\n.\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "STARTTLS\r\n",
    "AUTH PLAIN AGFwcABzZWNyZXQ=\r\n",  // \0app\0secret
    "AUTH LOGIN\r\n",
    "YXBw\r\n",      // app
    "c2VjcmV0\r\n",  // secret
    "*\r\n",
    "VRFY x\r\n",
    "\n.\n",
    "MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    "From: Alice <alice@acme.example>\r\n\r\nHello.\r\n.\r\n",
    kSignedMessage,
    "From: ceo@rival.example\r\n\r\n",
    "AUTH PLAIN\r\n",
    "AGFwcABzZWNyZXQ=\r\n",
    "X-Relaygate-Verdict: forged\r\n",
    "DKIM-Signature: v=1; a=rsa-sha256; d=acme.example; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
    "MAIL FROM:<certco@certco.example>\r\n",
    "From: ceo@rival.example\r\n\r\nx\r\n.\r\n",
};
constexpr std::size_t kTokenCount = sizeof(kTokens) / sizeof(kTokens[0]);

const char* const kAddresses[] = {"192.0.2.10", "198.51.100.7", "40.92.1.1", "203.0.113.5",
                                  "2001:db8::1"};

class Input {
  public:
    Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool empty() const { return pos_ >= size_; }
    // The next byte, or `fallback` when the program has ended.
    std::uint8_t byte(std::uint8_t fallback = 0) { return empty() ? fallback : data_[pos_++]; }
    std::string_view bytes(std::size_t n) {
        n = std::min(n, size_ - pos_);
        std::string_view v(reinterpret_cast<const char*>(data_ + pos_), n);
        pos_ += n;
        return v;
    }

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

int reply_code(std::string_view formatted) {
    if (formatted.size() < 3) return 0;
    return (formatted[0] - '0') * 100 + (formatted[1] - '0') * 10 + (formatted[2] - '0');
}

smtp::Reply make(int code, std::string text) {
    std::string enhanced;
    if (code / 100 != 3) enhanced = std::to_string(code / 100) + ".0.0";
    return smtp::Reply{code, std::move(enhanced), {std::move(text)}};
}

// What the driver knows, and checks, across the session.
struct State {
    // commit
    bool client_in_data = false;   // the client got 354 for its DATA
    bool commit_2xx = false;       // an upstream_commit in it was answered 2xx
    bool commit_positive = false;  // ... or with any positive reply
    bool commit_2xx_seen = false;  // the last commit was answered 2xx (for the record)
    // upstream
    bool upstream_connected = false;
    bool upstream_in_data = false;   // DATA answered 354, no "." yet
    bool upstream_chunking = false;  // the relay's EHLO offered CHUNKING
    std::string data_tail;           // last bytes written, for "\r\n.\r\n" across writes
    // records
    bool txn_open = false;       // MAIL was answered positively upstream
    int records_since_mail = 0;  // records since the last MAIL FROM decision
    bool reset_sent = false;     // RSET went upstream while txn_open
    bool soft_reported = false;
    // lease
    std::uint64_t lease_out = 0;  // units granted, not yet used or given back
};

struct FuzzHooks final : session::Hooks {
    State& s;
    double t = 0;
    explicit FuzzHooks(State& state) : s(state) {}
    double now() override { return t += 0.001; }
    std::uint64_t unix_time() override { return 1800000000; }
    void on_transaction(const session::TransactionRecord& r) override {
        TRACE("record", std::string(label(r.reason)) + " stage=" + r.stage + " reply=" + r.reply +
                            (r.commit_unknown ? " commit_unknown" : ""));
        if (++s.records_since_mail > 1)
            fail("records", "two on_transaction records for one MAIL FROM (reason " +
                                std::string(label(r.reason)) + ", stage " + r.stage + ")");
        s.txn_open = false;
        if (r.relayed && !s.commit_positive)
            fail("commit", "record says relayed without a positive commit (stage " + r.stage + ")");
        // RFC 5321 4.1.1.4: only 250 (2xx) to the "." means the relay took it.
        if (r.relayed && !s.commit_2xx_seen)
            fail("commit", "record says relayed after a non-2xx reply to the dot: " + r.reply);
        if (!r.queue_id.empty() && !r.relayed) fail("commit", "queue id on a record not relayed");
        s.commit_positive = false;
        s.commit_2xx_seen = false;
    }
    void on_decision(std::string_view point, double) override {
        if (point == "mail_from") {
            s.records_since_mail = 0;
            if (s.lease_out != 0) fail("lease", "a recipient lease outlived its transaction");
        }
    }
    void on_lease(std::string_view event, std::uint64_t units) override {
        TRACE("lease", std::string(event) + " " + std::to_string(units));
        if (event == "granted") {
            s.lease_out += units;
        } else if (units > s.lease_out) {
            fail("lease", std::string(event) + " more units than were granted");
        } else {
            s.lease_out -= units;
        }
    }
    void on_reply(int) override {}
};

// RFC 5321 4.2: "ddd-text" lines, then "ddd text", one code, CRLF, at most
// 512 octets a line, text only HTAB and printable US-ASCII (and UTF-8).
bool well_formed_reply(std::string_view r) {
    if (r.size() < 5) return false;
    const std::string_view code = r.substr(0, 3);
    for (std::size_t pos = 0; pos < r.size();) {
        const auto end = r.find("\r\n", pos);
        if (end == std::string_view::npos || end - pos + 2 > smtp::kMaxReplyLine) return false;
        const std::string_view line = r.substr(pos, end - pos);
        if (line.size() < 3 || line.substr(0, 3) != code) return false;
        if (code[0] < '2' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' ||
            code[2] > '9')
            return false;
        const bool last = end + 2 == r.size();
        if (line.size() > 3 && line[3] != (last ? ' ' : '-')) return false;
        if (line.size() == 3 && !last) return false;
        for (char c : line.substr(3))
            if (c == '\r' || c == '\n' || c == '\0') return false;
        pos = end + 2;
    }
    return true;
}

bool expects_result(Kind k) {
    switch (k) {
        case Kind::upstream_connect:
        case Kind::upstream_command:
        case Kind::upstream_write:
        case Kind::upstream_commit:
        case Kind::verify_auth:
        case Kind::dns_lookup:
        case Kind::check_limits:
            return true;
        default:
            return false;
    }
}

UpstreamResult upstream_result(Input& in, const Flat& a, State& s) {
    const std::uint8_t op = in.byte(0);
    UpstreamResult r;
    r.ok = true;
    const std::uint8_t arg = op >> 3;
    const bool data_cmd = a.kind == Kind::upstream_command && a.bytes.starts_with("DATA");
    switch (op % 8) {
        case 4: {
            static const int codes[] = {421, 450, 451, 452};
            r.reply = make(codes[arg % 4], "try later");
            break;
        }
        case 5: {
            static const int codes[] = {500, 550, 552, 554};
            r.reply = make(codes[arg % 4], "no");
            break;
        }
        case 6: {
            static const Reason reasons[] = {Reason::upstream_failed, Reason::upstream_timeout,
                                             Reason::upstream_unavailable};
            r.ok = false;
            r.failure = reasons[arg % 3];
            break;
        }
        case 7: {
            static const int codes[] = {220, 221, 235, 250, 251, 252, 334, 354,
                                        421, 450, 550, 599, 200, 399, 300, 500};
            // Any text: the reply parser keeps what a relay sends, CR and
            // LF aside; format_reply must make it safe for the client.
            r.reply = make(codes[arg % 16], std::string(in.bytes(in.byte(0) % 64)));
            break;
        }
        default:
            if (a.kind == Kind::upstream_commit)
                r.reply = make(250, "Ok: queued as FUZZ1");
            else if (data_cmd)
                r.reply = make(354, "go ahead");
            else
                r.reply = make(250, "Ok");
            break;
    }
    if (a.kind == Kind::upstream_write) {  // a write reports success or a broken connection
        const bool ok = op % 8 != 6;
        r = UpstreamResult{};
        r.ok = ok;
        if (!ok) r.failure = Reason::upstream_failed;
    }
    if (a.kind == Kind::upstream_connect) {
        // The runner's connect has checked the greeting and EHLO: success is a
        // 250 with capabilities, anything else a failure.
        if (op % 8 >= 5) {
            r = UpstreamResult{};
            r.ok = false;
            r.failure = op % 8 == 5   ? Reason::upstream_unavailable
                        : op % 8 == 6 ? Reason::upstream_timeout
                                      : Reason::upstream_failed;
        } else {
            smtp::Reply ehlo{250, "", {"relay.test"}};
            const std::uint8_t caps = op % 8 == 0 ? 31 : arg;
            if (caps & 1) ehlo.lines.push_back("SIZE 100000000");
            if (caps & 2) ehlo.lines.push_back("8BITMIME");
            if (caps & 4) ehlo.lines.push_back("SMTPUTF8");
            if (caps & 8) ehlo.lines.push_back("PIPELINING");
            if (caps & 16) ehlo.lines.push_back("CHUNKING");
            r.reply = ehlo;
            r.capabilities =
                std::make_shared<const smtp::EhloCapabilities>(smtp::parse_ehlo_capabilities(ehlo));
        }
    }

    if (r.ok)
        TRACE("relay",
              a.kind == Kind::upstream_write ? std::string("ok") : smtp::format_reply(r.reply));
    else
        TRACE("relay", std::string("fails: ") + std::string(label(r.failure)));
    // The upstream model after this result (the runner closes on failure).
    if (!r.ok) {
        s.upstream_connected = false;
        s.upstream_in_data = false;
    } else if (a.kind == Kind::upstream_connect) {
        s.upstream_connected = true;
        s.upstream_in_data = false;
        s.upstream_chunking = r.capabilities->has("CHUNKING");
    } else if (data_cmd && r.reply.code == 354) {
        s.upstream_in_data = true;
        s.data_tail = "\r\n";  // the data starts at the beginning of a line
    } else if (a.kind == Kind::upstream_commit) {
        s.upstream_in_data = false;
    }
    if (a.kind == Kind::upstream_commit) {
        s.commit_2xx = r.ok && r.reply.code / 100 == 2;
        s.commit_positive = r.ok && r.reply.positive() && r.reply.code != 421;
        s.commit_2xx_seen = s.commit_2xx;
    }
    if (a.kind == Kind::upstream_command && a.bytes.starts_with("MAIL FROM:") && r.ok &&
        r.reply.positive() && r.reply.code != 421)
        s.txn_open = true;
    if (a.kind == Kind::upstream_command &&
        a.then_rcpt != (a.bytes.find("\r\nRCPT TO:<") != std::string::npos))
        fail("upstream", "a pipelined group other than MAIL + RCPT: " + a.bytes);
    if (a.then_rcpt && r.ok) {
        // The RCPT's reply: the natural 250, or any code the relay may send.
        const std::uint8_t op2 = in.byte(0);
        static const int codes[] = {250, 251, 421, 450, 452, 503, 550, 354};
        r.rcpt_reply = make(op2 % 2 == 0 ? 250 : codes[(op2 >> 1) % 8], "rcpt");
        TRACE("relay", "rcpt: " + smtp::format_reply(*r.rcpt_reply));
    }
    return r;
}

dns::Answer dns_answer(Input& in) {
    dns::Answer a;
    a.status = dns::Status::ok;
    switch (in.byte(0) % 8) {
        case 0:
            a.records = {"v=spf1 -all", "v=relaygate1; tenant=verified"};
            break;
        case 1:
            a.records = {"v=relaygate1; tenant=someone-else"};
            break;
        case 2:
            a.status = dns::Status::nxdomain;
            break;
        case 3:
            a.status = dns::Status::servfail;
            break;
        case 4:
            a.status = dns::Status::timeout;
            break;
        case 5:
            a.records = {"v=DKIM1; k=ed25519; p=5Fpi1PMj5pNDPit7CWq9yOj9p4nosF/cFRqE8FWXa4Q="};
            break;
        case 6:
            a.status = dns::Status::nodata;
            break;
        default:
            a.records = {"v=relaygate1; tenant=", "v=DKIM1; p=", std::string(300, 'x')};
            a.cname_target = "elsewhere.example";
            break;
    }
    return a;
}

void check_upstream_action(const Flat& a, State& s) {
    switch (a.kind) {
        case Kind::upstream_command:
            if (s.upstream_in_data)
                fail("upstream", "command while the relay reads message data: " + a.bytes);
            if (!s.upstream_connected && !s.soft_reported) {
                // The runner answers it with a failure; worth knowing, not a trap.
                s.soft_reported = true;
                std::fprintf(stderr, "fuzz_session: note: upstream command with no connection: %s",
                             a.bytes.c_str());
            }
            // Every path that records a transaction does so in the same call
            // that sends this RSET, so a record, if any, came already.
            if (a.bytes == "RSET\r\n" && s.txn_open) s.reset_sent = true;
            break;
        case Kind::upstream_write: {
            if (!s.upstream_in_data) fail("upstream", "message data written outside DATA");
            // Our verdict goes first, so the signer reads ours, not a client's.
            if (s.data_tail == "\r\n" && !a.bytes.starts_with("X-Relaygate-Verdict: "))
                fail("upstream", "the message does not start with the verdict header");
            const std::string joined = s.data_tail + a.bytes;
            if (joined.find("\r\n.\r\n") != std::string::npos)
                fail("upstream", "written data contains its own end-of-data line");
            s.data_tail = joined.size() > 4 ? joined.substr(joined.size() - 4) : joined;
            break;
        }
        case Kind::upstream_commit:
            if (a.bytes.empty()) {  // no terminator: one BDAT LAST (RFC 3030)
                if (s.upstream_in_data || !s.upstream_chunking)
                    fail("upstream", "BDAT after DATA or to a relay without CHUNKING");
                if (!session::testing::exact_bdat_last(a.data, "X-Relaygate-Verdict: "))
                    fail("upstream", "not one exact BDAT LAST starting with the verdict header");
            } else if (!s.upstream_in_data) {
                fail("upstream", "upstream_commit without a 354 to DATA");
            }
            break;
        default:
            break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 16 * 1024) return 0;
    Input in(data, size);
    const std::uint8_t setup = in.byte();

    session::Settings settings;
    settings.auth = static_cast<config::Auth>(std::min(setup & 3, 2));
    const int tls = (setup >> 2) & 3;
    settings.starttls = tls == 2   ? config::StartTls::required
                        : tls == 0 ? config::StartTls::off
                                   : config::StartTls::offered;
    settings.session_seconds = 300;
    settings.authserv_ids = {"signer.example"};
    if (setup & 0x80) {
        // Small limits, so that every limit is reached by short inputs.
        settings.limits.max_message_bytes = 2048;
        settings.limits.max_header_bytes = 1024;
        settings.limits.max_recipients = 2;
        settings.limits.max_errors = 3;
        settings.limits.max_transactions_per_session = 2;
        settings.limits.max_command_line = 64;
    } else {
        settings.limits.max_message_bytes = 65536;
        settings.limits.max_header_bytes = 8192;
    }
    // Bits 4-6 pick the client address; 5-7 are the first three again,
    // with a recipient lease of 2 (so that unused units ride on the
    // end-of-data request too).
    const int address = (setup >> 4) & 7;
    session::ClientInfo client{"fuzz-1", kAddresses[address % 5], 40000};
    settings.volume.recipient_lease = address >= 5 ? 2 : 1;
    // Odd ones also run without upstream.defer_mail.
    settings.upstream_defer_mail = address % 2 == 0;

    State s;
    FuzzHooks hooks(s);
    SessionMachine m(settings, fuzz_policy(), client, hooks);

    const std::size_t max_actions = kActionsPerByte * (size + 8);
    bool client_closed = false;
    bool want_result = false;  // the machine waits for a result: it must ask first
    for (std::size_t actions = 0;; ++actions) {
        if (actions > max_actions) fail("bounded", std::to_string(actions) + " actions");
        want_result = want_result || (m.pending() != session::Pending::none);
        Flat a = flatten(m.next());
        TRACE(kind_name(a.kind), a.bytes);
        if (expects_result(a.kind)) {
            if (!(m.pending() != session::Pending::none))
                fail("owed", "a result-expecting action while the machine waits for none");
            want_result = false;
        } else if (want_result && (a.kind == Kind::read_client || a.kind == Kind::close)) {
            fail("owed", "the machine waits for a result it never asked for");
        }
        check_upstream_action(a, s);

        switch (a.kind) {
            case Kind::send_client: {
                if (!well_formed_reply(a.bytes)) fail("reply", "malformed: " + printable(a.bytes));
                const int code = reply_code(a.bytes);
                if (s.reset_sent) {
                    // A transaction ended with no record. The client's RSET or
                    // EHLO/HELO does that (RFC 5321 4.1.1.5): their 250 follows
                    // the RSET; anything else (drain, lifetime, errors) would
                    // close the session with the transaction unrecorded.
                    s.reset_sent = false;
                    const bool client_reset = a.bytes == "250 2.0.0 OK\r\n" ||
                                              a.bytes.starts_with("250-relaygate.local\r\n") ||
                                              a.bytes == "250 relaygate.local\r\n";
#if FUZZ_SESSION_STRICT_RECORDS
                    if (client_reset)
                        fail("records", "a transaction ended by RSET/EHLO left no record");
#endif
                    if (client_reset) s.txn_open = false;
                }
                if (s.client_in_data) {
                    // The reply that ends the DATA: the final "." (or a 421).
                    if (code / 100 == 2 && !s.commit_2xx)
                        fail("commit", "2xx to the final dot without a 2xx commit: " + a.bytes);
                    s.client_in_data = false;
                    s.commit_2xx = false;
                } else if (code == 354 && m.stage() == SessionMachine::Stage::data) {
                    s.client_in_data = true;
                    s.commit_2xx = false;
                } else if (code / 100 == 2 && s.commit_2xx) {
                    fail("commit", "a commit's 2xx outlived its DATA");
                }
                break;
            }
            case Kind::read_client: {
                if (client_closed) fail("bounded", "read_client after the client closed");
                if (in.empty()) {
                    TRACE("event", "input ends: client closes");
                    client_closed = true;
                    m.on_client_closed();
#if FUZZ_SESSION_CHECK_RECORDS
                    if (s.txn_open) fail("records", "a close left the transaction unrecorded");
#endif
                    break;
                }
                const std::uint8_t op = in.byte();
                switch (op % 16) {
                    case 0:
                    case 1:
                    case 2:
                    case 3:
                    case 4:
                    case 5: {
                        const auto chunk = in.bytes(in.byte());
                        TRACE("client", chunk);
                        m.on_client_data(chunk);
                        break;
                    }
                    case 6:
                    case 7:
                    case 8:
                    case 9:
                    case 10: {
                        const auto token = kTokens[in.byte() % kTokenCount];
                        TRACE("client", token);
                        m.on_client_data(token);
                        break;
                    }
                    case 11:
                    case 12:
                        TRACE("event", op % 16 == 11 ? "timeout" : "data too slow");
                        m.on_timeout(op % 16 == 11 ? Reason::timeout : Reason::data_too_slow);
#if FUZZ_SESSION_CHECK_RECORDS
                        if (s.txn_open)
                            fail("records", "a timeout left the transaction unrecorded");
#endif
                        break;
                    case 13:
                        TRACE("event", "client closes");
                        client_closed = true;
                        m.on_client_closed();
#if FUZZ_SESSION_CHECK_RECORDS
                        if (s.txn_open) fail("records", "a close left the transaction unrecorded");
#endif
                        break;
                    case 14: {
                        const std::uint8_t sec = in.byte();
                        TRACE("event", "clock +" + std::to_string(sec) + " s");
                        hooks.t += sec;
                        break;
                    }
                    default: {
                        const std::uint8_t sub = in.byte();
                        TRACE("event", sub == 0   ? "drain"
                                       : sub == 1 ? "upstream idle"
                                                  : "clock +" + std::to_string(sub) + " s");
                        if (sub == 0)
                            m.on_drain();
                        else if (sub == 1)
                            m.on_upstream_idle();
                        else
                            hooks.t += sub;
                        break;
                    }
                }
                break;
            }
            case Kind::upstream_connect:
            case Kind::upstream_command:
            case Kind::upstream_write:
            case Kind::upstream_commit:
                m.on_upstream_result(upstream_result(in, a, s));
                break;
            case Kind::upstream_abort:
            case Kind::upstream_quit:
                s.upstream_connected = false;
                s.upstream_in_data = false;
                break;
            case Kind::start_tls: {
                const std::uint8_t op = in.byte(1) % 4;
                policy::ConnectionFacts facts;
                if (op == 2) facts.client_cert_sha256 = std::string(64, 'a');
                TRACE("tls", op == 0 ? "handshake fails" : op == 2 ? "ok, pinned cert" : "ok");
                m.on_tls_result(op != 0, facts);
                break;
            }
            case Kind::verify_auth: {
                const std::uint8_t op = in.byte(1) % 4;
                TRACE("auth", op == 0   ? "success"
                              : op == 1 ? "failure"
                              : op == 2 ? "throttled"
                                        : "busy");
                if (op == 2)
                    m.on_auth_throttled();
                else if (op == 3)
                    m.on_auth_busy();
                else
                    m.on_auth_result(op == 0);
                break;
            }
            case Kind::dns_lookup: {
                const dns::Answer answer = dns_answer(in);
                TRACE("dns", std::string(dns::to_string(answer.status)) +
                                 (answer.records.empty() ? "" : " " + answer.records.back()));
                m.on_dns_result(answer);
                break;
            }
            case Kind::check_limits: {
                const std::uint8_t op = in.byte(1) % 5;
                ratelimit::Outcome o;
                o.remaining.assign(a.request.checks.size(), 0);
                o.first_seen_new.assign(a.request.first_seen.size(), op == 4);
                using Mode = ratelimit::Check::Mode;
                std::size_t last_limit = a.request.checks.size();  // consume or ask
                bool has_lease = false;
                for (std::size_t i = 0; i < a.request.checks.size(); ++i) {
                    const Mode mode = a.request.checks[i].mode;
                    if (mode == Mode::consume || mode == Mode::ask) last_limit = i;
                    has_lease = has_lease || mode == Mode::lease;
                }
                o.leased = has_lease && (op == 0 || op == 3);
                if (op == 1 && last_limit < a.request.checks.size()) {
                    o.allowed = false;
                    o.denied = last_limit;
                    o.retry_after = 30;
                } else if (op == 2) {
                    o.status = ratelimit::Outcome::Status::store_error;
                    o.error = "fuzz";
                    o.leased = false;
                } else if (op == 3 && !a.request.volume_key.empty()) {
                    o.spike = o.held = true;
                    o.volume = 500;
                }
                TRACE("limits", op == 0   ? "allowed"
                                : op == 1 ? "denied"
                                : op == 2 ? "store error"
                                : op == 3 ? "spike, held"
                                          : "first seen");
                m.on_limits_result(o);
                break;
            }
            case Kind::refund_limits:
                TRACE("refund", std::to_string(a.units) + " units");
                if (a.units == 0 || a.units > s.lease_out)
                    fail("lease", "a refund of more units than were granted");
                s.lease_out -= a.units;
                break;
            case Kind::close:
                if (s.lease_out != 0)
                    fail("lease", "the session ended with a lease not given back");
#if FUZZ_SESSION_CHECK_RECORDS
                if (s.txn_open)
                    fail("records", "the session ended with a started transaction unrecorded");
#endif
                return 0;
        }
    }
}
