// SmtpStream: a TCP stream that may be upgraded to TLS mid-session
// (STARTTLS, RFC 3207) or start in TLS (RFC 8314 implicit TLS). It owns the
// socket and the deadlines; it knows nothing about SMTP itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "gateway/net/asio.hpp"
#include "gateway/net/frame_op.hpp"

namespace relaygate::server {

class SmtpStream {
  public:
    explicit SmtpStream(net::tcp::socket socket);
    explicit SmtpStream(net::asio::any_io_executor ex);
    ~SmtpStream();
    SmtpStream(const SmtpStream&) = delete;
    SmtpStream& operator=(const SmtpStream&) = delete;

    net::tcp::socket& socket() { return socket_; }
    net::asio::any_io_executor get_executor() { return socket_.get_executor(); }
    bool tls() const { return tls_.has_value(); }
    SSL* native_tls() { return tls_ ? tls_->native_handle() : nullptr; }

    // Deadline of the next operations (until changed). An operation that
    // passes it fails with beast::error::timeout. A read leaves the socket
    // open so that the session can still say "421" (RFC 5321 4.5.3.2);
    // a write, connect or handshake closes it.
    void expires_after(std::chrono::steady_clock::duration d) {
        deadline_ = std::chrono::steady_clock::now() + d;
    }

    // `co_await read_some(buf, ec, n)` and `co_await write(buf, ec)`: awaited
    // in the caller's coroutine frame, with the operation block in the
    // stream (net::in_frame): no heap allocation per read or write.
    auto read_some(net::asio::mutable_buffer buf, net::error_code& ec, std::size_t& n) {
        return net::in_frame(
            read_slot_,
            [this, buf](auto handler) {
                arm();
                if (tls_)
                    tls_->async_read_some(buf, std::move(handler));
                else
                    socket_.async_read_some(buf, std::move(handler));
            },
            [this, &ec, &n](const net::error_code& e, std::size_t k) {
                ec = e;
                n = k;
                disarm(ec, false);
            });
    }
    // Cancels a pending read (it completes with operation_aborted).
    void cancel() {
        net::error_code ignored;
        socket_.cancel(ignored);
    }
    auto write(net::asio::const_buffer buf, net::error_code& ec) {
        return net::in_frame(
            write_slot_,
            [this, buf](auto handler) {
                arm();
                if (tls_)
                    net::asio::async_write(*tls_, buf, std::move(handler));
                else
                    net::asio::async_write(socket_, buf, std::move(handler));
            },
            [this, &ec](const net::error_code& e, std::size_t) {
                ec = e;
                disarm(ec, true);
            });
    }
    net::awaitable<void> connect(const net::tcp::endpoint& endpoint, net::error_code& ec);
    net::awaitable<void> connect(const net::tcp::resolver::results_type& endpoints,
                                 net::error_code& ec);

    // Wraps the connection in TLS and runs the handshake. For a client
    // handshake, `server_name` is sent as SNI and, when verification is on
    // in the context, checked against the certificate (RFC 6125).
    net::awaitable<void> handshake(net::asio::ssl::context& ctx, bool server,
                                   const std::string& server_name, net::error_code& ec);

    void close();

  private:
    // What the deadline timer's handler needs. Shared with it: a handler
    // may run after the operation it watched (then `op_deadline` is
    // another operation's, or none) or after the stream is gone (then
    // `socket` and `timer` are null).
    //
    // One wait at a time, not one per operation: arm() only records the
    // operation's deadline, and starts a wait only when none is pending or
    // the pending one would fire too late. When the wait fires it cancels
    // the operation in flight if its deadline passed, else waits again
    // for it. Operations a few milliseconds apart, each with a deadline
    // seconds away, then cost no timer operation (and no allocation) each.
    struct Watch {
        bool fired = false;    // this wait cancelled the operation in flight
        bool waiting = false;  // a wait is pending, until `wait_until`
        std::chrono::steady_clock::time_point wait_until{};
        // The operation in flight's deadline; max: none in flight.
        std::chrono::steady_clock::time_point op_deadline =
            std::chrono::steady_clock::time_point::max();
        net::tcp::socket* socket = nullptr;
        net::asio::steady_timer* timer = nullptr;
    };
    static void wait(const std::shared_ptr<Watch>& watch, std::chrono::steady_clock::time_point at);
    // Around each operation: arm() records its deadline, disarm() ends it
    // and turns the cancelled operation's error into a timeout (closing
    // the socket when asked). Not a wrapping coroutine: every coroutine
    // frame on the data path is an allocation.
    void arm();
    void disarm(net::error_code& ec, bool close_on_timeout);

    std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
    net::tcp::socket socket_;
    std::optional<net::asio::ssl::stream<net::tcp::socket&>> tls_;
    net::asio::steady_timer timer_;
    std::shared_ptr<Watch> watch_;
    net::HandlerSlot read_slot_;
    net::HandlerSlot write_slot_;
};

}  // namespace relaygate::server
