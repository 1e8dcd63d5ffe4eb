// SmtpStream implementation: dispatches to the plain or the TLS stream.
#include "gateway/server/smtp_stream.hpp"

namespace relaygate::server {

using namespace net;

awaitable<std::size_t> SmtpStream::read_some(asio::mutable_buffer buf, error_code& ec) {
    // Our own timer instead of beast's expiry: on timeout it cancels the read
    // and the socket stays usable for the 421. The state is shared with the
    // timer handler, which may run after this frame is gone; both run on the
    // connection's thread, so `done` needs no lock.
    struct State {
        bool done = false;
        bool timed_out = false;
    };
    auto state = std::make_shared<State>();
    auto& lowest = tcp();
    lowest.expires_never();
    asio::steady_timer timer(lowest.get_executor(), deadline_);
    auto* socket = &lowest.socket();
    timer.async_wait([state, socket](const error_code& e) {
        if (e || state->done) return;
        state->timed_out = true;
        error_code ignored;
        socket->cancel(ignored);
    });
    std::size_t n = 0;
    if (tls_)
        n = co_await tls_->async_read_some(buf, asio::redirect_error(use_awaitable, ec));
    else
        n = co_await tcp_->async_read_some(buf, asio::redirect_error(use_awaitable, ec));
    state->done = true;
    timer.cancel();
    if (state->timed_out) ec = beast::error::timeout;
    co_return n;
}

awaitable<void> SmtpStream::write(asio::const_buffer buf, error_code& ec) {
    if (tls_)
        co_await asio::async_write(*tls_, buf, asio::redirect_error(use_awaitable, ec));
    else
        co_await asio::async_write(*tcp_, buf, asio::redirect_error(use_awaitable, ec));
}

awaitable<void> SmtpStream::handshake(asio::ssl::context& ctx, bool server,
                                      const std::string& server_name, error_code& ec) {
    tls_.emplace(std::move(*tcp_), ctx);
    tcp_.reset();
    if (!server && !server_name.empty()) {
        // RFC 6066 3: SNI carries host names only, never IP literals.
        error_code not_ip;
        asio::ip::make_address(server_name, not_ip);
        if (not_ip) SSL_set_tlsext_host_name(tls_->native_handle(), server_name.c_str());
        // Hostname check during verification (only effective with verify_peer).
        SSL_set1_host(tls_->native_handle(), server_name.c_str());
    }
    co_await tls_->async_handshake(
        server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
        asio::redirect_error(use_awaitable, ec));
}

void SmtpStream::close() {
    error_code ec;
    auto& t = tcp();
    t.socket().shutdown(tcp::socket::shutdown_both, ec);
    t.close();
}

}  // namespace relaygate::server
