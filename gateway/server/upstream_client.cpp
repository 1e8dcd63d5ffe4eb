// UpstreamClient implementation: the I/O half of upstream::UpstreamMachine.
// Every operation has the machine's deadline (SmtpStream's timer); every
// outcome goes back to the machine, which closes on any fault.
#include "gateway/server/upstream_client.hpp"

#include "gateway/metrics/metrics.hpp"

namespace relaygate::server {

using namespace net;
using session::UpstreamResult;
using upstream::Action;
using upstream::IoStatus;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

UpstreamResult to_session(upstream::Result r) {
    UpstreamResult out;
    out.ok = r.ok;
    out.failure = r.failure;
    out.reply = std::move(r.reply);
    out.capabilities = std::move(r.capabilities);
    out.rcpt_reply = std::move(r.rcpt_reply);
    return out;
}

// The session's step names the reply's latency label; connect and write
// never reach command().
upstream::Step reply_step(session::UpstreamStep s) {
    switch (s) {
        case session::UpstreamStep::mail:
            return upstream::Step::mail;
        case session::UpstreamStep::rcpt:
            return upstream::Step::rcpt;
        case session::UpstreamStep::data:
        case session::UpstreamStep::write:
            return upstream::Step::data;
        case session::UpstreamStep::dot:
            return upstream::Step::dot;
        case session::UpstreamStep::rset:
            return upstream::Step::rset;
        case session::UpstreamStep::connect:
            return upstream::Step::ehlo;
    }
    return upstream::Step::rset;
}

IoStatus status_of(const error_code& ec) {
    if (!ec) return IoStatus::ok;
    return ec == beast::error::timeout ? IoStatus::timeout : IoStatus::error;
}
}  // namespace

void UpstreamClient::Reporter::reply_wait(upstream::Step) {
    wait_start_ = Clock::now();
}

void UpstreamClient::Reporter::reply_received(upstream::Step step) {
    metrics_.upstream_reply_latency(upstream::to_string(step), since(wait_start_));
}

void UpstreamClient::Reporter::failed(std::string_view kind) {
    metrics_.upstream_error(kind);
}

UpstreamClient::UpstreamClient(asio::any_io_executor ex, const config::Upstream& cfg,
                               std::string helo_name, metrics::Metrics& metrics,
                               std::shared_ptr<asio::ssl::context> tls)
    : ex_(ex),
      cfg_(cfg),
      tls_(std::move(tls)),
      reporter_(metrics),
      metrics_(metrics),
      machine_(cfg, std::move(helo_name), tls_ != nullptr, reporter_) {}

void UpstreamClient::close_socket() {
    if (stream_) stream_->close();
    stream_.reset();
}

void UpstreamClient::abort() {
    close_socket();
    machine_.abort();
}

awaitable<IoStatus> UpstreamClient::open_socket(std::chrono::seconds timeout) {
    close_socket();
    error_code ec;
    stream_.emplace(ex_);
    stream_->expires_after(timeout);
    // An IP literal needs no resolver (which would hop to Asio's resolver
    // thread on every connection).
    const auto literal = asio::ip::make_address(cfg_.host, ec);
    if (!ec) {
        co_await stream_->connect(tcp::endpoint(literal, cfg_.port), ec);
    } else {
        tcp::resolver resolver(ex_);
        ec.clear();
        auto endpoints = co_await resolver.async_resolve(cfg_.host, std::to_string(cfg_.port),
                                                         asio::redirect_error(use_awaitable, ec));
        if (!ec) co_await stream_->connect(endpoints, ec);
    }
    if (ec) co_return IoStatus::error;
    stream_->socket().set_option(tcp::no_delay(true), ec);
    co_return IoStatus::ok;
}

awaitable<UpstreamResult> UpstreamClient::run(Action a) {
    for (;;) {
        switch (a.kind) {
            case Action::Kind::connect: {
                const IoStatus st = co_await open_socket(a.timeout);
                a = machine_.resume(st);
                break;
            }
            case Action::Kind::send: {
                error_code ec = asio::error::not_connected;
                if (stream_) {
                    ec.clear();
                    stream_->expires_after(a.timeout);
                    co_await stream_->write(asio::buffer(a.bytes.data(), a.bytes.size()), ec);
                }
                a = machine_.resume(status_of(ec));
                break;
            }
            case Action::Kind::read: {
                error_code ec = asio::error::not_connected;
                std::size_t n = 0;
                if (stream_) {
                    ec.clear();
                    stream_->expires_after(a.timeout);
                    co_await stream_->read_some(asio::buffer(rbuf_), ec, n);
                }
                a = machine_.resume(status_of(ec), std::string_view(rbuf_.data(), n));
                break;
            }
            case Action::Kind::tls_handshake: {
                error_code ec = asio::error::not_connected;
                if (stream_ && tls_) {
                    ec.clear();
                    stream_->expires_after(a.timeout);
                    co_await stream_->handshake(*tls_, false, std::string(a.server_name), ec);
                }
                a = machine_.resume(status_of(ec));
                break;
            }
            case Action::Kind::close:
                close_socket();
                a = machine_.resume(IoStatus::ok);
                break;
            case Action::Kind::done:
                stale_ = a.result.stale;
                co_return to_session(std::move(a.result));
        }
    }
}

// Each request's first action is bound to a name before co_await (g++ 12
// mishandles temporaries inside a co_await expression).
awaitable<UpstreamResult> UpstreamClient::connect(const XclientInfo& client) {
    const auto t0 = Clock::now();
    Action first = machine_.open(client);
    auto r = co_await run(std::move(first));
    if (r.ok) metrics_.upstream_connect_latency(since(t0));
    co_return r;
}

// Not coroutines themselves: the caller awaits run()'s frame directly, one
// frame allocation per request fewer (Boost 1.74 rarely recycles them).
awaitable<UpstreamResult> UpstreamClient::reuse(const XclientInfo& client, bool defer_rset) {
    return run(machine_.reuse(client, defer_rset));
}

awaitable<UpstreamResult> UpstreamClient::command(std::string lines, session::UpstreamStep step,
                                                  bool then_rcpt) {
    if (then_rcpt) metrics_.upstream_pipelined();
    return run(machine_.command(std::move(lines), reply_step(step), then_rcpt));
}

awaitable<UpstreamResult> UpstreamClient::write(std::string bytes) {
    return run(machine_.write(std::move(bytes)));
}

awaitable<UpstreamResult> UpstreamClient::commit(std::string terminator) {
    return run(machine_.commit(std::move(terminator)));
}

awaitable<void> UpstreamClient::quit() {
    Action first = machine_.quit();
    co_await run(std::move(first));
}

}  // namespace relaygate::server
