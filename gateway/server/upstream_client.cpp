// UpstreamClient implementation. Every operation has a deadline (beast
// tcp_stream); a timeout or any error closes the connection, because an SMTP
// stream in an unknown state must never carry another command.
#include "gateway/server/upstream_client.hpp"

#include <algorithm>

#include "gateway/metrics/metrics.hpp"
#include "gateway/smtp/ehlo_capabilities.hpp"

namespace relaygate::server {

using namespace net;
using session::UpstreamResult;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// XCLIENT attribute values are xtext (RFC 1891 5, Postfix XCLIENT_README).
std::string xtext(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (c < 33 || c > 126 || c == '+' || c == '=') {
            out += '+';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}
}  // namespace

UpstreamClient::UpstreamClient(asio::any_io_executor ex, const config::Upstream& cfg,
                               std::string helo_name, metrics::Metrics& metrics,
                               std::shared_ptr<asio::ssl::context> tls)
    : ex_(ex),
      cfg_(cfg),
      helo_name_(std::move(helo_name)),
      metrics_(metrics),
      tls_(std::move(tls)) {}

UpstreamResult UpstreamClient::fail(Reason reason, std::string_view kind) {
    metrics_.upstream_error(kind);
    abort();
    UpstreamResult r;
    r.ok = false;
    r.failure = reason;
    return r;
}

void UpstreamClient::abort() {
    if (stream_) stream_->close();
    stream_.reset();
    open_ = false;
    rbuf_.clear();
    parser_.reset();
}

awaitable<bool> UpstreamClient::send(std::string_view bytes, std::chrono::seconds timeout) {
    if (!stream_) co_return false;
    error_code ec;
    stream_->expires_after(timeout);
    co_await stream_->write(asio::buffer(bytes.data(), bytes.size()), ec);
    co_return !ec;
}

awaitable<UpstreamResult> UpstreamClient::read_reply(std::chrono::seconds timeout,
                                                     std::string_view step) {
    const auto t0 = Clock::now();
    std::array<char, 4096> buf;
    for (;;) {
        if (!rbuf_.empty()) {
            auto ev = parser_.feed(rbuf_);
            rbuf_.erase(0, ev.consumed);
            if (ev.kind == smtp::ReplyEvent::Kind::reply) {
                metrics_.upstream_reply_latency(step, since(t0));
                UpstreamResult r;
                r.ok = true;
                r.reply = std::move(ev.reply);
                co_return r;
            }
            if (ev.kind == smtp::ReplyEvent::Kind::error)
                co_return fail(Reason::upstream_failed, "protocol");
        }
        if (!stream_) co_return fail(Reason::upstream_failed, "reset");
        error_code ec;
        stream_->expires_after(timeout);
        const std::size_t n = co_await stream_->read_some(asio::buffer(buf), ec);
        if (ec == beast::error::timeout) co_return fail(Reason::upstream_timeout, "timeout");
        if (ec) co_return fail(Reason::upstream_failed, "reset");
        rbuf_.append(buf.data(), n);
    }
}

awaitable<UpstreamResult> UpstreamClient::ehlo() {
    if (!co_await send("EHLO " + helo_name_ + "\r\n", cfg_.reply_timeout))
        co_return fail(Reason::upstream_failed, "reset");
    auto r = co_await read_reply(cfg_.reply_timeout, "ehlo");
    if (r.ok && r.reply.code != 250) co_return fail(Reason::upstream_unavailable, "refused");
    if (r.ok) r.capabilities = smtp::parse_ehlo_capabilities(r.reply);
    co_return r;
}

awaitable<UpstreamResult> UpstreamClient::starttls(UpstreamResult ehlo_result) {
    const bool required = cfg_.starttls == config::UpstreamTls::required;
    if (!ehlo_result.capabilities.has("STARTTLS")) {
        if (required) co_return fail(Reason::upstream_unavailable, "tls");
        co_return ehlo_result;  // opportunistic: stay in clear text
    }
    if (!co_await send("STARTTLS\r\n", cfg_.reply_timeout))
        co_return fail(Reason::upstream_failed, "reset");
    auto r = co_await read_reply(cfg_.reply_timeout, "starttls");
    if (!r.ok) co_return r;
    if (r.reply.code != 220) {
        if (required) co_return fail(Reason::upstream_unavailable, "tls");
        co_return ehlo_result;
    }
    // Nothing may be buffered past the 220 (RFC 3207 6).
    if (!rbuf_.empty()) co_return fail(Reason::upstream_failed, "protocol");
    error_code ec;
    stream_->expires_after(cfg_.connect_timeout);
    const std::string name = cfg_.verify_name.empty() ? cfg_.host : cfg_.verify_name;
    co_await stream_->handshake(*tls_, false, name, ec);
    if (ec) co_return fail(Reason::upstream_unavailable, "tls");
    auto again = co_await ehlo();  // RFC 3207 4.2: start over
    co_return again;
}

awaitable<UpstreamResult> UpstreamClient::connect(const XclientInfo& client) {
    const auto t0 = Clock::now();
    abort();
    error_code ec;
    stream_.emplace(ex_);
    stream_->expires_after(cfg_.connect_timeout);
    // An IP literal needs no resolver (which would hop to Asio's resolver
    // thread on every connection).
    const auto literal = asio::ip::make_address(cfg_.host, ec);
    if (!ec) {
        co_await stream_->tcp().async_connect(tcp::endpoint(literal, cfg_.port),
                                              asio::redirect_error(use_awaitable, ec));
    } else {
        tcp::resolver resolver(ex_);
        ec.clear();
        auto endpoints = co_await resolver.async_resolve(cfg_.host, std::to_string(cfg_.port),
                                                         asio::redirect_error(use_awaitable, ec));
        if (!ec)
            co_await stream_->tcp().async_connect(endpoints,
                                                  asio::redirect_error(use_awaitable, ec));
    }
    if (ec) co_return fail(Reason::upstream_unavailable, "connect");
    open_ = true;
    stream_->tcp().socket().set_option(tcp::no_delay(true), ec);

    auto greeting = co_await read_reply(cfg_.connect_timeout, "greeting");
    if (!greeting.ok) co_return greeting;
    if (greeting.reply.code != 220) co_return fail(Reason::upstream_unavailable, "refused");

    auto r = co_await ehlo();
    if (!r.ok) co_return r;
    if (tls_ && cfg_.starttls != config::UpstreamTls::off) {
        r = co_await starttls(std::move(r));
        if (!r.ok) co_return r;
    }
    // XCLIENT (Postfix XCLIENT_README) tells the signer the real client, so
    // its logs and its own checks see it. Only announced attributes are sent,
    // and without ADDR there is nothing worth sending.
    const auto* attrs = r.capabilities.params("XCLIENT");
    auto offers = [&](std::string_view a) {
        return attrs && std::find(attrs->begin(), attrs->end(), a) != attrs->end();
    };
    if (cfg_.xclient && offers("ADDR") && !client.addr.empty()) {
        std::string line = "XCLIENT ADDR=" + xtext(client.addr);
        if (offers("HELO") && !client.helo.empty()) line += " HELO=" + xtext(client.helo);
        if (offers("PROTO")) line += " PROTO=ESMTP";
        line += "\r\n";
        if (!co_await send(line, cfg_.reply_timeout))
            co_return fail(Reason::upstream_failed, "reset");
        auto x = co_await read_reply(cfg_.reply_timeout, "xclient");
        if (!x.ok) co_return x;
        // Postfix restarts with 220; smtp-sink answers 250. Either way: EHLO again.
        if (x.reply.code / 100 != 2) co_return fail(Reason::upstream_unavailable, "refused");
        r = co_await ehlo();
        if (!r.ok) co_return r;
    }
    metrics_.upstream_connect_latency(since(t0));
    co_return r;
}

awaitable<UpstreamResult> UpstreamClient::command(std::string line, session::UpstreamStep step) {
    if (!open_) co_return fail(Reason::upstream_failed, "reset");
    if (!co_await send(line, cfg_.reply_timeout)) co_return fail(Reason::upstream_failed, "reset");
    auto r = co_await read_reply(cfg_.reply_timeout, session::to_string(step));
    co_return r;
}

awaitable<UpstreamResult> UpstreamClient::write(std::string bytes) {
    if (!open_) co_return fail(Reason::upstream_failed, "reset");
    // RFC 5321 4.5.3.2.5: 3 minutes per data block.
    if (!co_await send(bytes, std::chrono::seconds(180)))
        co_return fail(Reason::upstream_failed, "reset");
    UpstreamResult r;
    r.ok = true;
    co_return r;
}

awaitable<UpstreamResult> UpstreamClient::commit(std::string terminator) {
    if (!open_) co_return fail(Reason::upstream_failed, "reset");
    if (!co_await send(terminator, cfg_.reply_timeout))
        co_return fail(Reason::upstream_failed, "reset");
    auto r = co_await read_reply(cfg_.final_reply_timeout, "dot");
    co_return r;
}

awaitable<void> UpstreamClient::quit() {
    // The relay's 221 carries nothing we need; do not wait for it.
    if (open_) co_await send("QUIT\r\n", std::chrono::seconds(5));
    abort();
}

}  // namespace relaygate::server
