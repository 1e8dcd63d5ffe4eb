// SessionMachine: one client SMTP session as a pure state machine.
// It parses client bytes, asks the policy engine, and returns the next
// Action (send to client, talk to the upstream, read, close); a coroutine
// in gateway/server performs each action and reports the result back.
// It must never include Asio, read a clock directly, or block.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gateway/common/reason.hpp"
#include "gateway/config/config.hpp"
#include "gateway/dkim/verifier.hpp"
#include "gateway/dns/packet.hpp"
#include "gateway/message/header_reader.hpp"
#include "gateway/session/action.hpp"
#include "gateway/session/data_transfer.hpp"
#include "gateway/session/sasl.hpp"
#include "gateway/session/volume.hpp"
#include "gateway/smtp/command.hpp"
#include "gateway/smtp/line_framer.hpp"
#include "gateway/smtp/reply.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::session {

struct Settings {
    std::string hostname = "relaygate.local";
    config::Limits limits;
    std::string verdict_header = "X-Relaygate-Verdict";
    std::vector<std::string> authserv_ids;  // config authserv_ids; hostname is added to them
    config::StartTls starttls = config::StartTls::off;
    config::Auth auth = config::Auth::tls_only;
    double session_seconds = 3600;  // the session's whole life (timeouts.session_seconds)
    // For `relaygate explain`: decisions carry their trace (policy::Trace::on),
    // and every DKIM-Signature is verified, not only when the accepted
    // identity requires it. The gateway leaves both off (hot path).
    bool trace_decisions = false;
    bool verify_dkim_always = false;
    VolumeSettings volume;  // rate limits and anomaly signals
    // upstream.pipelining: a MAIL goes to a relay that offers PIPELINING
    // together with the client's first RCPT, when that is already here.
    bool upstream_pipelining = true;
    // upstream.defer_mail: with pipelining, the MAIL is answered once the
    // policy passed and waits for the client's first RCPT to go with it
    // (a round trip less); the relay's refusal of it answers that RCPT.
    bool upstream_defer_mail = true;
    // upstream.chunking: towards a relay that offers CHUNKING (RFC 3030) the
    // accepted message is held, not sent after a DATA; if it ends within
    // kUpstreamBatch octets and kHoldSeconds it goes as one BDAT LAST with
    // the whole content (the relay's 354 round trip saved), otherwise DATA
    // goes then.
    bool upstream_chunking = true;
};

struct ClientInfo {
    std::string session_id;
    std::string address;  // textual client IP (after PROXY protocol, when trusted)
    std::uint16_t port = 0;
};

// DNS answers as the facts policy and DKIM take.
// The TXT records at _relaygate.<domain>: which tenants they name.
policy::DomainProof domain_proof(std::string domain, const dns::Answer& txt);
// The TXT records at a DKIM key name.
dkim::KeyLookup key_lookup(const dns::Answer& txt);
// A verifier's results as policy facts.
policy::DkimFact dkim_fact(dkim::VerifyResult r);

// One finished transaction, for the audit log and metrics.
struct TransactionRecord {
    std::string session_id;
    std::string client;
    std::string tenant;
    std::string identity;
    std::string envelope_domain;
    std::string header_from_domain;
    std::size_t recipients = 0;
    std::uint64_t size = 0;
    Reason reason = Reason::accepted;
    std::string reply;  // the first line of the reply sent to the client
    std::string queue_id;
    double duration = 0;
    bool report_only = false;
    bool relayed = false;
    std::string stage;  // mail_from | rcpt | header | end_of_data
    std::string dkim;   // verified signatures, "pass d=x s=y; fail d=..." (when required)
    // The final "." was sent but its reply never came (RFC 1047): the relay
    // may have queued the message although the client was told 4xx.
    bool commit_unknown = false;
    // The volume limit that refused the transaction or, report-only, would
    // have: "messages 1000 per 1h (tenant acme)"; empty when none.
    std::string limit;
};

// The session's states. Each change goes through SessionMachine::enter(),
// which reports it to Hooks::on_transition (logged at debug level).
enum class Stage : std::uint8_t { command, data, closed };
// The upstream connection as this session sees it: not open; open with no
// transaction; the relay accepted MAIL FROM (RSET ends it); DATA is being
// streamed (only closing the connection discards it: the commit point).
enum class Link : std::uint8_t { closed, idle, in_transaction, in_data };
// The one result the machine waits for, if any; next() never returns while
// one is owed except the action that owes it.
enum class Pending : std::uint8_t {
    none,
    connect,
    mail,
    rcpt,
    data,
    write,
    dot,
    rset,
    dns,
    auth,
    limits
};
std::string_view to_string(Stage s);
std::string_view to_string(Link l);
std::string_view to_string(Pending p);

// The narrow interface to the outside world: a clock and event sinks.
class Hooks {
  public:
    virtual ~Hooks() = default;
    virtual double now() = 0;               // monotonic seconds
    virtual std::uint64_t unix_time() = 0;  // wall clock, for DKIM x= (signature expiry)
    virtual void on_transaction(const TransactionRecord& record) = 0;
    virtual void on_decision(std::string_view point, double seconds) = 0;
    virtual void on_reply(int code) = 0;
    // A state change: `what` is "stage", "link", "pending" or "data".
    virtual void on_transition(std::string_view /*what*/, std::string_view /*from*/,
                               std::string_view /*to*/) {}
    // A _relaygate.<domain> lookup: found | missing | error.
    virtual void on_domain_proof(std::string_view) {}
    // One verified DKIM signature, before the end-of-data decision.
    virtual void on_dkim_result(const dkim::VerifyResult&) {}
    // Every policy evaluation ("mail_from", "header", "end_of_data"; again
    // after each DNS proof), with its trace when Settings::trace_decisions.
    virtual void on_policy_decision(std::string_view /*point*/, const policy::Decision&) {}
    // The policy in force now; each transaction takes it at MAIL FROM, so a
    // grant revoked by a reload stops at the next transaction of an old
    // session. nullptr keeps the session's current snapshot.
    virtual std::shared_ptr<const policy::Policy> current_policy() { return nullptr; }
    // Every volume-control store outcome (point: mail_from | rcpt | header |
    // end_of_data).
    virtual void on_limits_outcome(std::string_view /*point*/, const ratelimit::Outcome&) {}
    // A volume limit refused, or (reported) would have refused: `limit` is
    // messages | recipients | bytes | spike_hold; `detail` names it.
    virtual void on_rate_limited(std::string_view /*limit*/, bool /*reported*/,
                                 std::string_view /*tenant*/, std::string_view /*detail*/) {}
    // Recipient-lease units: granted (with a MAIL FROM decision), used (by
    // a RCPT, without a store call), refunded or lost (the refund riding on
    // the end-of-data request reached the store, or did not). A refund
    // sent as a RefundLimits action is counted by the runner that sends it.
    virtual void on_lease(std::string_view /*event*/, std::uint64_t /*units*/) {}
    // An anomaly signal: first_seen_domain | first_seen_network | volume_spike.
    virtual void on_anomaly(std::string_view /*kind*/, std::string_view /*tenant*/,
                            std::string_view /*detail*/) {}
};

class SessionMachine {
  public:
    // Message data goes to the relay in writes of this size (and a message
    // held for one BDAT LAST, up to this size).
    static constexpr std::size_t kUpstreamBatch = 64 * 1024;
    // A message held for one BDAT LAST goes after a DATA instead once it is
    // held this long: the relay, idle in the transaction meanwhile, must not
    // time it out (Postfix's smtpd_timeout is 300 s); small mail takes ms.
    static constexpr double kHoldSeconds = 5;

    using Stage = session::Stage;

    SessionMachine(const Settings& settings, std::shared_ptr<const policy::Policy> policy,
                   ClientInfo client, Hooks& hooks);

    // The next thing to do. Never returns while an upstream result is owed.
    Action next();
    // Input from the client, after a read_client action.
    void on_client_data(std::string_view bytes);
    // The client closed the connection or it broke.
    void on_client_closed();
    // The stage's deadline passed (or the data rate fell below the minimum).
    void on_timeout(Reason reason = Reason::timeout);
    // The result of the last upstream action that expects one.
    void on_upstream_result(UpstreamResult result);
    // The gateway is draining: close at the next command (421 4.3.2).
    void on_drain() { draining_ = true; }
    // The TLS handshake after STARTTLS (or implicit TLS at connect) finished.
    // On success the session starts over (RFC 3207 4.2); `facts` carries the
    // client certificate digests, if any. On failure the session closes.
    void on_tls_result(bool ok, const policy::ConnectionFacts& facts);
    // The result of a verify_auth action (RFC 4954).
    void on_auth_result(bool ok);
    // The verify_auth action was refused unchecked: this client address or
    // user name failed too often lately (454 4.7.0; a second time 421).
    void on_auth_throttled();
    // The verify_auth action was refused unchecked: auth_throttle.max_pending
    // password checks are already waiting (454 4.7.0; not a failure).
    void on_auth_busy();
    // The upstream connection idled past upstream.idle_timeout_seconds
    // between transactions: close it (politely) to free its resources.
    void on_upstream_idle();
    // An upstream connection is open with no transaction on it.
    bool upstream_idle() const {
        return link_ == Link::idle && !txn_.active && pending_ == Pending::none;
    }
    // Part of a command line has arrived (its deadline runs from its start).
    bool partial_command() const { return in_pos_ < in_.size() || framer_.buffered() > 0; }
    // The result of a dns_lookup action (TXT records of the name asked for).
    void on_dns_result(const dns::Answer& answer);
    // The result of a check_limits action.
    void on_limits_result(const ratelimit::Outcome& outcome);
    bool tls_active() const { return tls_; }

    Stage stage() const { return stage_; }
    Link link() const { return link_; }
    Pending pending() const { return pending_; }
    const policy::ConnectionFacts& connection_facts() const { return conn_; }
    policy::ConnectionFacts& connection_facts() { return conn_; }
    std::size_t transactions() const { return transactions_; }
    // The name the client gave in its last EHLO/HELO (lower-case A-labels,
    // or the address literal), for XCLIENT HELO=; empty before it.
    const std::string& client_helo() const { return client_helo_; }

  private:
    // What a pending dns_lookup is for.
    enum class DnsFor : std::uint8_t { mail_from, header, dkim_key };
    // What a pending check_limits is for.
    enum class LimitsFor : std::uint8_t { mail_from, rcpt, header, end_of_data };

    struct Transaction {
        bool active = false;
        double started = 0;
        smtp::Command mail;
        policy::EnvelopeFacts envelope;
        policy::Decision decision;
        std::size_t recipients = 0;
        bool reconnected = false;  // MAIL already retried on a fresh connection
        std::string from_domain;
        // DKIM, when the accepted identity requires it: the data transfer's
        // verifier sees every byte; its keys are fetched after the body.
        std::vector<std::string> dkim_keys;  // key names to fetch, after the body
        std::size_t dkim_next = 0;           // next of dkim_keys to fetch
        bool dkim_body_done = false;
        std::string dkim_summary;     // "pass d=x s=y; ...", for the record
        bool commit_unknown = false;  // the final "."'s reply was lost
        // Volume control: the message was counted (at MAIL FROM, or at the
        // header for identities proven only there); the pending request.
        bool volume_counted = false;
        VolumeAsk ask;
        LimitsFor limits_for = LimitsFor::mail_from;
        std::string rcpt_line;  // the RCPT waiting for its recipients check
        // RFC 2920 towards the relay: the MAIL line held until the client's
        // first RCPT (already read) joins it in one write; that RCPT line,
        // kept until its reply arrives (a retry on a fresh connection sends
        // both again).
        std::string held_mail;
        std::string pipelined_rcpt;
        // upstream.defer_mail: the client has its 250 for the held MAIL,
        // so the relay's reply to it is not passed on, and lines that do
        // not go to the relay are answered while the MAIL waits.
        bool mail_answered = false;
        std::string limit;  // the limit that refused or was reported
        // The recipient lease (VolumeSettings::recipient_lease): units of
        // each of `lease_limits` taken with the MAIL FROM decision. RCPT
        // uses them without a store call; what is left goes back exactly
        // once, with the end-of-data request or by refund_lease().
        std::vector<policy::AppliedLimit> lease_limits;
        std::uint64_t lease_left = 0;
        std::uint64_t lease_refunding = 0;  // riding on the pending request
        // Message data for the relay not written yet: it goes out before
        // the next client read, when it reaches kUpstreamBatch, or with the
        // final "." (a small message: one write for data and terminator).
        std::string upstream_out;
        double held_since = 0;  // when the message began to be held (Phase::holding)
    };
    // A fresh transaction in place: no temporary to build, move from and
    // destroy, which cost more than the rest of a MAIL command.
    void reset_transaction() {
        static_assert(std::is_nothrow_default_constructible_v<Transaction>);
        std::destroy_at(&txn_);
        std::construct_at(&txn_);
    }

    void step();
    // Writes the held message data now (UpstreamWrite), if there is any.
    bool flush_upstream_data();
    // The commit point: the held data and the terminator in one write, or
    // the held message as one BDAT LAST (Phase::holding).
    void commit_upstream();
    // DATA to the relay; its 354 starts the body (Phase::waiting_354).
    void send_data_command();
    void process_command_input();
    void process_data_input();
    // `line_start`: where the line began in in_ (read again when a held
    // MAIL has to go alone first).
    void handle_line(std::string_view line, std::size_t line_start);
    void handle_mail(smtp::Command&& cmd);
    void decide_mail_from();
    void proceed_mail_from();
    // Asks the store about the transaction's limits at `point`; false when
    // there is nothing to ask (then the caller proceeds at once).
    bool check_volume(LimitsFor point);
    void proceed_header();
    bool lookup_proof(const policy::Decision& d, DnsFor what);
    void lookup(DnsFor what, std::string name);
    smtp::Reply reply_for(const policy::Decision& d) const;
    void handle_starttls();
    void handle_auth(const smtp::Command& cmd);
    void handle_auth_response(std::string_view line);
    void sasl_step(SaslExchange::Step step);
    bool auth_offered() const;
    void handle_rcpt(const smtp::Command& cmd);
    void handle_data();
    void send_upstream_mail();
    // The next client line is a RCPT, complete in the input: a MAIL may wait
    // for it (RFC 2920).
    bool rcpt_follows() const;
    // The held MAIL can go with this command: a RCPT that handle_line()
    // sends to the relay at once, with no reply of the session's own before it.
    bool joins_held_mail(const smtp::Command& cmd) const;
    void send_held_mail_alone(std::size_t line_start);
    // The MAIL line and txn_.pipelined_rcpt as one UpstreamCommand.
    void send_mail_and_rcpt(std::string mail_line);
    // The MAIL failed (relay refused or lost, or cannot be sent): its reply,
    // and the one a pipelined RCPT gets after it (503, as without pipelining).
    void mail_failed(const smtp::Reply& reply, Reason reason);
    // The relay's reply to a RCPT.
    void on_rcpt_result(const UpstreamResult& r);
    // A reply the relay must not send in this state becomes a lost connection.
    void screen_upstream_reply(Pending p, UpstreamResult& r);
    smtp::ParseOptions parse_options() const;
    void decide_header();
    void decide_header_policy();
    void decide_end_of_data();
    void end_of_data();
    void discard(Reason reason);
    void discard_with(smtp::Reply reply, Reason reason);
    void finish_transaction(const smtp::Reply& reply, Reason reason, std::string_view stage,
                            std::string queue_id = {});
    // Ends an active transaction that got no final reply (timeout, client
    // gone, drain): writes its record only.
    void abandon_transaction(Reason reason);
    void record_transaction(const smtp::Reply& reply, Reason reason, std::string_view stage,
                            std::string queue_id);
    // Gives the transaction's unused lease back (RefundLimits), if any.
    void refund_lease();
    // Gives buffers grown by the last message back between transactions.
    void release_buffers();
    void release_upstream_transaction();
    void quit_upstream();
    static bool expected_reply(Pending p, int code);

    // The one place each state changes (reported to Hooks::on_transition).
    void enter(Stage s);
    void enter(Link l);
    void enter(Pending p);
    void enter(DataTransfer::Phase p);

    void reply(const smtp::Reply& r);
    // A reply already formatted (smtp::format_reply).
    void send_reply(int code, std::string formatted);
    void reply(Reason r);
    void error_reply(Reason r);
    // Built in place in actions_ from the action type (no Action to move).
    template <class A>
    void push(A&& a) {
        actions_.emplace_back(std::forward<A>(a));
    }
    // An action whose result the machine then waits for.
    template <class A>
    void await(A&& a, Pending p) {
        enter(p);
        push(std::forward<A>(a));
    }
    void command(Pending p, std::string line);
    void close_session();
    void append_verdict_header(std::string& out) const;
    bool passes(const policy::Decision& d) const { return d.accepted() || d.report_only; }
    policy::Trace trace() const {
        return settings_.trace_decisions ? policy::Trace::on : policy::Trace::off;
    }

    const Settings& settings_;
    std::shared_ptr<const policy::Policy> policy_;
    ClientInfo client_;
    Hooks& hooks_;
    policy::ConnectionFacts conn_;

    // Actions not yet taken by next(): actions_[action_head_..].
    std::vector<Action> actions_;
    std::size_t action_head_ = 0;
    std::string in_;
    std::size_t in_pos_ = 0;
    smtp::LineFramer framer_;
    Stage stage_ = Stage::command;
    Link link_ = Link::closed;
    Pending pending_ = Pending::none;
    bool greeted_ = false;
    bool helo_ = false;
    std::string client_helo_;
    bool draining_ = false;
    bool close_sent_ = false;
    bool tls_ = false;
    SaslExchange sasl_;
    std::string auth_user_;  // the user being verified
    std::string line_;       // the command line being handled
    std::uint32_t errors_ = 0;
    std::size_t transactions_ = 0;
    double started_ = 0;           // hooks_.now() at construction
    bool auth_throttled_ = false;  // a 454 was sent: the next AUTH closes

    std::shared_ptr<const smtp::EhloCapabilities> upstream_caps_;  // null: none yet
    bool upstream_has(std::string_view keyword) const {
        return upstream_caps_ && upstream_caps_->has(keyword);
    }

    Transaction txn_;
    DataTransfer data_;
    policy::HeaderFactsForPolicy header_facts_;
    message::HeaderOptions header_options_;  // set once; smtputf8 per transaction
    message::HeaderFacts header_read_;       // the header reader's result, for DKIM
    // Facts of a header up to this size keep their memory between messages.
    static constexpr std::size_t kKeptHeaderFacts = 4096;
    DnsFor dns_for_ = DnsFor::mail_from;
    std::string dns_name_;      // the name of the pending dns_lookup
    bool eod_pending_ = false;  // end of data seen while the upstream was busy
    std::optional<smtp::Reply> discard_reply_;
    Reason discard_reason_ = Reason::accepted;
};

}  // namespace relaygate::session
