// DnsResolver implementation. Each network lookup runs as its own coroutine
// on a fresh strand, so the socket, its watchdog timer and the coroutine
// never touch the same object from two threads. RFC 5452 (forgery
// resilience): random id and source port per query, and a reply counts only
// if it comes from the server queried and answers the question asked.
#include "gateway/server/dns_resolver.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>

#include "gateway/dns/resolv_conf.hpp"
#include "gateway/metrics/metrics.hpp"

namespace relaygate::server {

using namespace net;
using udp = asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::uint16_t random_id() {
    std::array<unsigned char, 2> b{};
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
        thread_local std::random_device rd;
        return static_cast<std::uint16_t>(rd());
    }
    return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}

dns::Answer failure(dns::Status status, std::string detail) {
    dns::Answer a;
    a.status = status;
    a.detail = std::move(detail);
    return a;
}

bool definitive(dns::Status s) {
    return s == dns::Status::ok || s == dns::Status::nxdomain || s == dns::Status::nodata;
}

// RFC 1035 4.2.1 limits UDP to 512 octets without EDNS; with EDNS0 the
// server may use up to the advertised size. A datagram can be no larger.
constexpr std::size_t kMaxDatagram = 65535;

}  // namespace

// One exchange with one server.
struct DnsResolver::Exchange {
    enum class Outcome { answer, timeout, failed } outcome = Outcome::failed;
    dns::Answer answer;
};

DnsResolver::DnsResolver(asio::any_io_executor ex, DnsOptions options, metrics::Metrics* metrics)
    : ex_(std::move(ex)),
      options_(std::move(options)),
      metrics_(metrics),
      cache_(options_.cache_entries) {
    if (!(options_.timeout_seconds > 0) || options_.timeout_seconds > 60)
        throw std::runtime_error("dns: timeout must be above 0 and at most 60 seconds");
    if (options_.attempts < 1 || options_.attempts > 10)
        throw std::runtime_error("dns: attempts must be 1 to 10");
    std::vector<std::string> servers = options_.servers;
    if (servers.empty()) {
        auto conf = dns::read_resolv_conf();
        if (!conf) throw std::runtime_error("dns: " + conf.error());
        servers = std::move(conf).value();
    }
    for (const auto& s : servers) {
        auto ep = dns::parse_server(s);
        if (!ep) throw std::runtime_error("dns: server " + ep.error());
        error_code ec;
        const auto addr = asio::ip::make_address(ep->address, ec);
        if (ec) throw std::runtime_error("dns: server \"" + s + "\": " + ec.message());
        servers_.emplace_back(addr, ep->port);
    }
}

bool DnsResolver::cache_find(const std::string& name, dns::RrType type, dns::Answer& out) {
    if (options_.cache_entries == 0) return false;
    bool hit = false;
    {
        std::lock_guard lock(cache_mutex_);
        const double now = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
        if (const dns::Answer* a = cache_.find(name, type, now)) {
            out = *a;
            hit = true;
        }
    }
    if (metrics_) metrics_->dns_cache(hit ? "hit" : "miss");
    return hit;
}

void DnsResolver::cache_insert(const std::string& name, dns::RrType type, const dns::Answer& a) {
    if (options_.cache_entries == 0) return;
    std::lock_guard lock(cache_mutex_);
    const double now = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    cache_.insert(name, type, a, now);
}

awaitable<dns::Answer> DnsResolver::resolve(std::string name, dns::RrType type) {
    try {
        const std::string original = dns::normalize_name(name);
        // Reject a bad name here rather than once per server and attempt.
        auto probe = dns::build_query(dns::Query{original, type, 0});
        if (!probe) co_return failure(dns::Status::error, "invalid name: " + probe.error());

        dns::Answer cached;
        if (cache_find(original, type, cached)) co_return cached;

        std::string current = original;
        std::vector<std::string> visited{original};
        std::string last_target;
        std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
        dns::Answer result;
        for (int hop = 0;; ++hop) {
            dns::Answer a;
            if (hop == 0 || !cache_find(current, type, a)) {
                auto strand = asio::make_strand(ex_);
                auto task = query_servers(current, type);
                a = co_await asio::co_spawn(strand, std::move(task), use_awaitable);
                cache_insert(current, type, a);
            }
            if (!a.cname_target.empty()) last_target = a.cname_target;
            if (definitive(a.status)) ttl = std::min(ttl, a.ttl);
            if (!a.follow) {
                result = std::move(a);
                break;
            }
            // RFC 1034 3.6.2: the server stopped at an alias; ask for the target.
            if (hop + 1 >= dns::kMaxCnameHops) {
                result = failure(dns::Status::error, "CNAME chain too long");
                break;
            }
            if (std::find(visited.begin(), visited.end(), a.cname_target) != visited.end()) {
                result = failure(dns::Status::error, "CNAME loop");
                break;
            }
            visited.push_back(a.cname_target);
            current = a.cname_target;
        }
        result.cname_target = last_target;
        if (definitive(result.status)) result.ttl = ttl;
        if (current != original) cache_insert(original, type, result);
        co_return result;
    } catch (const std::exception& e) {
        co_return failure(dns::Status::error, e.what());
    }
}

awaitable<dns::Answer> DnsResolver::query_servers(std::string name, dns::RrType type) {
    // The best failure seen so far: a server's own answer (SERVFAIL,
    // REFUSED) says more than a timeout, a timeout more than a local error.
    dns::Answer best = failure(dns::Status::error, "no server");
    int best_rank = -1;
    for (int round = 0; round < options_.attempts; ++round) {
        bool retry = false;
        for (const udp::endpoint& server : servers_) {
            const dns::Query q{name, type, random_id()};
            const auto t0 = Clock::now();
            Exchange ex = co_await query_udp(server, q);
            if (ex.outcome == Exchange::Outcome::answer && ex.answer.truncated) {
                // RFC 7766 5: a truncated UDP answer is retried over TCP.
                const dns::Query again{name, type, random_id()};
                ex = co_await query_tcp(server, again);
            }
            std::string_view result = "error";
            if (ex.outcome == Exchange::Outcome::answer)
                result = dns::to_string(ex.answer.status);
            else if (ex.outcome == Exchange::Outcome::timeout)
                result = "timeout";
            if (metrics_) metrics_->dns_query(dns::to_string(type), result, since(t0));

            if (ex.outcome == Exchange::Outcome::answer && definitive(ex.answer.status))
                co_return ex.answer;
            const int rank = ex.outcome == Exchange::Outcome::answer    ? 2
                             : ex.outcome == Exchange::Outcome::timeout ? 1
                                                                        : 0;
            if (ex.outcome != Exchange::Outcome::answer) retry = true;
            if (rank > best_rank) {
                best_rank = rank;
                best = std::move(ex.answer);
            }
        }
        // Every server answered (SERVFAIL, REFUSED): asking again now is
        // unlikely to help.
        if (!retry) break;
    }
    co_return best;
}

awaitable<DnsResolver::Exchange> DnsResolver::query_udp(udp::endpoint server, dns::Query q) {
    Exchange out;
    auto wire = dns::build_query(q);
    if (!wire) {
        out.answer = failure(dns::Status::error, wire.error());
        co_return out;
    }
    const auto ex = co_await asio::this_coro::executor;
    // A fresh socket per query: the kernel picks a random source port
    // (RFC 5452 4.5). Connected, so that an ICMP port unreachable ends the
    // wait at once and the kernel drops datagrams from other sources.
    auto sock = std::make_shared<udp::socket>(ex);
    error_code ec;
    sock->open(server.protocol(), ec);
    if (!ec) sock->bind(udp::endpoint(server.protocol(), 0), ec);
    if (!ec) sock->connect(server, ec);
    if (!ec)
        co_await sock->async_send(asio::buffer(*wire), asio::redirect_error(use_awaitable, ec));
    if (ec) {
        out.answer = failure(dns::Status::error, "udp " + ec.message());
        co_return out;
    }

    // Watchdog: on expiry it cancels the pending receive. It runs on this
    // coroutine's strand and holds the socket, so it is safe even when it
    // fires after the reply arrived.
    auto expired = std::make_shared<bool>(false);
    asio::steady_timer timer(ex, std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options_.timeout_seconds)));
    auto on_timer = [sock, expired](error_code e) {
        if (e) return;
        *expired = true;
        error_code ignored;
        sock->cancel(ignored);
    };
    timer.async_wait(on_timer);

    std::vector<std::uint8_t> buf(kMaxDatagram);
    for (;;) {
        udp::endpoint from;
        const std::size_t n = co_await sock->async_receive_from(
            asio::buffer(buf), from, asio::redirect_error(use_awaitable, ec));
        if (*expired) {
            out.outcome = Exchange::Outcome::timeout;
            out.answer = failure(dns::Status::timeout, "no reply within timeout");
            co_return out;
        }
        if (ec) {
            timer.cancel();
            out.answer = failure(dns::Status::error, "udp " + ec.message());
            co_return out;
        }
        if (from != server) continue;
        auto parsed = dns::parse_response(std::span(buf.data(), n), q);
        if (!parsed) continue;  // not the answer to this query: keep waiting
        timer.cancel();
        out.outcome = Exchange::Outcome::answer;
        out.answer = std::move(parsed).value();
        co_return out;
    }
}

awaitable<DnsResolver::Exchange> DnsResolver::query_tcp(udp::endpoint server, dns::Query q) {
    Exchange out;
    auto wire = dns::build_query(q, true);
    if (!wire) {
        out.answer = failure(dns::Status::error, wire.error());
        co_return out;
    }
    const auto ex = co_await asio::this_coro::executor;
    beast::tcp_stream stream(ex);
    // One deadline for connect, write and both reads.
    stream.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options_.timeout_seconds)));
    error_code ec;
    co_await stream.async_connect(tcp::endpoint(server.address(), server.port()),
                                  asio::redirect_error(use_awaitable, ec));
    if (!ec)
        co_await asio::async_write(stream, asio::buffer(*wire),
                                   asio::redirect_error(use_awaitable, ec));
    std::array<std::uint8_t, 2> len{};
    if (!ec)
        co_await asio::async_read(stream, asio::buffer(len),
                                  asio::redirect_error(use_awaitable, ec));
    std::vector<std::uint8_t> body((len[0] << 8) | len[1]);
    if (!ec)
        co_await asio::async_read(stream, asio::buffer(body),
                                  asio::redirect_error(use_awaitable, ec));
    if (ec == beast::error::timeout) {
        out.outcome = Exchange::Outcome::timeout;
        out.answer = failure(dns::Status::timeout, "tcp: no reply within timeout");
        co_return out;
    }
    if (ec) {
        out.answer = failure(dns::Status::error, "tcp " + ec.message());
        co_return out;
    }
    auto parsed = dns::parse_response(body, q);
    if (!parsed) {
        out.answer = failure(dns::Status::error, "tcp: " + parsed.error());
        co_return out;
    }
    out.outcome = Exchange::Outcome::answer;
    out.answer = std::move(parsed).value();
    out.answer.truncated = false;
    co_return out;
}

}  // namespace relaygate::server
