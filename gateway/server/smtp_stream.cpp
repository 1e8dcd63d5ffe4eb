// SmtpStream implementation: dispatches to the plain or the TLS stream.
#include "gateway/server/smtp_stream.hpp"

namespace relaygate::server {

using namespace net;

awaitable<std::size_t> SmtpStream::read_some(asio::mutable_buffer buf, error_code& ec) {
    std::size_t n = 0;
    if (tls_)
        n = co_await tls_->async_read_some(buf, asio::redirect_error(use_awaitable, ec));
    else
        n = co_await tcp_->async_read_some(buf, asio::redirect_error(use_awaitable, ec));
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
        SSL_set_tlsext_host_name(tls_->native_handle(), server_name.c_str());
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
