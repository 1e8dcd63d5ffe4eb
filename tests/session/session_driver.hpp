// The scripted session driver shared by the session tests: a test policy,
// fake hooks (a clock tests can move), a scripted relay that records what
// it received, and drive(), which runs a SessionMachine over client chunks.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gateway/ratelimit/memory_store.hpp"
#include "gateway/session/session.hpp"
#include "tests/session/action_view.hpp"

using namespace relaygate;
using session::Action;
using session::testing::Flat;
using session::testing::flatten;
using TK = session::testing::Kind;
using session::SessionMachine;
using session::UpstreamResult;

namespace {

const char* kPolicy = R"({
  "version": 1,
  "tenants": {
    "acme": { "domains": ["acme.example"], "allow_null_sender": true,
              "identities": [ { "networks": ["192.0.2.0/24"] } ] },
    "rival": { "domains": ["rival.example"],
               "identities": [ { "networks": ["198.51.100.0/24"] } ] }
  }
})";

std::shared_ptr<const policy::Policy> test_policy() {
    static auto p = [] {
        auto r = policy::Policy::load_text(kPolicy);
        REQUIRE(r.ok());
        return std::move(r).value();
    }();
    return p;
}

struct FakeHooks : session::Hooks {
    double t = 0;
    std::vector<session::TransactionRecord> records;
    std::shared_ptr<const policy::Policy> current;  // what current_policy() answers
    std::shared_ptr<const policy::Policy> current_policy() override { return current; }
    double now() override { return t += 0.001; }
    std::uint64_t unix_time() override { return 1800000000; }  // 2027-01-15
    void on_transaction(const session::TransactionRecord& r) override { records.push_back(r); }
    void on_decision(std::string_view, double) override {}
    void on_reply(int) override {}
    // "link: idle -> in_transaction", in order.
    std::vector<std::string> transitions;
    void on_transition(std::string_view what, std::string_view from, std::string_view to) override {
        transitions.push_back(std::string(what) + ": " + std::string(from) + " -> " +
                              std::string(to));
    }
    // Every policy evaluation and DKIM result, in order.
    std::vector<std::pair<std::string, policy::Decision>> decisions;
    std::vector<dkim::VerifyResult> dkim;
    void on_policy_decision(std::string_view point, const policy::Decision& d) override {
        decisions.emplace_back(point, d);
    }
    void on_dkim_result(const dkim::VerifyResult& r) override { dkim.push_back(r); }
    // Recipient-lease events: "granted 1", "used 1", in order.
    std::vector<std::string> leases;
    void on_lease(std::string_view event, std::uint64_t units) override {
        leases.push_back(std::string(event) + " " + std::to_string(units));
    }
};

smtp::Reply reply(int code, std::string enhanced, std::string text) {
    return smtp::Reply{code, std::move(enhanced), {std::move(text)}};
}

// Scripted relay faults for FakeUpstream::faults: the connection is lost
// (`why`), or the relay answers with this reply.
inline std::function<UpstreamResult()> lost(Reason why) {
    return [why] {
        UpstreamResult u;
        u.ok = false;
        u.failure = why;
        return u;
    };
}
inline std::function<UpstreamResult()> answers(int code, std::string enhanced, std::string text) {
    return [=] {
        UpstreamResult u;
        u.ok = true;
        u.reply = smtp::Reply{code, enhanced, {text}};
        return u;
    };
}

// A scripted relay: answers each upstream action, records what it received.
struct FakeUpstream {
    std::string received;          // commands and data, as sent
    std::vector<std::string> log;  // "connect", "abort", "quit", "commit"
    bool connected = false;
    std::size_t writes = 0;  // message data written before the commit
    // Overrides: step name -> result (for fault injection).
    std::map<std::string, std::function<UpstreamResult()>> faults;
    bool pipelining = false;            // the EHLO offers PIPELINING (RFC 2920)
    bool chunking = false;              // the EHLO offers CHUNKING (RFC 3030)
    std::vector<std::string> commands;  // each upstream_command's bytes (a group is one)
    std::size_t lose_at = static_cast<std::size_t>(-1);  // this action (0-based) is lost
    std::size_t actions = 0;

    UpstreamResult ok(smtp::Reply r) {
        UpstreamResult u;
        u.ok = true;
        u.reply = std::move(r);
        return u;
    }
    UpstreamResult handle(const Flat& a) {
        if (actions++ == lose_at) {
            connected = false;
            return lost(Reason::upstream_failed)();
        }
        const std::string step(session::to_string(a.step));
        if (auto it = faults.find(step); it != faults.end()) {
            auto r = it->second();
            if (!r.ok) connected = false;
            return r;
        }
        switch (a.kind) {
            case TK::upstream_connect: {
                log.push_back("connect");
                connected = true;
                auto r = ok(smtp::Reply{250, "", {"relay.test", "SIZE 100000000", "8BITMIME"}});
                if (pipelining) r.reply.lines.push_back("PIPELINING");
                if (chunking) r.reply.lines.push_back("CHUNKING");
                r.capabilities = std::make_shared<const smtp::EhloCapabilities>(
                    smtp::parse_ehlo_capabilities(r.reply));
                return r;
            }
            case TK::upstream_command:
                received += a.bytes;
                commands.push_back(a.bytes);
                if (a.then_rcpt) {
                    auto r = ok(reply(250, "2.1.0", "Ok"));
                    r.rcpt_reply = a.bytes.find("RCPT TO:<bad@") != std::string::npos
                                       ? reply(550, "5.1.1", "no such user")
                                       : reply(250, "2.1.5", "Ok");
                    return r;
                }
                if (a.bytes.starts_with("DATA")) return ok(reply(354, "", "go ahead"));
                if (a.bytes.starts_with("RCPT TO:<bad@"))
                    return ok(reply(550, "5.1.1", "no such user"));
                return ok(reply(250, "2.1.0", "Ok"));
            case TK::upstream_write:
                received += a.bytes;
                ++writes;
                return ok({});
            case TK::upstream_commit:
                received += a.data;  // written with the terminator
                received += a.bytes;
                log.push_back("commit");
                return ok(reply(250, "2.0.0", "Ok: queued as ABC123"));
            default:
                return ok({});
        }
    }
};

struct Run {
    std::string client_out;
    FakeUpstream upstream;
    FakeHooks hooks;
    bool closed = false;
    // Scripted DNS: TXT name -> answer (others: NXDOMAIN); what was asked.
    std::map<std::string, dns::Answer> dns;
    std::vector<std::string> dns_asked;
    std::shared_ptr<const policy::Policy> policy;  // null: test_policy()
    // AUTH: "ok", "fail" or "throttled" for (user, password); default fail.
    std::function<std::string(const std::string&, const std::string&)> auth;
    std::vector<std::string> auth_asked;  // users whose password was checked
    // Called before client chunk i is fed (to move the clock, or to tell
    // the machine about an idle upstream).
    std::function<void(SessionMachine&, std::size_t)> before_chunk;
    // When the chunks run out: the client closes (default), or this deadline
    // passes (on_timeout).
    std::optional<Reason> end_with_timeout;
    // Volume control: a real memory store on the hooks' clock; every
    // request it answered, in order; `store_down` makes it fail.
    ratelimit::MemoryStore store{[this] { return hooks.t; }, 100000};
    std::vector<ratelimit::Request> limits_asked;
    std::vector<ratelimit::Request> refunds;  // refund_limits actions, in order
    bool store_down = false;
};

dns::Answer txt(std::vector<std::string> records, dns::Status status = dns::Status::ok) {
    dns::Answer a;
    a.status = status;
    a.records = std::move(records);
    return a;
}

// Runs a session from `client` (connection from `ip`), fed in the given
// chunks, until the machine closes or wants input that is not there.
inline void drive(Run& run, const std::vector<std::string>& chunks,
                  const std::string& ip = "192.0.2.10", session::Settings settings = {}) {
    session::ClientInfo info{"t-1", ip, 12345};
    SessionMachine m(settings, run.policy ? run.policy : test_policy(), info, run.hooks);
    std::size_t next_chunk = 0;
    for (int guard = 0; guard < 100000; ++guard) {
        Flat a = flatten(m.next());
        switch (a.kind) {
            case TK::send_client:
                run.client_out += a.bytes;
                break;
            case TK::read_client:
                if (next_chunk == chunks.size()) {
                    if (run.end_with_timeout)
                        m.on_timeout(*run.end_with_timeout);
                    else
                        m.on_client_closed();
                    break;
                }
                if (run.before_chunk) run.before_chunk(m, next_chunk);
                m.on_client_data(chunks[next_chunk++]);
                break;
            case TK::upstream_abort:
                run.upstream.log.push_back("abort");
                break;
            case TK::upstream_quit:
                run.upstream.log.push_back("quit");
                break;
            case TK::close:
                run.closed = true;
                return;
            case TK::verify_auth: {
                run.auth_asked.push_back(a.bytes);
                const std::string answer = run.auth ? run.auth(a.bytes, a.secret) : "fail";
                if (answer == "throttled")
                    m.on_auth_throttled();
                else if (answer == "busy")
                    m.on_auth_busy();
                else
                    m.on_auth_result(answer == "ok");
                break;
            }
            case TK::check_limits: {
                ratelimit::Outcome o;
                if (run.store_down) {
                    o.status = ratelimit::Outcome::Status::store_error;
                    o.error = "store down";
                } else {
                    o = run.store.decide(a.request);
                }
                run.limits_asked.push_back(std::move(a.request));
                m.on_limits_result(o);
                break;
            }
            case TK::refund_limits:
                // No result: the session does not wait for it.
                if (!run.store_down) run.store.decide(a.request);
                run.refunds.push_back(std::move(a.request));
                break;
            case TK::dns_lookup: {
                run.dns_asked.push_back(a.bytes);
                auto it = run.dns.find(a.bytes);
                m.on_dns_result(it != run.dns.end() ? it->second : txt({}, dns::Status::nxdomain));
                break;
            }
            default:
                m.on_upstream_result(run.upstream.handle(a));
                break;
        }
    }
    FAIL("session did not finish");
}

inline bool has(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}
// How often `needle` occurs in `hay`.
inline int count(std::string_view hay, std::string_view needle) {
    int n = 0;
    for (auto at = hay.find(needle); at != std::string_view::npos; at = hay.find(needle, at + 1))
        ++n;
    return n;
}
inline int count(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<int>(std::count(v.begin(), v.end(), s));
}

const std::string kMessage =
    "From: Alice <alice@acme.example>\r\n"
    "To: bob@example.org\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "Hello Bob.\r\n"
    "..leading dot line\r\n"
    "Bye.\r\n";

inline std::string stuffed(const std::string& content) {
    std::string out;
    smtp::DataWriter w;
    w.write(content, out);
    return out;
}

// The commands of one transaction up to DATA.
inline std::string transaction(const std::string& from) {
    return "EHLO client.example\r\nMAIL FROM:<" + from +
           ">\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n";
}

}  // namespace
