// UpstreamMachine: the gateway's SMTP client side (to the signing relay) as a
// pure state machine, in the style of Boost.MySQL's sans-I/O next_action loop.
// It decides every step (greeting, EHLO, STARTTLS, XCLIENT, commands, data,
// the commit, QUIT) and every timeout; it must never include Asio, read a
// clock or touch a socket: the I/O layer performs each Action and resumes it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/common/reason.hpp"
#include "gateway/config/config.hpp"
#include "gateway/smtp/ehlo_capabilities.hpp"
#include "gateway/smtp/reply.hpp"
#include "gateway/smtp/reply_parser.hpp"

namespace relaygate::upstream {

// What XCLIENT tells the relay about the real client (Postfix XCLIENT_README).
struct XclientInfo {
    std::string addr;
    std::string helo;
    bool operator==(const XclientInfo&) const = default;
};

// The reply being waited for; also the metric label of its latency.
enum class Step : std::uint8_t { greeting, ehlo, starttls, xclient, mail, rcpt, data, dot, rset };
std::string_view to_string(Step s);

// The outcome of one request (open, command, write, commit, quit).
struct Result {
    bool ok = false;  // false: connection failed, timed out or broke (it is closed)
    Reason failure = Reason::upstream_failed;  // when !ok
    // open and reuse: 250, the EHLO's code (what it offers is in
    // `capabilities`); command/commit: the reply.
    smtp::Reply reply;
    // open: the last EHLO's capabilities (shared: a pooled connection's
    // reuse hands them out without a copy).
    std::shared_ptr<const smtp::EhloCapabilities> capabilities;
    // command() with then_rcpt: the reply to the RCPT pipelined after the
    // MAIL (RFC 2920); `reply` is the MAIL's.
    std::optional<smtp::Reply> rcpt_reply;
    // !ok because a connection taken from the pool was found dead by its
    // RSET (reuse(), or the RSET that went ahead of the first command):
    // nothing of the request reached a live relay.
    bool stale = false;
};

// The next thing the I/O layer must do, then report with resume().
struct Action {
    enum class Kind : std::uint8_t {
        connect,        // open a new connection to upstream.host:port (replacing any old one)
        send,           // write all of `bytes`
        read,           // read some bytes; resume() with them
        tls_handshake,  // TLS client handshake, SNI and verified name `server_name`
        close,          // close the connection now; resume() with IoStatus::ok
        done,           // the request is finished: `result`
    };
    Kind kind = Kind::done;
    std::chrono::seconds timeout{0};  // connect, send, read, tls_handshake
    // send: the octets, tls_handshake: the name. Views into the machine,
    // valid until the next call into it.
    std::string_view bytes;
    std::string_view server_name;
    Result result;  // done
};

// How the I/O layer's last operation ended.
enum class IoStatus : std::uint8_t { ok, timeout, error };

enum class State : std::uint8_t {
    closed,         // no connection
    connecting,     // connect handed out
    greeting,       // waiting for the relay's 220
    ehlo,           // first EHLO sent
    starttls,       // STARTTLS sent, waiting for 220
    tls_handshake,  // TLS handshake handed out
    tls_ehlo,       // EHLO again inside TLS (RFC 3207 4.2)
    xclient,        // XCLIENT sent
    xclient_ehlo,   // EHLO again after XCLIENT (the relay restarted the session)
    resetting,      // RSET sent: the health check of a pooled connection taken for reuse
    ready,          // open, nothing outstanding
    command,        // MAIL/RCPT/DATA/RSET sent, waiting for its reply
    data_write,     // a block of message data being written
    commit,         // the final "." sent, waiting for the final reply
    quitting,       // QUIT being written
    closing,        // close handed out; then done
};
std::string_view to_string(State s);

// What the machine reports, for metrics and logs; the I/O layer timestamps.
// Defaults do nothing.
class Observer {
  public:
    virtual ~Observer() = default;
    // A reply for `step` is awaited from now on (its latency starts).
    virtual void reply_wait(Step /*step*/) {}
    virtual void reply_received(Step /*step*/) {}
    // kind: connect | timeout | reset | protocol | refused | tls
    virtual void failed(std::string_view /*kind*/) {}
    virtual void transition(State /*from*/, State /*to*/) {}
};

// One upstream connection. A request (open, command, write, commit, quit)
// returns the first Action; every Action except `done` is performed by the
// I/O layer and reported with resume(), until `done`. One request at a time.
class UpstreamMachine {
  public:
    // `tls_available`: a TLS client context exists (STARTTLS is attempted
    // only with one and upstream.starttls not off).
    UpstreamMachine(const config::Upstream& cfg, std::string helo_name, bool tls_available,
                    Observer& observer);
    UpstreamMachine(const UpstreamMachine&) = delete;
    UpstreamMachine& operator=(const UpstreamMachine&) = delete;

    // Connect, greeting, EHLO, STARTTLS and XCLIENT as configured and offered.
    Action open(XclientInfo client);
    // Takes an open, idle connection over for a client (the upstream
    // connection pool): RSET as its health check, then, if the connection
    // told the relay about another client, XCLIENT with every attribute of
    // this one, so nothing of the last client survives. done carries the
    // EHLO capabilities and code, as open() does. Needs reusable_for(client).
    // With `defer_rset`, when the relay offers PIPELINING and nothing needs
    // to be announced, done comes at once and the RSET goes ahead of the
    // next command in its write (RFC 2920): the health check costs no round
    // trip of its own. A dead connection then fails that command as stale.
    Action reuse(XclientInfo client, bool defer_rset = false);
    // One command line (with CRLF); done carries the reply. Needs ready().
    // With `then_rcpt`, `lines` is a MAIL line and a RCPT line, written
    // together (RFC 2920 pipelining; only to a relay that offers it): done
    // carries both replies, once both have arrived.
    Action command(std::string lines, Step step, bool then_rcpt = false);
    // Dot-stuffed message data; done carries ok only.
    Action write(std::string bytes);
    // The end-of-data terminator; done carries the final reply.
    Action commit(std::string terminator);
    // Best-effort QUIT (the 221 carries nothing we need), then close.
    Action quit();
    // The I/O layer closed the connection at once (mid-DATA: the relay
    // discards the partial message). No action follows.
    void abort();

    // The outcome of the last Action; `received` for a read.
    Action resume(IoStatus status, std::string_view received = {});

    State state() const { return state_; }
    bool ready() const { return state_ == State::ready; }
    // Open with nothing outstanding or buffered, and nothing told to the
    // relay about another client that could not be told again: either no
    // XCLIENT was sent, or it named this very client, or the relay still
    // offers XCLIENT (Postfix withdraws it once the announced address is
    // not itself in smtpd_authorized_xclient_hosts).
    bool reusable_for(const XclientInfo& client) const;
    // Open with nothing outstanding or buffered.
    bool idle_and_clean() const { return ready() && rbuf_.empty(); }
    // Heap bytes the machine keeps between requests (its send and receive
    // buffers): an idle connection must not keep a block of message data.
    std::size_t held_bytes() const { return out_.capacity() + rbuf_.capacity(); }
    // The client XCLIENT announced on this connection, if any.
    const std::optional<XclientInfo>& announced() const { return announced_; }

  private:
    void enter(State next);
    Action send(std::string bytes, std::chrono::seconds timeout);
    Action await_reply();
    Action parse();
    Action on_reply(smtp::Reply reply);
    Action on_ehlo(smtp::Reply reply);
    Action after_ehlo();
    Action maybe_xclient();
    bool offers_xclient(std::string_view attribute) const;
    // maybe_xclient() would tell the relay about client_.
    bool announces() const;
    // ok, with the last EHLO's capabilities and code (250).
    Result ehlo_result() const;
    Action finish(Result result);
    Action fail(Reason reason, std::string_view kind);
    Action not_ready();
    Step reply_step() const;
    std::chrono::seconds reply_timeout() const;

    const config::Upstream& cfg_;
    std::string helo_name_;
    bool tls_wanted_;
    Observer& observer_;

    State state_ = State::closed;
    Action::Kind pending_ = Action::Kind::done;  // the Action handed out last
    Step step_ = Step::greeting;                 // the command's reply step
    bool then_rcpt_ = false;                     // a pipelined RCPT's reply follows
    bool rset_pending_ = false;                  // reuse() deferred its RSET to the next command
    bool rset_ahead_ = false;                    // that RSET's reply comes before the command's
    std::optional<smtp::Reply> mail_reply_;      // the first reply of a MAIL + RCPT group
    XclientInfo client_;
    std::optional<XclientInfo> announced_;  // XCLIENT sent on this connection
    std::string out_;                       // the octets of the current send
    std::string server_name_;               // of the current tls_handshake
    smtp::ReplyParser parser_;
    std::string rbuf_;  // received, not yet parsed
    std::shared_ptr<const smtp::EhloCapabilities> caps_ =
        std::make_shared<const smtp::EhloCapabilities>();  // never null
    Result result_;                                        // delivered after a close
};

}  // namespace relaygate::upstream
