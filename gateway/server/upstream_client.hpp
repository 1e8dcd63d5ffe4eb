// UpstreamClient: the gateway's SMTP client connection to the signing relay.
// It performs one upstream step at a time for the session runner (connect +
// greeting + EHLO + XCLIENT, a command, a data write, the commit) with a
// deadline on each, and turns every network fault into an UpstreamResult.
// It decides nothing about the message; the session machine does.
#pragma once

#include <chrono>
#include <string>

#include "gateway/config/config.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/server/smtp_stream.hpp"
#include "gateway/session/session.hpp"
#include "gateway/smtp/reply_parser.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

// What XCLIENT tells the relay about the real client (Postfix XCLIENT_README).
struct XclientInfo {
    std::string addr;
    std::string helo;
};

class UpstreamClient {
  public:
    // `tls` is the client context for STARTTLS (null when upstream.starttls is off).
    UpstreamClient(net::asio::any_io_executor ex, const config::Upstream& cfg,
                   std::string helo_name, metrics::Metrics& metrics,
                   std::shared_ptr<net::asio::ssl::context> tls);

    net::awaitable<session::UpstreamResult> connect(const XclientInfo& client);
    net::awaitable<session::UpstreamResult> command(std::string line, session::UpstreamStep step);
    net::awaitable<session::UpstreamResult> write(std::string bytes);
    net::awaitable<session::UpstreamResult> commit(std::string terminator);
    // Closes at once: mid-DATA, the relay discards the partial message.
    void abort();
    // Best-effort QUIT, then close.
    net::awaitable<void> quit();

  private:
    net::awaitable<session::UpstreamResult> read_reply(std::chrono::seconds timeout,
                                                       std::string_view step);
    net::awaitable<bool> send(std::string_view bytes, std::chrono::seconds timeout);
    session::UpstreamResult fail(Reason reason, std::string_view kind);
    net::awaitable<session::UpstreamResult> ehlo();
    net::awaitable<session::UpstreamResult> starttls(session::UpstreamResult ehlo_result);

    net::asio::any_io_executor ex_;
    const config::Upstream& cfg_;
    std::string helo_name_;
    metrics::Metrics& metrics_;
    std::shared_ptr<net::asio::ssl::context> tls_;
    std::optional<SmtpStream> stream_;
    smtp::ReplyParser parser_;
    std::string rbuf_;  // received, not yet parsed
    bool open_ = false;
};

}  // namespace relaygate::server
