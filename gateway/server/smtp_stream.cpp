// SmtpStream implementation: plain Asio socket operations (no beast
// tcp_stream: its composed operations cost allocations and a timer per
// call), each held to the deadline by one timer the stream reuses.
#include "gateway/server/smtp_stream.hpp"

namespace relaygate::server {

using namespace net;
using Clock = std::chrono::steady_clock;

SmtpStream::SmtpStream(tcp::socket socket)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      watch_(std::make_shared<Watch>()) {
    watch_->socket = &socket_;
    watch_->timer = &timer_;
}

SmtpStream::SmtpStream(asio::any_io_executor ex)
    : socket_(ex), timer_(ex), watch_(std::make_shared<Watch>()) {
    watch_->socket = &socket_;
    watch_->timer = &timer_;
}

SmtpStream::~SmtpStream() {
    // The timer's destructor cancels the pending wait: its handler runs
    // later, with operation_aborted, and touches nothing.
    watch_->socket = nullptr;
    watch_->timer = nullptr;
}

// Everything here and in the handler runs on the connection's thread, so
// the watch needs no lock.
void SmtpStream::wait(const std::shared_ptr<Watch>& watch, Clock::time_point at) {
    watch->waiting = true;
    watch->wait_until = at;
    watch->timer->expires_at(at);  // a pending wait ends with operation_aborted
    watch->timer->async_wait([watch](const error_code& e) {
        // Aborted: replaced by a sooner wait (which is pending now) or the
        // stream is gone.
        if (e == asio::error::operation_aborted || !watch->socket) return;
        watch->waiting = false;
        if (watch->op_deadline == Clock::time_point::max()) return;  // nothing in flight
        if (Clock::now() < watch->op_deadline) {
            wait(watch, watch->op_deadline);  // a later operation's deadline
            return;
        }
        watch->fired = true;
        error_code ignored;
        watch->socket->cancel(ignored);
    });
}

void SmtpStream::arm() {
    watch_->fired = false;
    watch_->op_deadline = deadline_;
    if (deadline_ == Clock::time_point::max()) return;
    // A pending wait that fires no later than this deadline re-arms itself.
    if (watch_->waiting && watch_->wait_until <= deadline_) return;
    wait(watch_, deadline_);
}

void SmtpStream::disarm(error_code& ec, bool close_on_timeout) {
    // The wait stays pending: it fires once, finds nothing in flight (or
    // the next operation, with its own deadline) and acts on that.
    watch_->op_deadline = Clock::time_point::max();
    if (!watch_->fired || ec != asio::error::operation_aborted) return;
    ec = beast::error::timeout;
    if (close_on_timeout) {
        error_code ignored;
        socket_.close(ignored);
    }
}

awaitable<void> SmtpStream::connect(const tcp::endpoint& endpoint, error_code& ec) {
    arm();
    co_await socket_.async_connect(endpoint, asio::redirect_error(use_awaitable, ec));
    disarm(ec, true);
}

awaitable<void> SmtpStream::connect(const tcp::resolver::results_type& endpoints, error_code& ec) {
    arm();
    co_await asio::async_connect(socket_, endpoints, asio::redirect_error(use_awaitable, ec));
    disarm(ec, true);
}

awaitable<void> SmtpStream::handshake(asio::ssl::context& ctx, bool server,
                                      const std::string& server_name, error_code& ec) {
    tls_.emplace(socket_, ctx);
    if (!server && !server_name.empty()) {
        // RFC 6066 3: SNI carries host names only, never IP literals.
        error_code not_ip;
        asio::ip::make_address(server_name, not_ip);
        if (not_ip) SSL_set_tlsext_host_name(tls_->native_handle(), server_name.c_str());
        // Hostname check during verification (only effective with verify_peer).
        SSL_set1_host(tls_->native_handle(), server_name.c_str());
    }
    arm();
    co_await tls_->async_handshake(
        server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
        asio::redirect_error(use_awaitable, ec));
    disarm(ec, true);
}

void SmtpStream::close() {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
}

}  // namespace relaygate::server
