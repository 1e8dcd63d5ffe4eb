// SmtpStream: a TCP stream that may be upgraded to TLS mid-session
// (STARTTLS, RFC 3207) or start in TLS (RFC 8314 implicit TLS). It owns the
// socket and the deadlines; it knows nothing about SMTP itself.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "gateway/net/asio.hpp"

namespace relaygate::server {

class SmtpStream {
  public:
    explicit SmtpStream(net::tcp::socket socket) : tcp_(std::in_place, std::move(socket)) {}
    explicit SmtpStream(net::asio::any_io_executor ex) : tcp_(std::in_place, ex) {}

    net::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *tcp_; }
    bool tls() const { return tls_.has_value(); }
    SSL* native_tls() { return tls_ ? tls_->native_handle() : nullptr; }

    // Deadline of the next operation. Writes and handshakes use beast's
    // timeout, which closes the socket; a read that times out leaves the
    // socket open so that the session can still say "421" (RFC 5321 4.5.3.2).
    void expires_after(std::chrono::steady_clock::duration d) {
        deadline_ = std::chrono::steady_clock::now() + d;
        tcp().expires_after(d);
    }

    // On timeout, ec is beast::error::timeout and the socket stays open.
    net::awaitable<std::size_t> read_some(net::asio::mutable_buffer buf, net::error_code& ec);
    // Cancels a pending read (it completes with operation_aborted).
    void cancel() { tcp().socket().cancel(); }
    net::awaitable<void> write(net::asio::const_buffer buf, net::error_code& ec);

    // Wraps the connection in TLS and runs the handshake. For a client
    // handshake, `server_name` is sent as SNI and, when verification is on
    // in the context, checked against the certificate (RFC 6125).
    net::awaitable<void> handshake(net::asio::ssl::context& ctx, bool server,
                                   const std::string& server_name, net::error_code& ec);

    void close();

  private:
    std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
    std::optional<net::beast::tcp_stream> tcp_;
    std::optional<net::beast::ssl_stream<net::beast::tcp_stream>> tls_;
};

}  // namespace relaygate::server
