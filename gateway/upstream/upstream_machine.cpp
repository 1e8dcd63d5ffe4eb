// UpstreamMachine implementation. Control flow: a request hands out its first
// Action; resume() turns the outcome of the last Action into the next one.
// Any fault closes the connection, because an SMTP stream in an unknown state
// must never carry another command.
#include "gateway/upstream/upstream_machine.hpp"

#include <algorithm>
#include <utility>

namespace relaygate::upstream {

namespace {

constexpr std::size_t kKeptSendBuffer = 1024;  // commands and replies fit

// XCLIENT attribute values are xtext (RFC 1891 5, Postfix XCLIENT_README).
std::string xtext(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (c < 33 || c > 126 || c == '+' || c == '=') {
            out += '+';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

Action make(Action::Kind kind, std::chrono::seconds timeout = std::chrono::seconds(0)) {
    Action a;
    a.kind = kind;
    a.timeout = timeout;
    return a;
}

}  // namespace

std::string_view to_string(Step s) {
    switch (s) {
        case Step::greeting:
            return "greeting";
        case Step::ehlo:
            return "ehlo";
        case Step::starttls:
            return "starttls";
        case Step::xclient:
            return "xclient";
        case Step::mail:
            return "mail";
        case Step::rcpt:
            return "rcpt";
        case Step::data:
            return "data";
        case Step::dot:
            return "dot";
        case Step::rset:
            return "rset";
    }
    return "unknown";
}

std::string_view to_string(State s) {
    switch (s) {
        case State::closed:
            return "closed";
        case State::connecting:
            return "connecting";
        case State::greeting:
            return "greeting";
        case State::ehlo:
            return "ehlo";
        case State::starttls:
            return "starttls";
        case State::tls_handshake:
            return "tls_handshake";
        case State::tls_ehlo:
            return "tls_ehlo";
        case State::xclient:
            return "xclient";
        case State::xclient_ehlo:
            return "xclient_ehlo";
        case State::resetting:
            return "resetting";
        case State::ready:
            return "ready";
        case State::command:
            return "command";
        case State::data_write:
            return "data_write";
        case State::commit:
            return "commit";
        case State::quitting:
            return "quitting";
        case State::closing:
            return "closing";
    }
    return "unknown";
}

UpstreamMachine::UpstreamMachine(const config::Upstream& cfg, std::string helo_name,
                                 bool tls_available, Observer& observer)
    : cfg_(cfg),
      helo_name_(std::move(helo_name)),
      tls_wanted_(tls_available && cfg.starttls != config::UpstreamTls::off),
      observer_(observer) {}

// The one place the state changes, so that every transition can be seen.
void UpstreamMachine::enter(State next) {
    const State from = std::exchange(state_, next);
    observer_.transition(from, next);
}

// --- requests ---

Action UpstreamMachine::open(XclientInfo client) {
    // A new connection replaces whatever was there.
    client_ = std::move(client);
    announced_.reset();
    rset_pending_ = rset_ahead_ = false;
    rbuf_.clear();
    parser_.reset();
    enter(State::connecting);
    pending_ = Action::Kind::connect;
    return make(Action::Kind::connect, cfg_.connect_timeout);
}

Action UpstreamMachine::reuse(XclientInfo client, bool defer_rset) {
    if (!reusable_for(client)) return not_ready();
    client_ = std::move(client);
    const bool xclient_needed = announced_ ? !(*announced_ == client_) : announces();
    if (defer_rset && !xclient_needed && cfg_.pipelining && caps_->has("PIPELINING")) {
        rset_pending_ = true;
        Action a = make(Action::Kind::done);
        a.result = ehlo_result();
        return a;
    }
    step_ = Step::rset;
    enter(State::resetting);
    return send("RSET\r\n", cfg_.reply_timeout);
}

bool UpstreamMachine::reusable_for(const XclientInfo& client) const {
    return idle_and_clean() && (!announced_ || *announced_ == client || offers_xclient("ADDR"));
}

Action UpstreamMachine::command(std::string lines, Step step, bool then_rcpt) {
    if (!ready()) return not_ready();
    step_ = step;
    then_rcpt_ = then_rcpt;
    mail_reply_.reset();
    enter(State::command);
    if (std::exchange(rset_pending_, false)) {
        rset_ahead_ = true;
        return send("RSET\r\n" + lines, cfg_.reply_timeout);
    }
    return send(std::move(lines), cfg_.reply_timeout);
}

Action UpstreamMachine::write(std::string bytes) {
    if (!ready()) return not_ready();
    enter(State::data_write);
    // RFC 5321 4.5.3.2.5: 3 minutes per data block (upstream.data_block_seconds).
    return send(std::move(bytes), cfg_.data_block_timeout);
}

Action UpstreamMachine::commit(std::string terminator) {
    if (!ready()) return not_ready();
    step_ = Step::dot;
    enter(State::commit);
    return send(std::move(terminator), cfg_.reply_timeout);
}

Action UpstreamMachine::quit() {
    rset_pending_ = false;  // QUIT needs no health check
    if (!ready()) {
        // Nothing open (or a stream in an unknown state): just close.
        result_ = Result{};
        enter(State::closing);
        pending_ = Action::Kind::close;
        return make(Action::Kind::close);
    }
    enter(State::quitting);
    return send("QUIT\r\n", cfg_.quit_timeout);
}

void UpstreamMachine::abort() {
    rset_pending_ = rset_ahead_ = false;
    rbuf_.clear();
    parser_.reset();
    pending_ = Action::Kind::done;
    enter(State::closed);
}

// --- the I/O layer's reports ---

Action UpstreamMachine::resume(IoStatus status, std::string_view received) {
    const Action::Kind last = std::exchange(pending_, Action::Kind::done);
    if (last == Action::Kind::send) {
        // Written: a block of message data (up to 64 KiB and more) must not
        // stay with a connection that then idles, in a session or the pool.
        if (out_.capacity() > kKeptSendBuffer)
            std::string().swap(out_);
        else
            out_.clear();
    }
    switch (last) {
        case Action::Kind::connect:
            if (status != IoStatus::ok) return fail(Reason::upstream_unavailable, "connect");
            enter(State::greeting);
            return await_reply();
        case Action::Kind::send:
            if (state_ == State::quitting) {
                // The relay's 221 carries nothing we need; do not wait for it.
                result_ = Result{};
                result_.ok = status == IoStatus::ok;
                enter(State::closing);
                pending_ = Action::Kind::close;
                return make(Action::Kind::close);
            }
            if (status != IoStatus::ok) return fail(Reason::upstream_failed, "reset");
            if (state_ == State::data_write) {
                Result r;
                r.ok = true;
                return finish(std::move(r));
            }
            return await_reply();
        case Action::Kind::read:
            if (status == IoStatus::timeout) return fail(Reason::upstream_timeout, "timeout");
            if (status != IoStatus::ok) return fail(Reason::upstream_failed, "reset");
            rbuf_.append(received);
            return parse();
        case Action::Kind::tls_handshake:
            if (status != IoStatus::ok) return fail(Reason::upstream_unavailable, "tls");
            // RFC 3207 4.2: the client must discard what it knew and start
            // over with EHLO.
            enter(State::tls_ehlo);
            return send("EHLO " + helo_name_ + "\r\n", cfg_.reply_timeout);
        case Action::Kind::close:
            enter(State::closed);
            return finish(std::move(result_));
        case Action::Kind::done:
            break;
    }
    // resume() without an outstanding Action: a bug in the I/O layer.
    return fail(Reason::upstream_failed, "reset");
}

// --- internals ---

Action UpstreamMachine::send(std::string bytes, std::chrono::seconds timeout) {
    out_ = std::move(bytes);
    pending_ = Action::Kind::send;
    Action a = make(Action::Kind::send, timeout);
    a.bytes = out_;
    return a;
}

Action UpstreamMachine::await_reply() {
    observer_.reply_wait(reply_step());
    return parse();
}

// Replies already received (a relay may send several, RFC 2920) come first.
Action UpstreamMachine::parse() {
    if (!rbuf_.empty()) {
        auto ev = parser_.feed(rbuf_);
        rbuf_.erase(0, ev.consumed);
        if (ev.kind == smtp::ReplyEvent::Kind::reply) {
            observer_.reply_received(reply_step());
            return on_reply(std::move(ev.reply));
        }
        if (ev.kind == smtp::ReplyEvent::Kind::error)
            return fail(Reason::upstream_failed, "protocol");
    }
    pending_ = Action::Kind::read;
    return make(Action::Kind::read, reply_timeout());
}

Action UpstreamMachine::on_reply(smtp::Reply reply) {
    switch (state_) {
        case State::greeting:
            if (reply.code != 220) return fail(Reason::upstream_unavailable, "refused");
            enter(State::ehlo);
            return send("EHLO " + helo_name_ + "\r\n", cfg_.reply_timeout);
        case State::ehlo:
        case State::tls_ehlo:
        case State::xclient_ehlo:
            return on_ehlo(std::move(reply));
        case State::starttls:
            if (reply.code != 220) {
                if (cfg_.starttls == config::UpstreamTls::required)
                    return fail(Reason::upstream_unavailable, "tls");
                return maybe_xclient();  // opportunistic: stay in clear text
            }
            // Nothing may be buffered past the 220 (RFC 3207 6): it would be
            // taken as coming from inside TLS (command injection).
            if (!rbuf_.empty()) return fail(Reason::upstream_failed, "protocol");
            enter(State::tls_handshake);
            server_name_ = cfg_.verify_name.empty() ? cfg_.host : cfg_.verify_name;
            {
                pending_ = Action::Kind::tls_handshake;
                Action a = make(Action::Kind::tls_handshake, cfg_.connect_timeout);
                a.server_name = server_name_;
                return a;
            }
        case State::resetting:
            // The pooled connection answers. The relay already knows this
            // client, or is told now.
            if (reply.code != 250) return fail(Reason::upstream_failed, "reset");
            if (announced_ && *announced_ == client_) return finish(ehlo_result());
            return maybe_xclient();
        case State::xclient:
            // Postfix restarts with 220; smtp-sink answers 250. Either way:
            // EHLO again, with the client's own name (XCLIENT_README's
            // example; Postfix records the name of this EHLO, not HELO=).
            if (reply.code / 100 != 2) return fail(Reason::upstream_unavailable, "refused");
            enter(State::xclient_ehlo);
            return send("EHLO " + (client_.helo.empty() ? helo_name_ : client_.helo) + "\r\n",
                        cfg_.reply_timeout);
        case State::command:
            if (rset_ahead_) {
                // The deferred health check of a pooled connection.
                if (reply.code != 250) return fail(Reason::upstream_failed, "reset");
                rset_ahead_ = false;
                return await_reply();
            }
            if (std::exchange(then_rcpt_, false)) {
                // The MAIL's reply of a pipelined group: the RCPT's follows
                // (perhaps already in rbuf_).
                mail_reply_ = std::move(reply);
                step_ = Step::rcpt;
                return await_reply();
            }
            [[fallthrough]];
        case State::commit: {
            Result r;
            r.ok = true;
            if (mail_reply_) {
                r.reply = std::move(*mail_reply_);
                r.rcpt_reply = std::move(reply);
                mail_reply_.reset();
            } else {
                r.reply = std::move(reply);
            }
            return finish(std::move(r));
        }
        default:
            break;
    }
    return fail(Reason::upstream_failed, "protocol");  // unreachable: no reply awaited
}

Action UpstreamMachine::on_ehlo(smtp::Reply reply) {
    if (reply.code != 250) return fail(Reason::upstream_unavailable, "refused");
    caps_ = std::make_shared<const smtp::EhloCapabilities>(smtp::parse_ehlo_capabilities(reply));
    return after_ehlo();
}

Action UpstreamMachine::after_ehlo() {
    if (state_ == State::xclient_ehlo) return finish(ehlo_result());
    if (state_ == State::ehlo && tls_wanted_) {
        if (!caps_->has("STARTTLS")) {
            if (cfg_.starttls == config::UpstreamTls::required)
                return fail(Reason::upstream_unavailable, "tls");
            return maybe_xclient();  // opportunistic: stay in clear text
        }
        enter(State::starttls);
        return send("STARTTLS\r\n", cfg_.reply_timeout);
    }
    return maybe_xclient();
}

bool UpstreamMachine::announces() const {
    return cfg_.xclient && offers_xclient("ADDR") && !client_.addr.empty();
}

// XCLIENT (Postfix XCLIENT_README) tells the signer the real client, so its
// logs and its own checks see it. Only announced attributes are sent, and
// without ADDR there is nothing worth sending. Every attribute is sent each
// time ([UNAVAILABLE] when unknown): the relay keeps the value of one left
// out, and on a pooled connection that value would be the last client's.
Action UpstreamMachine::maybe_xclient() {
    if (announces()) {
        std::string line = "XCLIENT ADDR=" + xtext(client_.addr);
        if (offers_xclient("HELO"))
            line += " HELO=" + (client_.helo.empty() ? "[UNAVAILABLE]" : xtext(client_.helo));
        if (offers_xclient("PROTO")) line += " PROTO=ESMTP";
        line += "\r\n";
        announced_ = client_;
        enter(State::xclient);
        return send(std::move(line), cfg_.reply_timeout);
    }
    // A reused connection that told the relay about another client must
    // not carry this one's mail under that client's name.
    if (announced_) return fail(Reason::upstream_failed, "protocol");
    return finish(ehlo_result());
}

Result UpstreamMachine::ehlo_result() const {
    Result r;
    r.ok = true;
    r.reply.code = 250;  // the EHLO's (on_ehlo takes no other)
    r.capabilities = caps_;
    return r;
}

bool UpstreamMachine::offers_xclient(std::string_view attribute) const {
    const auto* attrs = caps_->params("XCLIENT");
    return attrs && std::find(attrs->begin(), attrs->end(), attribute) != attrs->end();
}

Action UpstreamMachine::finish(Result result) {
    if (state_ != State::closed) enter(State::ready);
    pending_ = Action::Kind::done;
    Action a = make(Action::Kind::done);
    a.result = std::move(result);
    return a;
}

Action UpstreamMachine::fail(Reason reason, std::string_view kind) {
    // A pooled connection that fails its health check is the pool's
    // business (the relay closed it while idle), not a relay error.
    const bool stale = state_ == State::resetting || rset_ahead_;
    if (!stale) observer_.failed(kind);
    rset_pending_ = rset_ahead_ = false;
    then_rcpt_ = false;
    mail_reply_.reset();
    rbuf_.clear();
    parser_.reset();
    result_ = Result{};
    result_.ok = false;
    result_.failure = reason;
    result_.stale = stale;
    enter(State::closing);
    pending_ = Action::Kind::close;
    return make(Action::Kind::close);
}

Action UpstreamMachine::not_ready() {
    return fail(Reason::upstream_failed, "reset");
}

Step UpstreamMachine::reply_step() const {
    switch (state_) {
        case State::greeting:
            return Step::greeting;
        case State::starttls:
            return Step::starttls;
        case State::xclient:
            return Step::xclient;
        case State::resetting:
            return Step::rset;
        case State::command:
            return rset_ahead_ ? Step::rset : step_;
        case State::ehlo:
        case State::tls_ehlo:
        case State::xclient_ehlo:
            return Step::ehlo;
        default:
            return step_;  // command, commit
    }
}

std::chrono::seconds UpstreamMachine::reply_timeout() const {
    switch (state_) {
        case State::greeting:
            return cfg_.connect_timeout;
        case State::commit:
            // RFC 5321 4.5.3.2.6: the final reply may take 10 minutes.
            return cfg_.final_reply_timeout;
        default:
            return cfg_.reply_timeout;
    }
}

}  // namespace relaygate::upstream
