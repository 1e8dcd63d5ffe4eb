// The session state machine. Control flow: next() runs step() until an action
// is queued; commands are handled one line at a time, so a command that
// needs the upstream stops input processing until its result arrives.
#include "gateway/session/session.hpp"

#include <fmt/core.h>

#include "gateway/common/ascii.hpp"

namespace relaygate::session {

using Phase = DataTransfer::Phase;

namespace {
// Names in the order of the enumerators.
template <class E, std::size_t N>
std::string_view name_of(E e, const std::string_view (&names)[N]) {
    const auto i = static_cast<std::size_t>(e);
    return i < N ? names[i] : "unknown";
}
}  // namespace

std::string_view to_string(UpstreamStep s) {
    static constexpr std::string_view kNames[] = {"connect", "mail", "rcpt", "data",
                                                  "write",   "dot",  "rset"};
    return name_of(s, kNames);
}

std::string_view to_string(Stage s) {
    static constexpr std::string_view kNames[] = {"command", "data", "closed"};
    return name_of(s, kNames);
}

std::string_view to_string(Link l) {
    static constexpr std::string_view kNames[] = {"closed", "idle", "in_transaction", "in_data"};
    return name_of(l, kNames);
}

std::string_view to_string(Pending p) {
    static constexpr std::string_view kNames[] = {
        "none", "connect", "mail", "rcpt", "data", "write", "dot", "rset", "dns", "auth", "limits"};
    return name_of(p, kNames);
}

std::string_view to_string(DataTransfer::Phase p) {
    static constexpr std::string_view kNames[] = {"none",           "header",      "waiting_dns",
                                                  "waiting_limits", "waiting_354", "holding",
                                                  "body",           "discard"};
    return name_of(p, kNames);
}

std::string_view name(const Action& a) {
    static constexpr std::string_view kNames[] = {
        "read_client",      "send_client",    "upstream_connect",
        "upstream_command", "upstream_write", "upstream_commit",
        "upstream_abort",   "upstream_quit",  "start_tls",
        "verify_auth",      "dns_lookup",     "check_limits",
        "refund_limits",    "close"};
    static_assert(std::size(kNames) == std::variant_size_v<Action>);
    return name_of(a.index(), kNames);
}

namespace {

// The latency label of an upstream command (Pending and UpstreamStep name
// the same commands).
UpstreamStep step_of(Pending p) {
    return p == Pending::mail   ? UpstreamStep::mail
           : p == Pending::rcpt ? UpstreamStep::rcpt
           : p == Pending::data ? UpstreamStep::data
           : p == Pending::rset ? UpstreamStep::rset
                                : UpstreamStep::connect;
}

smtp::Reply simple(int code, std::string enhanced, std::string text) {
    return smtp::Reply{code, std::move(enhanced), {std::move(text)}};
}

// "250 2.0.0 Ok: queued as 4Bx2Yk0QzZz1" (Postfix) -> "4Bx2Yk0QzZz1".
std::string queue_id_of(const smtp::Reply& r) {
    for (const auto& line : r.lines) {
        auto pos = line.find("queued as ");
        if (pos == std::string::npos) continue;
        std::string id;
        for (char c : line.substr(pos + 10)) {
            if (!ascii::is_alnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') break;
            id += c;
        }
        return id;
    }
    return {};
}

std::string first_line(const smtp::Reply& r) {
    std::string s = std::to_string(r.code);
    if (!r.enhanced.empty()) s += " " + r.enhanced;
    if (!r.lines.empty()) s += " " + r.lines.front();
    return s;
}

constexpr std::string_view kProofPrefix = "_relaygate.";

}  // namespace

// RFC 5321 4.3.2: DATA expects 354 (I) or a failure, every other command
// of a transaction 2xx or a failure.
bool SessionMachine::expected_reply(Pending p, int code) {
    const int cls = code / 100;
    if (cls == 4 || cls == 5) return true;
    switch (p) {
        case Pending::data:
            return code == 354;
        case Pending::mail:
        case Pending::rcpt:
        case Pending::dot:
        case Pending::rset:
            return cls == 2;
        default:
            return true;
    }
}

policy::DomainProof domain_proof(std::string domain, const dns::Answer& txt) {
    policy::DomainProof proof{std::move(domain), policy::DomainProof::Status::error, {}};
    using dns::Status;
    if (txt.status != Status::ok && txt.status != Status::nxdomain && txt.status != Status::nodata)
        return proof;
    for (const auto& record : txt.records)
        if (auto tenant = policy::parse_domain_proof(record)) proof.tenants.push_back(*tenant);
    proof.status = proof.tenants.empty() ? policy::DomainProof::Status::missing
                                         : policy::DomainProof::Status::found;
    return proof;
}

dkim::KeyLookup key_lookup(const dns::Answer& txt) {
    using dns::Status;
    using Outcome = dkim::KeyLookup::Outcome;
    dkim::KeyLookup key;
    key.outcome = txt.status == Status::ok ? Outcome::found
                  : txt.status == Status::nxdomain || txt.status == Status::nodata
                      ? Outcome::not_found
                      : Outcome::error;
    key.txt = txt.records;
    key.cname_target = txt.cname_target;
    return key;
}

policy::DkimFact dkim_fact(dkim::VerifyResult r) {
    // The two enums list the RFC 6376 results in the same order.
    static_assert(int(dkim::Status::permerror) == int(policy::DkimFact::Status::permerror));
    return {std::move(r.domain), std::move(r.selector),
            static_cast<policy::DkimFact::Status>(r.status), std::move(r.key_cname_target),
            r.length_limited};
}

SessionMachine::SessionMachine(const Settings& settings,
                               std::shared_ptr<const policy::Policy> policy, ClientInfo client,
                               Hooks& hooks)
    : settings_(settings),
      policy_(std::move(policy)),
      client_(std::move(client)),
      hooks_(hooks),
      framer_(settings.limits.max_command_line),
      data_(settings.limits) {
    conn_.client_ip = policy::IpAddress::parse(client_.address);
    started_ = hooks_.now();
    actions_.reserve(4);  // a step's actions, without regrowing
    header_options_.max_header_bytes = settings_.limits.max_header_bytes;
    header_options_.authserv_ids = settings_.authserv_ids;
    header_options_.authserv_ids.push_back(settings_.hostname);
}

Action SessionMachine::next() {
    while (action_head_ == actions_.size()) {
        actions_.clear();  // keeps its capacity: no allocation per action
        action_head_ = 0;
        step();
    }
    return std::move(actions_[action_head_++]);
}

void SessionMachine::step() {
    if (stage_ == Stage::closed) {
        push(act::Close{});
        return;
    }
    if (!greeted_) {
        greeted_ = true;
        reply(simple(220, "", settings_.hostname + " ESMTP relaygate"));
        return;
    }
    if (pending_ != Pending::none) {
        // The runner asked for an action while one is owed: a bug. Fail closed.
        reply(Reason::local_error);
        close_session();
        return;
    }
    if (eod_pending_) {
        eod_pending_ = false;
        end_of_data();
        return;
    }
    if (in_pos_ >= in_.size()) {
        // The relay gets what we have before we wait for the client.
        if (flush_upstream_data()) return;
        in_.clear();
        in_pos_ = 0;
        push(act::ReadClient{});
        return;
    }
    if (stage_ == Stage::command)
        process_command_input();
    else
        process_data_input();
}

void SessionMachine::on_client_data(std::string_view bytes) {
    in_.append(bytes);
}

void SessionMachine::on_client_closed() {
    if (txn_.active) {
        release_upstream_transaction();
        abandon_transaction(Reason::client_disconnected);
    }
    quit_upstream();
    enter(Stage::closed);
}

void SessionMachine::on_timeout(Reason reason) {
    if (stage_ == Stage::closed) return;
    if (txn_.active) {
        release_upstream_transaction();
        abandon_transaction(reason);
    }
    reply(reason);
    close_session();
}

void SessionMachine::on_upstream_idle() {
    if (upstream_idle()) quit_upstream();
}

// --- command stage -------------------------------------------------------

void SessionMachine::process_command_input() {
    const std::size_t start = in_pos_;
    auto ev = framer_.feed(std::string_view(in_).substr(in_pos_));
    in_pos_ += ev.consumed;
    if (!txn_.held_mail.empty() && !txn_.mail_answered &&
        (ev.kind != smtp::LineEvent::Kind::line || sasl_.active())) {
        send_held_mail_alone(start);
        return;
    }
    switch (ev.kind) {
        case smtp::LineEvent::Kind::need_more:
            return;
        case smtp::LineEvent::Kind::error:
            error_reply(ev.error == smtp::LineError::too_long
                            ? Reason::line_too_long
                            : Reason::bare_line_ending_in_command);
            return;
        case smtp::LineEvent::Kind::line: {
            // A copy: the view dies with the next feed or a framer reset.
            // Its memory is kept for the next line unless it was long.
            line_.assign(ev.line);
            if (sasl_.active())
                handle_auth_response(line_);
            else
                handle_line(line_, start);
            if (line_.capacity() > 1024) std::string().swap(line_);
            return;
        }
    }
}

void SessionMachine::send_held_mail_alone(std::size_t line_start) {
    // The line after the held MAIL is not a RCPT that goes to the relay at
    // once: the MAIL goes alone, and the line is read again after its
    // reply. rcpt_follows() made sure the whole line came from in_ (the
    // framer held nothing).
    in_pos_ = line_start;
    framer_.reset();
    command(Pending::mail, std::exchange(txn_.held_mail, {}));
}

void SessionMachine::handle_line(std::string_view line, std::size_t line_start) {
    // Draining, or the session has lived its configured life: 421 and
    // close at the next command (RFC 5321 3.8 allows 421 at any time).
    const bool expired = hooks_.now() - started_ >= settings_.session_seconds;
    auto parsed = smtp::parse_command(line, parse_options());
    if (!txn_.held_mail.empty() && !txn_.mail_answered &&
        (draining_ || expired || !parsed || !joins_held_mail(*parsed))) {
        send_held_mail_alone(line_start);
        return;
    }
    if (draining_ || expired) {
        const Reason why = draining_ ? Reason::shutting_down : Reason::session_lifetime_exceeded;
        if (txn_.active) {
            release_upstream_transaction();
            abandon_transaction(why);
        }
        reply(why);
        close_session();
        return;
    }
    if (!parsed) {
        error_reply(smtp::reason(parsed.error()));
        return;
    }
    smtp::Command& cmd = *parsed;
    using smtp::Verb;
    switch (cmd.verb) {
        case Verb::ehlo:
        case Verb::helo: {
            // RFC 5321 4.1.4: EHLO/HELO resets any transaction in progress.
            if (txn_.active) {
                release_upstream_transaction();
                abandon_transaction(Reason::transaction_reset);
            }
            helo_ = true;
            client_helo_ = cmd.helo_domain;
            if (cmd.verb == Verb::helo) {
                reply(simple(250, "", settings_.hostname));
                return;
            }
            smtp::Reply r{250, "", {settings_.hostname}};
            r.lines.push_back("PIPELINING");
            r.lines.push_back(fmt::format("SIZE {}", settings_.limits.max_message_bytes));
            r.lines.push_back("8BITMIME");
            r.lines.push_back("SMTPUTF8");
            r.lines.push_back("ENHANCEDSTATUSCODES");
            if (settings_.starttls != config::StartTls::off && !tls_) r.lines.push_back("STARTTLS");
            if (auth_offered()) r.lines.push_back("AUTH PLAIN LOGIN");
            reply(r);
            return;
        }
        case Verb::mail:
            handle_mail(std::move(cmd));
            return;
        case Verb::rcpt:
            handle_rcpt(cmd);
            return;
        case Verb::data:
            handle_data();
            return;
        case Verb::rset:
            if (txn_.active) {
                release_upstream_transaction();
                abandon_transaction(Reason::transaction_reset);
            }
            reply(simple(250, "2.0.0", "OK"));
            return;
        case Verb::noop:
            reply(simple(250, "2.0.0", "OK"));
            return;
        case Verb::quit:
            if (txn_.active) {
                release_upstream_transaction();
                abandon_transaction(Reason::client_disconnected);
            }
            reply(simple(221, "2.0.0", "Bye"));
            close_session();
            return;
        case Verb::vrfy:
            // RFC 5321 3.5.3: 252 when we will not verify but will try RCPT.
            reply(simple(252, "2.5.0",
                         "Cannot VRFY user, but will accept message and attempt delivery"));
            return;
        case Verb::help:
            reply(simple(214, "2.0.0", "See RFC 5321; relaygate relays for known senders"));
            return;
        case Verb::starttls:
            handle_starttls();
            return;
        case Verb::auth:
            handle_auth(cmd);
            return;
        case Verb::expn:
            error_reply(Reason::command_not_implemented);
            return;
    }
}

smtp::ParseOptions SessionMachine::parse_options() const {
    smtp::ParseOptions opts;
    opts.smtputf8_offered = true;
    opts.smtputf8_transaction = txn_.active && txn_.mail.mail.smtputf8;
    return opts;
}

void SessionMachine::handle_mail(smtp::Command&& cmd) {
    if (!helo_ || txn_.active) {
        error_reply(Reason::bad_sequence);
        return;
    }
    if (settings_.starttls == config::StartTls::required && !tls_) {
        error_reply(Reason::tls_required);  // RFC 3207 4
        return;
    }
    if (cmd.mail.size && *cmd.mail.size > settings_.limits.max_message_bytes) {
        error_reply(Reason::message_too_big);  // RFC 1870 6.1
        return;
    }
    if (transactions_ >= settings_.limits.max_transactions_per_session) {
        reply(Reason::too_many_transactions);
        close_session();
        return;
    }
    // A reload since the last transaction applies from this one on.
    if (auto current = hooks_.current_policy()) policy_ = std::move(current);
    reset_transaction();
    txn_.started = hooks_.now();
    txn_.envelope.null_sender = cmd.path.null;
    txn_.envelope.domain = cmd.path.domain;
    txn_.mail = std::move(cmd);
    txn_.active = true;  // so that a refusal's record carries the envelope
    decide_mail_from();
}

void SessionMachine::decide_mail_from() {
    const double t0 = hooks_.now();
    txn_.decision = policy_->at_mail_from(conn_, txn_.envelope, trace());
    hooks_.on_decision("mail_from", hooks_.now() - t0);
    hooks_.on_policy_decision("mail_from", txn_.decision);
    if (lookup_proof(txn_.decision, DnsFor::mail_from)) return;
    if (!passes(txn_.decision)) {
        finish_transaction(reply_for(txn_.decision), txn_.decision.reason, "mail_from");
        return;
    }
    // A provider identity is proven only by the header: its volume is
    // counted there, once the tenant is certain.
    if (!txn_.decision.pending_header && check_volume(LimitsFor::mail_from)) return;
    proceed_mail_from();
}

void SessionMachine::proceed_mail_from() {
    if (link_ != Link::closed)
        send_upstream_mail();
    else
        await(act::UpstreamConnect{}, Pending::connect);
}

void SessionMachine::send_upstream_mail() {
    const auto& p = txn_.mail.path;
    std::string line;
    line.reserve(64 + p.local_part.size() + p.domain.size());  // with its parameters
    line += "MAIL FROM:<";
    p.append_mailbox(line);
    line += '>';
    // Forward only the parameters the relay announced (RFC 5321 4.1.1.2).
    if (txn_.mail.mail.size && upstream_has("SIZE"))
        line += fmt::format(" SIZE={}", *txn_.mail.mail.size);
    if (txn_.mail.mail.body == smtp::Body::eight_bit_mime && upstream_has("8BITMIME"))
        line += " BODY=8BITMIME";
    if (txn_.mail.mail.body == smtp::Body::seven_bit && upstream_has("8BITMIME"))
        line += " BODY=7BIT";
    if (txn_.mail.mail.smtputf8) {
        if (!upstream_has("SMTPUTF8")) {
            mail_failed(smtp::make_reply(Reason::local_error), Reason::local_error);
            return;
        }
        line += " SMTPUTF8";
    }
    line += "\r\n";
    const bool pipelining = settings_.upstream_pipelining && upstream_has("PIPELINING");
    if (!txn_.pipelined_rcpt.empty()) {
        // Again on a fresh connection: the RCPT goes with it, or after it.
        if (pipelining)
            send_mail_and_rcpt(std::move(line));
        else
            command(Pending::mail, std::move(line));
        return;
    }
    // RFC 2920: a client that pipelined its RCPT gets both to the relay in
    // one write, and both replies in one read: a round trip less. With
    // defer_mail the MAIL is answered now and waits for that RCPT.
    if (pipelining && settings_.upstream_defer_mail) {
        txn_.held_mail = std::move(line);
        txn_.mail_answered = true;
        static const std::string k250 = smtp::format_reply(simple(250, "2.1.0", "Ok"));
        send_reply(250, k250);
        return;
    }
    if (pipelining && rcpt_follows()) {
        txn_.held_mail = std::move(line);
        return;
    }
    command(Pending::mail, std::move(line));
}

bool SessionMachine::rcpt_follows() const {
    if (framer_.buffered() > 0 || in_pos_ >= in_.size()) return false;
    const std::string_view rest = std::string_view(in_).substr(in_pos_);
    return rest.size() > 5 && ascii::iequals(rest.substr(0, 5), "RCPT ") &&
           rest.find("\r\n") != std::string_view::npos;
}

bool SessionMachine::joins_held_mail(const smtp::Command& cmd) const {
    if (cmd.verb != smtp::Verb::rcpt || !cmd.rcpt_params.empty() ||
        txn_.recipients >= settings_.limits.max_recipients)
        return false;
    // check_volume(LimitsFor::rcpt) must decide without the store: a
    // refusal would be the session's own reply, before the MAIL's.
    const auto& d = txn_.decision;
    if (d.tenant.empty() || d.pending_header || txn_.lease_left > 0) return true;
    VolumeAsk ask;
    ask.add(d.limits, policy::LimitKind::recipients, 1, ratelimit::Check::Mode::consume);
    return ask.empty();
}

void SessionMachine::mail_failed(const smtp::Reply& reply, Reason reason) {
    // A RCPT sent with the MAIL is owed a reply of its own, unless the
    // MAIL was answered already: then this reply is the RCPT's.
    const bool rcpt_owed = !txn_.pipelined_rcpt.empty() && !txn_.mail_answered;
    finish_transaction(reply, reason, "mail_from");
    if (rcpt_owed && stage_ != Stage::closed) error_reply(Reason::bad_sequence);
}

void SessionMachine::handle_rcpt(const smtp::Command& cmd) {
    if (!txn_.active) {
        error_reply(Reason::bad_sequence);
        return;
    }
    if (!cmd.rcpt_params.empty()) {
        // RFC 5321 4.1.1.11: 555 for unrecognized RCPT parameters.
        error_reply(Reason::parameter_not_implemented);
        return;
    }
    if (txn_.recipients >= settings_.limits.max_recipients) {
        reply(Reason::too_many_recipients);
        return;
    }
    const auto& p = cmd.path;
    std::string& line = txn_.rcpt_line;
    line.clear();
    line.reserve(12 + p.local_part.size() + p.domain.size());
    line += "RCPT TO:<";
    if (p.postmaster)
        line += "Postmaster";
    else
        p.append_mailbox(line);
    line += ">\r\n";
    if (check_volume(LimitsFor::rcpt)) return;
    command(Pending::rcpt, std::move(txn_.rcpt_line));
}

void SessionMachine::handle_data() {
    if (!txn_.active) {
        error_reply(Reason::bad_sequence);
        return;
    }
    if (txn_.recipients == 0) {
        error_reply(Reason::no_valid_recipients);
        return;
    }
    // RFC 2920 3.1: DATA ends a command group; the client must wait for 354.
    // Bytes already here were sent before it: a smuggling or desync attempt.
    if (in_pos_ < in_.size() || framer_.buffered() > 0) {
        release_upstream_transaction();
        finish_transaction(smtp::make_reply(Reason::pipelining_violation),
                           Reason::pipelining_violation, "data");
        close_session();
        return;
    }
    enter(Stage::data);
    data_.start();
    enter(Phase::header);
    discard_reply_.reset();
    // Always the same: formatted once.
    static const std::string k354 =
        smtp::format_reply(simple(354, "", "End data with <CR><LF>.<CR><LF>"));
    send_reply(354, k354);
}

// --- STARTTLS and AUTH --------------------------------------------------

void SessionMachine::handle_starttls() {
    if (settings_.starttls == config::StartTls::off) {
        error_reply(Reason::command_not_implemented);
        return;
    }
    if (tls_ || txn_.active) {
        error_reply(Reason::bad_sequence);
        return;
    }
    // RFC 3207 6 / CVE-2011-0411: bytes pipelined after STARTTLS were sent
    // in clear text and must not be read as commands after the handshake.
    in_.clear();
    in_pos_ = 0;
    framer_.reset();
    reply(simple(220, "2.0.0", "Ready to start TLS"));
    push(act::StartTls{});
}

void SessionMachine::on_tls_result(bool ok, const policy::ConnectionFacts& facts) {
    if (!ok) {
        close_session();
        return;
    }
    // RFC 3207 4.2: discard all knowledge obtained from the client before TLS.
    tls_ = true;
    helo_ = false;
    client_helo_.clear();
    reset_transaction();
    in_.clear();
    in_pos_ = 0;
    framer_.reset();
    sasl_.reset();
    conn_.client_cert_sha256 = facts.client_cert_sha256;
    conn_.client_spki_sha256 = facts.client_spki_sha256;
    conn_.sasl_user.reset();
}

bool SessionMachine::auth_offered() const {
    return settings_.auth == config::Auth::always ||
           (settings_.auth == config::Auth::tls_only && tls_);
}

void SessionMachine::handle_auth(const smtp::Command& cmd) {
    if (settings_.auth == config::Auth::off) {
        error_reply(Reason::command_not_implemented);
        return;
    }
    if (!auth_offered()) {
        error_reply(Reason::auth_encryption_required);  // RFC 4954 6: 538
        return;
    }
    if (!helo_ || txn_.active || conn_.sasl_user) {
        error_reply(Reason::bad_sequence);  // RFC 4954 4: once, outside a transaction
        return;
    }
    // RFC 4954 4: responses may be up to 12288 octets.
    framer_.set_max_line_length(12288);
    sasl_step(sasl_.start(cmd.auth_mechanism, cmd.auth_initial_response));
}

void SessionMachine::handle_auth_response(std::string_view line) {
    sasl_step(sasl_.respond(line));
}

void SessionMachine::sasl_step(SaslExchange::Step step) {
    using K = SaslExchange::Step::Kind;
    if (step.kind == K::challenge) {
        reply(simple(334, "", step.challenge));
        return;
    }
    framer_.set_max_line_length(settings_.limits.max_command_line);
    if (step.kind == K::failed) {
        error_reply(step.reason);
        return;
    }
    auth_user_ = step.user;
    await(act::VerifyAuth{std::move(step.user), std::move(step.password)}, Pending::auth);
}

void SessionMachine::on_auth_throttled() {
    if (pending_ != Pending::auth) return;
    enter(Pending::none);
    auth_user_.clear();
    if (auth_throttled_) {
        // Told to wait, and still guessing: hang up (RFC 4954 leaves 421).
        reply(Reason::auth_throttled_close);
        close_session();
        return;
    }
    auth_throttled_ = true;
    error_reply(Reason::auth_throttled);
}

void SessionMachine::on_auth_busy() {
    if (pending_ != Pending::auth) return;
    enter(Pending::none);
    auth_user_.clear();
    error_reply(Reason::auth_busy);
}

void SessionMachine::on_auth_result(bool ok) {
    if (pending_ != Pending::auth) return;
    enter(Pending::none);
    if (ok) {
        conn_.sasl_user = auth_user_;
        reply(simple(235, "2.7.0", "Authentication successful"));
    } else {
        error_reply(Reason::auth_failed);
    }
    auth_user_.clear();
}

// --- data stage ----------------------------------------------------------

void SessionMachine::process_data_input() {
    auto fed = data_.feed(std::string_view(in_).substr(in_pos_));
    in_pos_ += fed.consumed;
    if (fed.header_too_big) discard(Reason::header_too_big);
    if (fed.header_complete) decide_header();
    if (!fed.upstream.empty()) {
        txn_.upstream_out += fed.upstream;
        if (txn_.upstream_out.size() >= kUpstreamBatch) flush_upstream_data();
    }
    // Too much or too long to hold for one BDAT LAST: DATA now, and the rest
    // streams after its 354 (an end of data read here waits for it).
    if (data_.phase() == Phase::holding && pending_ == Pending::none &&
        (data_.held_size() >= kUpstreamBatch || hooks_.now() - txn_.held_since >= kHoldSeconds))
        send_data_command();
    if (fed.done) {
        enter(Stage::command);
        if (pending_ != Pending::none)
            eod_pending_ = true;
        else
            end_of_data();
    }
}

void SessionMachine::decide_header() {
    header_options_.smtputf8 = txn_.mail.mail.smtputf8;
    if (auto e = message::read_header_into(data_.header(), header_options_, header_read_)) {
        discard(e->reason);
        return;
    }
    const auto& facts = header_read_;
    // A DKIM-Signature the signer or a verifier could read differently is
    // refused (gateway/message/README.md); the header reader cannot judge it
    // because gateway/dkim depends on gateway/message, not the other way.
    for (auto v : facts.values("DKIM-Signature"))
        if (dkim::signature_ambiguity(v)) {
            discard(Reason::dkim_signature_malformed);
            return;
        }
    header_facts_.clear();
    for (const auto& mb : facts.originators) {
        header_facts_.originators.push_back({mb.field, mb.domain});
        if (mb.field == message::OriginatorField::from && txn_.from_domain.empty())
            txn_.from_domain = mb.domain;
    }
    for (const auto& name : policy_->provider_tenant_headers())
        for (auto v : facts.values(name))
            header_facts_.provider_header_values.emplace_back(v);
    decide_header_policy();
}

void SessionMachine::decide_header_policy() {
    const double t0 = hooks_.now();
    auto d = policy_->at_header(conn_, txn_.envelope, header_facts_, trace());
    hooks_.on_decision("header", hooks_.now() - t0);
    hooks_.on_policy_decision("header", d);
    txn_.decision = d;
    if (lookup_proof(d, DnsFor::header)) {
        enter(Phase::waiting_dns);
        return;
    }
    if (!passes(d)) {
        discard_with(reply_for(d), d.reason);
        return;
    }
    if (check_volume(LimitsFor::header)) {
        enter(Phase::waiting_limits);
        return;
    }
    proceed_header();
}

void SessionMachine::proceed_header() {
    const auto& d = txn_.decision;
    if (d.dkim_required || settings_.verify_dkim_always) data_.verify_dkim(header_read_.fields);
    // The client's copy of the verdict header is removed; ours goes first.
    std::string& held = data_.held_header();
    append_verdict_header(held);
    message::append_without_fields(held, data_.header(), header_read_, settings_.verdict_header);
    if (settings_.upstream_chunking && upstream_has("CHUNKING")) {
        // RFC 3030: no DATA yet; a message that ends within the batch goes as
        // one BDAT LAST (commit_upstream), a longer one falls back to DATA.
        enter(Phase::holding);
        txn_.held_since = hooks_.now();
        return;
    }
    send_data_command();
}

void SessionMachine::send_data_command() {
    enter(Phase::waiting_354);
    command(Pending::data, "DATA\r\n");
}

void SessionMachine::append_verdict_header(std::string& out) const {
    const auto& d = txn_.decision;
    auto to = std::back_inserter(out);
    fmt::format_to(to, "{}: tenant={}; identity={}; domain={}; policy={}", settings_.verdict_header,
                   d.tenant, policy::to_string(d.identity),
                   txn_.from_domain.empty() ? txn_.envelope.domain : txn_.from_domain,
                   policy_->hash());
    if (d.report_only) fmt::format_to(to, "; mode=report; would-reject={}", label(d.reason));
    out += "\r\n";
}

void SessionMachine::end_of_data() {
    if (data_.reader_error() != smtp::DataError::none) {
        discard(smtp::reason(data_.reader_error()));
    } else if (data_.phase() == Phase::header) {
        // No empty line: the whole message is its header section.
        if (data_.finish_header_too_big())
            discard(Reason::header_too_big);
        else
            decide_header();
        if (data_.phase() == Phase::waiting_354 || data_.phase() == Phase::waiting_dns ||
            data_.phase() == Phase::waiting_limits) {
            eod_pending_ = true;  // resumes after the DNS answer, the 354 and the write
            return;
        }
    }
    if (data_.phase() == Phase::discard) {
        release_upstream_transaction();
        finish_transaction(discard_reply_ ? *discard_reply_ : smtp::make_reply(discard_reason_),
                           discard_reason_, "end_of_data");
        return;
    }
    // Phase::body: every check that needs the whole message, then commit.
    if (auto* dkim = data_.dkim()) {
        if (!txn_.dkim_body_done) {
            dkim->on_body_end();
            txn_.dkim_keys = dkim->key_queries();
            txn_.dkim_body_done = true;
        }
        if (txn_.dkim_next < txn_.dkim_keys.size()) {
            lookup(DnsFor::dkim_key, txn_.dkim_keys[txn_.dkim_next++]);
            return;  // on_dns_result comes back here
        }
    }
    decide_end_of_data();
}

void SessionMachine::decide_end_of_data() {
    std::vector<policy::DkimFact> signatures;
    if (auto* dkim = data_.dkim()) {
        for (auto& r : dkim->results(hooks_.unix_time())) {
            hooks_.on_dkim_result(r);
            if (!txn_.dkim_summary.empty()) txn_.dkim_summary += "; ";
            txn_.dkim_summary +=
                fmt::format("{} d={} s={}", dkim::to_string(r.status), r.domain, r.selector);
            signatures.push_back(dkim_fact(std::move(r)));
        }
    }
    const double t0 = hooks_.now();
    auto d = policy_->at_end_of_data(conn_, txn_.envelope, header_facts_, signatures, trace());
    hooks_.on_decision("end_of_data", hooks_.now() - t0);
    hooks_.on_policy_decision("end_of_data", d);
    if (!passes(d)) {
        txn_.decision = d;
        release_upstream_transaction();
        finish_transaction(reply_for(d), d.reason, "end_of_data");
        return;
    }
    if (check_volume(LimitsFor::end_of_data)) return;
    commit_upstream();
}

bool SessionMachine::flush_upstream_data() {
    if (txn_.upstream_out.empty()) return false;
    if (data_.phase() != Phase::body || link_ != Link::in_data) {
        txn_.upstream_out.clear();  // refused or aborted: nothing more goes out
        return false;
    }
    await(act::UpstreamWrite{std::move(txn_.upstream_out)}, Pending::write);
    txn_.upstream_out.clear();
    return true;
}

void SessionMachine::commit_upstream() {
    act::UpstreamCommit c;
    if (data_.phase() == Phase::holding) {
        data_.last_chunk(c.data);  // the whole message in one BDAT LAST
    } else {
        c.data = std::move(txn_.upstream_out);
        c.terminator = data_.terminator();
    }
    txn_.upstream_out.clear();
    await(std::move(c), Pending::dot);
}

// --- volume control ------------------------------------------------------

bool SessionMachine::check_volume(LimitsFor point) {
    const auto& d = txn_.decision;
    if (d.tenant.empty()) return false;  // no single tenant: nothing to count against
    using K = policy::LimitKind;
    using Mode = ratelimit::Check::Mode;
    const auto& vs = settings_.volume;
    VolumeAsk ask;
    switch (point) {
        case LimitsFor::mail_from:
        case LimitsFor::header:
            if (!txn_.volume_counted) {
                txn_.volume_counted = true;
                ask.add(d.limits, K::messages, 1, Mode::consume);
                // Recipients accepted before the tenant was certain (a
                // provider identity) count now.
                if (txn_.recipients > 0)
                    ask.add(d.limits, K::recipients, txn_.recipients, Mode::consume);
                // RFC 1870 SIZE: a message that cannot fit is refused before
                // its data is sent; the real size is counted at end of data.
                if (txn_.mail.mail.size)
                    ask.add(d.limits, K::bytes, *txn_.mail.mail.size, Mode::ask);
                ask.observe_volume(d.tenant, vs);
                if (conn_.client_ip)
                    ask.mark_seen(d.tenant, "net", client_network(*conn_.client_ip), vs);
                // Every transaction that goes on has a RCPT: lease its
                // recipient units now, on a request made anyway, and RCPT
                // needs no round trip of its own. Never a request for the
                // lease alone (it would only move the RCPT's round trip).
                if (point == LimitsFor::mail_from && vs.recipient_lease > 0 && !ask.empty()) {
                    const std::size_t before = ask.limits.size();
                    ask.add(d.limits, K::recipients, vs.recipient_lease, Mode::lease);
                    txn_.lease_limits.assign(ask.limits.begin() + before, ask.limits.end());
                }
            }
            break;
        case LimitsFor::rcpt:
            // Not yet certain for a provider identity: counted at the header.
            if (d.pending_header) return false;
            if (txn_.lease_left > 0) {
                // Taken from the store with the MAIL FROM decision.
                --txn_.lease_left;
                hooks_.on_lease("used", 1);
                return false;
            }
            ask.add(d.limits, K::recipients, 1, Mode::consume);
            break;
        case LimitsFor::end_of_data:
            ask.add(d.limits, K::bytes, data_.size(), Mode::consume);
            // A signal only, so it rides on this request rather than costing
            // the header decision a round trip of its own.
            if (!txn_.from_domain.empty())
                ask.mark_seen(
                    d.tenant, "from",
                    fmt::format("{}|{}",
                                d.identity_detail.empty() ? policy::to_string(d.identity)
                                                          : std::string_view(d.identity_detail),
                                txn_.from_domain),
                    vs);
            // The unused lease goes back on this request, if there is one
            // (else finish_transaction() refunds it without waiting).
            if (!ask.empty() && txn_.lease_left > 0) {
                ask.add(txn_.lease_limits, K::recipients, txn_.lease_left, Mode::refund);
                txn_.lease_refunding = txn_.lease_left;
                txn_.lease_left = 0;
            }
            break;
    }
    if (ask.empty()) return false;
    txn_.limits_for = point;
    // The request goes to the store; what its parts mean stays here.
    txn_.ask = std::move(ask);
    await(act::CheckLimits{std::move(txn_.ask.request)}, Pending::limits);
    return true;
}

void SessionMachine::on_limits_result(const ratelimit::Outcome& o) {
    if (pending_ != Pending::limits) return;
    enter(Pending::none);
    static constexpr std::string_view kPoints[] = {"mail_from", "rcpt", "header", "end_of_data"};
    const auto point = kPoints[static_cast<std::size_t>(txn_.limits_for)];
    hooks_.on_limits_outcome(point, o);
    const auto& d = txn_.decision;
    const auto& ask = txn_.ask;
    // The lease's units are this transaction's from here on, whatever the
    // outcome says below (a spike hold refuses an allowed request: its
    // lease is refunded with the refusal).
    const bool store_ok = o.status == ratelimit::Outcome::Status::ok && !o.fallback;
    if (txn_.limits_for == LimitsFor::mail_from) {
        if (o.leased && store_ok) {
            txn_.lease_left = settings_.volume.recipient_lease;
            hooks_.on_lease("granted", txn_.lease_left);
        } else {
            txn_.lease_limits.clear();
        }
    }
    if (txn_.lease_refunding > 0) {
        // A failed call (or the fallback, which never holds Redis's lease)
        // gave nothing back: the units return with time.
        hooks_.on_lease(store_ok ? "refunded" : "lost", txn_.lease_refunding);
        txn_.lease_refunding = 0;
    }
    if (o.spike) hooks_.on_anomaly("volume_spike", d.tenant, spike_detail(o));
    for (std::size_t i = 0; i < o.first_seen_new.size() && i < ask.seen_kinds.size(); ++i)
        if (o.first_seen_new[i]) hooks_.on_anomaly(ask.seen_kinds[i], d.tenant, ask.seen_what[i]);

    const bool report = settings_.volume.report_only || d.limits_mode == policy::LimitMode::report;
    Reason refuse = Reason::accepted;
    std::string detail;
    if (o.status == ratelimit::Outcome::Status::store_error) {
        // fail_closed: the sender retries. Report mode refuses nothing.
        if (!report) refuse = Reason::rate_limit_unavailable;
    } else if (!o.allowed && o.denied < ask.limits.size()) {
        const auto& limit = ask.limits[o.denied];
        detail = fmt::format("{}; {}", limit.describe(), retry_text(o.retry_after));
        txn_.limit = limit.describe();
        hooks_.on_rate_limited(policy::to_string(limit.kind), report, d.tenant, detail);
        if (!report) refuse = limit_reason(limit.kind);
    } else if (o.held && d.on_spike == policy::SpikeAction::hold) {
        detail = "held until an operator clears it or the hour passes";
        txn_.limit = "volume spike hold";
        hooks_.on_rate_limited("spike_hold", report, d.tenant, detail);
        if (!report) refuse = Reason::anomaly_hold;
    }
    // Only made for a refusal (most decisions allow).
    const auto refusal = [&] {
        smtp::Reply r = smtp::make_reply(refuse);
        if (!detail.empty() && !r.lines.empty()) r.lines.back() += ": " + detail;
        return r;
    };

    switch (txn_.limits_for) {
        case LimitsFor::mail_from:
            if (refuse != Reason::accepted)
                finish_transaction(refusal(), refuse, "mail_from");
            else
                proceed_mail_from();
            return;
        case LimitsFor::rcpt:
            // This recipient only: the ones accepted before stay (RFC 5321
            // 4.5.3.1.10 lets the client send the rest later).
            if (refuse != Reason::accepted)
                reply(refusal());
            else
                command(Pending::rcpt, std::move(txn_.rcpt_line));
            return;
        case LimitsFor::header:
            if (refuse != Reason::accepted)
                discard_with(refusal(), refuse);
            else
                proceed_header();
            return;
        case LimitsFor::end_of_data:
            if (refuse != Reason::accepted) {
                // Before the commit point: the relay discards what it got.
                release_upstream_transaction();
                finish_transaction(refusal(), refuse, "end_of_data");
            } else {
                commit_upstream();
            }
            return;
    }
}

// --- DNS facts -----------------------------------------------------------

bool SessionMachine::lookup_proof(const policy::Decision& d, DnsFor what) {
    // Each answer adds one proof, so the engine never asks twice for a
    // domain; the bound only guards against a policy asking for many.
    constexpr std::size_t kMaxProofs = 8;
    if (d.dns_needed.empty() || txn_.envelope.domain_proofs.size() >= kMaxProofs) return false;
    lookup(what, std::string(kProofPrefix) + d.dns_needed.front());
    return true;
}

void SessionMachine::lookup(DnsFor what, std::string name) {
    dns_for_ = what;
    dns_name_ = name;
    await(act::DnsLookup{std::move(name)}, Pending::dns);
}

void SessionMachine::on_dns_result(const dns::Answer& answer) {
    if (pending_ != Pending::dns) return;
    enter(Pending::none);
    if (dns_for_ == DnsFor::dkim_key) {
        if (auto* dkim = data_.dkim()) dkim->on_key(dns_name_, key_lookup(answer));
        end_of_data();
        return;
    }
    auto proof = domain_proof(dns_name_.substr(kProofPrefix.size()), answer);
    hooks_.on_domain_proof(proof.status == policy::DomainProof::Status::found     ? "found"
                           : proof.status == policy::DomainProof::Status::missing ? "missing"
                                                                                  : "error");
    txn_.envelope.domain_proofs.push_back(std::move(proof));
    if (dns_for_ == DnsFor::mail_from)
        decide_mail_from();
    else
        decide_header_policy();
}

smtp::Reply SessionMachine::reply_for(const policy::Decision& d) const {
    smtp::Reply r = smtp::make_reply(d.reason);
    if (!d.reply_detail.empty() && !r.lines.empty()) r.lines.back() += ": " + d.reply_detail;
    return r;
}

void SessionMachine::discard(Reason reason) {
    discard_with(smtp::make_reply(reason), reason);
}

void SessionMachine::discard_with(smtp::Reply reply, Reason reason) {
    if (data_.phase() == Phase::discard) return;  // the first fault wins
    enter(Phase::discard);
    discard_reason_ = reason;
    discard_reply_ = std::move(reply);
}

// --- upstream results ----------------------------------------------------

void SessionMachine::on_upstream_result(UpstreamResult r) {
    const Pending p = pending_;
    if (p == Pending::dns || p == Pending::auth || p == Pending::limits)
        return;  // not an upstream result
    enter(Pending::none);
    screen_upstream_reply(p, r);
    switch (p) {
        case Pending::none:
            return;
        case Pending::connect:
            if (!r.ok) {
                mail_failed(smtp::make_reply(r.failure), r.failure);
                return;
            }
            enter(Link::idle);
            upstream_caps_ = std::move(r.capabilities);
            send_upstream_mail();
            return;
        case Pending::mail:
            if (!r.ok) {
                // A reused connection may have been closed by the relay while
                // idle: retry once on a fresh one before giving up.
                if (!txn_.reconnected) {
                    txn_.reconnected = true;
                    await(act::UpstreamConnect{}, Pending::connect);
                    return;
                }
                mail_failed(smtp::make_reply(r.failure), r.failure);
                return;
            }
            if (!r.reply.positive()) {
                mail_failed(r.reply, Reason::upstream_rejected);
                return;
            }
            enter(Link::in_transaction);
            if (!txn_.mail_answered) reply(r.reply);
            if (r.rcpt_reply) {
                UpstreamResult rcpt;
                rcpt.ok = true;
                rcpt.reply = std::move(*r.rcpt_reply);
                screen_upstream_reply(Pending::rcpt, rcpt);
                on_rcpt_result(rcpt);
            } else if (!txn_.pipelined_rcpt.empty()) {
                // A fresh connection to a relay without PIPELINING.
                command(Pending::rcpt, std::exchange(txn_.pipelined_rcpt, {}));
            }
            return;
        case Pending::rcpt:
            on_rcpt_result(r);
            return;
        case Pending::data:
            if (!r.ok)
                discard(r.failure);
            else if (r.reply.code == 354) {
                enter(Link::in_data);
                txn_.upstream_out.clear();  // nothing is due before the 354
                data_.start_body(txn_.upstream_out);
                enter(Phase::body);
                if (txn_.upstream_out.size() >= kUpstreamBatch) flush_upstream_data();
            } else
                discard_with(r.reply, r.reply.tempfail() ? Reason::upstream_failed
                                                         : Reason::upstream_rejected);
            return;
        case Pending::write:
            if (!r.ok) discard(r.failure);
            return;
        case Pending::dot: {
            if (!r.ok) {
                // Fail closed: we cannot know whether the relay queued it, so
                // the sender retries (RFC 1047 duplicates beat a lost message).
                // The record says so, for whoever reconciles duplicates.
                txn_.commit_unknown = true;
                finish_transaction(smtp::make_reply(r.failure), r.failure, "end_of_data");
                return;
            }
            enter(Link::idle);  // the relay's transaction is over either way
            if (r.reply.positive())
                finish_transaction(r.reply, Reason::accepted, "end_of_data", queue_id_of(r.reply));
            else
                finish_transaction(
                    r.reply,
                    r.reply.tempfail() ? Reason::upstream_failed : Reason::upstream_rejected,
                    "end_of_data");
            return;
        }
        case Pending::rset:
        case Pending::dns:
        case Pending::auth:
        case Pending::limits:
            return;
    }
}

void SessionMachine::screen_upstream_reply(Pending p, UpstreamResult& r) {
    if (r.ok && r.reply.code == 421 && p != Pending::connect) {
        // RFC 5321 3.8: 421 means the relay is closing this connection (e.g.
        // its idle timeout). Passing it on would tell the client that *we*
        // are closing; treat it as a lost connection instead.
        push(act::UpstreamAbort{});
        r.ok = false;
        r.failure = Reason::upstream_failed;
    }
    if (r.ok && !expected_reply(p, r.reply.code)) {
        // A reply the command cannot get (RFC 5321 4.3.2), e.g. 250 to DATA
        // or 354 to the final ".": the relay is not in the state we think.
        // Never relay it (a 2xx for an uncommitted message would lose it):
        // drop the connection and tempfail.
        push(act::UpstreamAbort{});
        r.ok = false;
        r.failure = Reason::upstream_failed;
    }
    // The runner closed the connection: nothing of this transaction is
    // queued upstream, and the next transaction connects afresh.
    if (!r.ok) enter(Link::closed);
}

void SessionMachine::on_rcpt_result(const UpstreamResult& r) {
    txn_.pipelined_rcpt.clear();
    if (!r.ok) {
        // The relay is gone and took the transaction with it.
        finish_transaction(smtp::make_reply(r.failure), r.failure, "rcpt");
        return;
    }
    if (r.reply.positive()) ++txn_.recipients;
    reply(r.reply);
}

void SessionMachine::release_upstream_transaction() {
    switch (link_) {
        case Link::closed:
        case Link::idle:
            return;
        case Link::in_transaction:
            command(Pending::rset, "RSET\r\n");
            enter(Link::idle);
            return;
        case Link::in_data:
            // Mid-DATA: closing without the final "." makes the relay discard
            // the partial message (RFC 5321 4.1.1.4). This is the commit point.
            push(act::UpstreamAbort{});
            enter(Link::closed);
            return;
    }
}

void SessionMachine::quit_upstream() {
    if (link_ == Link::closed) return;
    push(act::UpstreamQuit{});
    enter(Link::closed);
}

void SessionMachine::record_transaction(const smtp::Reply& r, Reason reason, std::string_view stage,
                                        std::string queue_id) {
    TransactionRecord rec;
    rec.session_id = client_.session_id;
    rec.client = client_.address;
    rec.tenant = txn_.decision.tenant;
    rec.identity = policy::to_string(txn_.decision.identity);
    rec.envelope_domain = txn_.envelope.null_sender ? "<>" : txn_.envelope.domain;
    rec.header_from_domain = txn_.from_domain;
    rec.recipients = txn_.recipients;
    rec.size = stage == "end_of_data" || stage == "data" ? data_.size() : 0;  // no data before
    rec.reason = reason;
    rec.reply = first_line(r);
    rec.queue_id = std::move(queue_id);
    rec.duration = hooks_.now() - txn_.started;
    rec.report_only = txn_.decision.report_only;
    rec.relayed = reason == Reason::accepted;
    rec.stage = std::string(stage);
    rec.dkim = std::move(txn_.dkim_summary);
    rec.commit_unknown = txn_.commit_unknown;
    rec.limit = txn_.limit;
    hooks_.on_transaction(rec);
    ++transactions_;
}

void SessionMachine::finish_transaction(const smtp::Reply& r, Reason reason, std::string_view stage,
                                        std::string queue_id) {
    record_transaction(r, reason, stage, std::move(queue_id));
    if (r.code >= 400) ++errors_;
    reply(r);
    refund_lease();
    reset_transaction();
    release_buffers();
    if (errors_ >= settings_.limits.max_errors && stage_ != Stage::closed) {
        reply(Reason::too_many_errors);
        close_session();
    }
}

void SessionMachine::abandon_transaction(Reason reason) {
    if (!txn_.active) return;
    const std::string_view stage = stage_ == Stage::data ? "data"
                                   : txn_.recipients > 0 ? "rcpt"
                                                         : "mail_from";
    record_transaction(smtp::make_reply(reason), reason, stage, {});
    refund_lease();
    reset_transaction();
    release_buffers();
}

void SessionMachine::refund_lease() {
    if (txn_.lease_left == 0) return;
    VolumeAsk ask;
    ask.add(txn_.lease_limits, policy::LimitKind::recipients, txn_.lease_left,
            ratelimit::Check::Mode::refund);
    push(act::RefundLimits{std::move(ask.request), txn_.lease_left});
    txn_.lease_left = 0;  // exactly once
}

void SessionMachine::release_buffers() {
    // A 1 MiB message must not leave 1 MiB behind in an idle session.
    if (in_pos_ >= in_.size()) {
        in_.clear();
        in_pos_ = 0;
        if (in_.capacity() > 4096) std::string().swap(in_);
    }
    data_.finish();
    enter(Phase::none);
    // A usual header's facts keep their memory for the next message.
    if (header_read_.header_size > kKeptHeaderFacts) header_read_ = {};
    header_facts_.clear();
}

// --- output --------------------------------------------------------------

void SessionMachine::reply(const smtp::Reply& r) {
    if (close_sent_) return;  // not even formatted
    send_reply(r.code, smtp::format_reply(r));
}

void SessionMachine::send_reply(int code, std::string formatted) {
    if (close_sent_) return;
    hooks_.on_reply(code);
    push(act::SendClient{std::move(formatted)});
}

void SessionMachine::reply(Reason r) {
    reply(smtp::make_reply(r));
}

void SessionMachine::error_reply(Reason r) {
    reply(r);
    if (++errors_ >= settings_.limits.max_errors) {
        // RFC 5321 4.3.2 allows 421 at any time; Postfix does the same.
        reply(Reason::too_many_errors);
        if (txn_.active) {
            release_upstream_transaction();
            abandon_transaction(Reason::too_many_errors);
        }
        close_session();
    }
}

void SessionMachine::command(Pending p, std::string line) {
    if (p == Pending::rcpt && !txn_.held_mail.empty()) {
        // The first RCPT joins the held MAIL.
        txn_.pipelined_rcpt = std::move(line);
        send_mail_and_rcpt(std::exchange(txn_.held_mail, {}));
        return;
    }
    await(act::UpstreamCommand{std::move(line), step_of(p)}, p);
}

void SessionMachine::send_mail_and_rcpt(std::string mail_line) {
    // RFC 2920: one write, and the result carries both replies.
    mail_line += txn_.pipelined_rcpt;
    await(act::UpstreamCommand{std::move(mail_line), UpstreamStep::mail, true}, Pending::mail);
}

void SessionMachine::enter(Stage s) {
    if (s == stage_) return;
    hooks_.on_transition("stage", to_string(stage_), to_string(s));
    stage_ = s;
}

void SessionMachine::enter(Link l) {
    if (l == link_) return;
    hooks_.on_transition("link", to_string(link_), to_string(l));
    link_ = l;
}

void SessionMachine::enter(Pending p) {
    if (p == pending_) return;
    hooks_.on_transition("pending", to_string(pending_), to_string(p));
    pending_ = p;
}

void SessionMachine::enter(DataTransfer::Phase p) {
    if (p == data_.phase()) return;
    hooks_.on_transition("data", to_string(data_.phase()), to_string(p));
    data_.set_phase(p);
}

void SessionMachine::close_session() {
    quit_upstream();
    enter(Stage::closed);
    close_sent_ = true;
}

}  // namespace relaygate::session
