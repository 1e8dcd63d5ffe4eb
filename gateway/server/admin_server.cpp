// Admin HTTP server: one coroutine per connection, keep-alive, small
// bounded requests, deadlines on every read.
#include "gateway/server/admin_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>

#include "gateway/metrics/metrics.hpp"
#include "gateway/ratelimit/store.hpp"
#include "gateway/server/accept_backoff.hpp"
#include "gateway/server/callback_awaitable.hpp"
#include "gateway/server/gzip.hpp"
#include "gateway/server/log.hpp"
#include "gateway/session/volume.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::server {

using namespace net;

namespace {

// One accept(2) that never blocks: the reactor said a connection was
// waiting, but somebody may have taken it (or the descriptor) since.
tcp::socket accept_now(tcp::acceptor& acceptor, error_code& ec) {
    tcp::socket socket(acceptor.get_executor());
    const int fd =
        ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        ec.assign(errno, boost::system::system_category());
        return socket;
    }
    socket.assign(acceptor.local_endpoint().protocol(), fd, ec);
    if (ec) ::close(fd);
    return socket;
}

}  // namespace

AdminServer::AdminServer(asio::io_context& io, tcp::endpoint endpoint,
                         const metrics::Metrics& metrics, const Health& health, Status status,
                         ratelimit::Store* limits)
    : acceptor_(io, endpoint),
      metrics_(metrics),
      health_(health),
      status_(std::move(status)),
      limits_(limits) {}

void AdminServer::start() {
    auto loop = [this]() -> awaitable<void> { co_await accept_loop(); };
    asio::co_spawn(acceptor_.get_executor(), loop, log_exception("admin accept loop"));
}

void AdminServer::stop() {
    error_code ec;
    acceptor_.close(ec);
}

awaitable<void> AdminServer::accept_loop() {
    AcceptBackoff backoff("admin", nullptr);  // metrics_ is const here: count SMTP only
    for (;;) {
        error_code ec;
        tcp::socket socket =
            co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        if (ec && AcceptBackoff::out_of_resources(ec) && spare_.held()) {
            backoff.on_error(ec);  // counted and logged like any failure
            socket = co_await accept_with_spare(ec);
        }
        if (ec) {
            spare_.acquire();
            co_await accept_pause(acceptor_, backoff.on_error(ec));
            continue;
        }
        backoff.on_success();
        auto handler = [this, s = std::move(socket)]() mutable -> awaitable<void> {
            co_await serve(std::move(s));
        };
        asio::co_spawn(acceptor_.get_executor(), std::move(handler),
                       log_exception("admin connection"));
    }
}

// Out of descriptors, accept(2) fails whether or not a client is waiting:
// wait until one is, then give up the spare descriptor to let it in (a
// liveness probe must not fail because SMTP clients hold every other
// descriptor). If somebody took the descriptor or the client went away,
// `ec` says so and the loop backs off.
awaitable<tcp::socket> AdminServer::accept_with_spare(error_code& ec) {
    co_await acceptor_.async_wait(tcp::acceptor::wait_read,
                                  asio::redirect_error(use_awaitable, ec));
    if (ec) co_return tcp::socket(acceptor_.get_executor());
    spare_.release();
    co_return accept_now(acceptor_, ec);
}

awaitable<void> AdminServer::serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(8192);
    for (;;) {
        stream.expires_after(std::chrono::seconds(30));
        http::request_parser<http::empty_body> parser;
        parser.header_limit(8192);
        error_code ec;
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
        if (ec) break;
        const auto& req = parser.get();

        http::response<http::string_body> res;
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        res.set(http::field::server, "relaygate");
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        if (path == "/limits/clear-hold" && req.method() == http::verb::post) {
            co_await clear_hold(stream, target, res);
        } else if (req.method() != http::verb::get) {
            res.result(http::status::method_not_allowed);
            res.set(http::field::content_type, "text/plain");
            res.body() = "method not allowed\n";
        } else if (path == "/metrics") {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.set(http::field::vary, "Accept-Encoding");
            res.body() = metrics_.serialize();
            const auto accept = req[http::field::accept_encoding];
            if (accepts_gzip(std::string_view(accept.data(), accept.size()))) {
                if (auto packed = gzip(res.body())) {
                    res.body() = std::move(*packed);
                    res.set(http::field::content_encoding, "gzip");
                }
            }
        } else if (path == "/livez") {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain");
            res.body() = "ok\n";
        } else if (path == "/readyz") {
            const bool ready = health_.ready();
            res.result(ready ? http::status::ok : http::status::service_unavailable);
            res.set(http::field::content_type, "application/json");
            auto body = nlohmann::json::object();
            body["ready"] = ready;
            body["policy_loaded"] = health_.policy_loaded.load();
            body["listeners_up"] = health_.listeners_up.load();
            body["draining"] = health_.draining.load();
            if (status_) status_(body);
            res.body() = body.dump() + "\n";
        } else {
            res.result(http::status::not_found);
            res.set(http::field::content_type, "text/plain");
            res.body() = "not found; try /metrics, /livez, /readyz, POST /limits/clear-hold\n";
        }
        res.prepare_payload();
        const bool keep = res.keep_alive();
        co_await http::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
        if (ec || !keep) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
    spare_.acquire();  // the descriptor just freed, if the spare was used
}

awaitable<void> AdminServer::clear_hold(beast::tcp_stream& stream, const std::string& target,
                                        http::response<http::string_body>& res) {
    res.set(http::field::content_type, "text/plain");
    error_code ec;
    const auto peer = stream.socket().remote_endpoint(ec);
    // An action, unlike a scrape: only from this host (kubectl exec, ssh),
    // whatever address the admin port listens on.
    if (ec || !peer.address().is_loopback()) {
        res.result(http::status::forbidden);
        res.body() = "operator actions are accepted from loopback only\n";
        co_return;
    }
    const auto q = target.find("?tenant=");
    const std::string tenant = q == std::string::npos ? std::string() : target.substr(q + 8);
    if (!policy::valid_name(tenant) || !limits_) {
        res.result(http::status::bad_request);
        res.body() = "usage: POST /limits/clear-hold?tenant=<tenant id>\n";
        co_return;
    }
    const bool cleared = co_await await_callback<bool>(
        [&](auto done) { limits_->clear_hold(session::volume_key(tenant), std::move(done)); });
    AuditLine("anomaly_hold_cleared").field("tenant", tenant).field("cleared", cleared).write();
    res.result(http::status::ok);
    res.body() = cleared ? "cleared\n" : "no hold\n";
}

}  // namespace relaygate::server
