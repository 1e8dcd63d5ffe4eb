// UpstreamClient: the gateway's SMTP client connection to the signing relay.
// It performs one upstream step at a time for the session runner (connect +
// greeting + EHLO + XCLIENT, a command, a data write, the commit) by running
// the actions of upstream::UpstreamMachine, which decides every step and
// timeout; this class only moves bytes (with a beast deadline on each
// operation) and records metrics from what the machine reports.
#pragma once

#include <array>
#include <chrono>
#include <string>

#include "gateway/config/config.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/server/smtp_stream.hpp"
#include "gateway/session/session.hpp"
#include "gateway/upstream/upstream_machine.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

using XclientInfo = upstream::XclientInfo;

class UpstreamClient {
  public:
    // `tls` is the client context for STARTTLS (null when upstream.starttls is off).
    UpstreamClient(net::asio::any_io_executor ex, const config::Upstream& cfg,
                   std::string helo_name, metrics::Metrics& metrics,
                   std::shared_ptr<net::asio::ssl::context> tls);
    UpstreamClient(const UpstreamClient&) = delete;
    UpstreamClient& operator=(const UpstreamClient&) = delete;

    net::awaitable<session::UpstreamResult> connect(const XclientInfo& client);
    // An idle connection from the pool, taken over for `client` (RSET, then
    // XCLIENT again; upstream::UpstreamMachine::reuse). On failure it is closed.
    // `defer_rset`: UpstreamMachine::reuse's; then the first command may
    // fail as stale().
    net::awaitable<session::UpstreamResult> reuse(const XclientInfo& client, bool defer_rset);
    // The last request failed because the pooled connection was dead.
    bool stale() const { return stale_; }
    // Open and clean enough to go back to the pool.
    bool idle_and_clean() const { return stream_ && machine_.idle_and_clean(); }
    // Can carry `client`'s mail next (upstream::UpstreamMachine::reusable_for).
    bool reusable_for(const XclientInfo& client) const {
        return stream_ && machine_.reusable_for(client);
    }
    // Already announced as `client` by XCLIENT: RSET alone takes it over.
    bool announced_as(const XclientInfo& client) const {
        return machine_.announced() && *machine_.announced() == client;
    }
    net::asio::any_io_executor get_executor() const { return ex_; }
    // `then_rcpt`: `lines` is MAIL + RCPT, pipelined (UpstreamMachine::command).
    net::awaitable<session::UpstreamResult> command(std::string lines, session::UpstreamStep step,
                                                    bool then_rcpt = false);
    net::awaitable<session::UpstreamResult> write(std::string bytes);
    net::awaitable<session::UpstreamResult> commit(std::string terminator);
    // Closes at once: mid-DATA, the relay discards the partial message.
    void abort();
    // Best-effort QUIT, then close.
    net::awaitable<void> quit();

  private:
    // Metrics from the machine's reports; the clock is read here.
    class Reporter : public upstream::Observer {
      public:
        explicit Reporter(metrics::Metrics& metrics) : metrics_(metrics) {}
        void reply_wait(upstream::Step step) override;
        void reply_received(upstream::Step step) override;
        void failed(std::string_view kind) override;

      private:
        metrics::Metrics& metrics_;
        std::chrono::steady_clock::time_point wait_start_;
    };

    // Performs actions until the machine is done.
    net::awaitable<session::UpstreamResult> run(upstream::Action action);
    net::awaitable<upstream::IoStatus> open_socket(std::chrono::seconds timeout);
    void close_socket();

    net::asio::any_io_executor ex_;
    const config::Upstream& cfg_;
    std::shared_ptr<net::asio::ssl::context> tls_;
    Reporter reporter_;
    metrics::Metrics& metrics_;
    upstream::UpstreamMachine machine_;
    std::optional<SmtpStream> stream_;
    std::array<char, 4096> rbuf_;
    bool stale_ = false;
};

}  // namespace relaygate::server
