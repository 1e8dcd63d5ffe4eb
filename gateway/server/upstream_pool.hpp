// UpstreamPool: idle connections to the signing relay, kept after a client
// session ends and taken over by the next one on the same thread (each I/O
// thread has its own pool, so a connection never changes event loops).
//
// Taking one over is upstream::UpstreamMachine::reuse: RSET as the health
// check, then XCLIENT with the new client's attributes when the connection
// announced a client before (Postfix starts a fresh session on XCLIENT), so
// one client's attributes never reach another client's transaction. A
// connection that cannot re-announce (Postfix stops offering XCLIENT once the
// announced address is not itself authorized for it) is kept for the same
// client only: the pool is keyed by what the relay was told. Bounded in size; a
// connection idle past upstream.idle_timeout_seconds gets QUIT and closed.
//
// An idle pooled connection holds one of the relay's SMTP server processes
// (Postfix: one smtpd each, up to its process limit). A relay at its limit
// greets a new connection only when one of those ends. So a fresh connect
// still waiting after kRelayBusyAfter (RelayBusyWatch) asks every thread's
// pool to QUIT its oldest idle connection, and while any such connect
// waits, a released connection is closed instead of kept: the pools never
// hold the relay's processes while a session waits for one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gateway/net/asio.hpp"
#include "gateway/server/upstream_client.hpp"

namespace relaygate::server {

class UpstreamPool {
  public:
    using Clock = std::chrono::steady_clock;

    // `max_idle` connections at most (0: the pool keeps none).
    // `relay_waiting`: connects waiting for a busy relay (RelayBusyWatch).
    UpstreamPool(net::asio::any_io_executor ex, std::size_t max_idle,
                 std::chrono::seconds idle_timeout, metrics::Metrics& metrics,
                 const std::atomic<std::int64_t>& relay_waiting);
    ~UpstreamPool();
    UpstreamPool(const UpstreamPool&) = delete;
    UpstreamPool& operator=(const UpstreamPool&) = delete;

    // An idle connection that can carry `client`'s mail, or null: the newest
    // one XCLIENT already announced as this client (RSET alone takes it
    // over), else the newest that can announce it (or never announced any
    // client). The caller reports how taking it over went with reused() or
    // stale().
    std::unique_ptr<UpstreamClient> take(const XclientInfo& client);
    void reused();
    void stale();
    // A session is done with `client` (last used at `last_used`): kept when
    // it is idle and clean, fresh enough and there is room (the oldest goes
    // when there is not) unless a connect waits for a busy relay; QUIT and
    // closed otherwise (in the background).
    void release(std::unique_ptr<UpstreamClient> client, Clock::time_point last_used);
    // The gateway drains: QUIT every idle connection and keep no more.
    void drain();
    // The relay is busy: QUIT the oldest idle connection, if any.
    void shed();
    const net::asio::any_io_executor& executor() const { return ex_; }

    std::size_t idle() const { return idle_.size(); }
    // drain() ran and every QUIT it started was written (any thread).
    bool drained() const { return drained_.load() && closing_.load() == 0; }

  private:
    struct Idle {
        std::unique_ptr<UpstreamClient> client;
        Clock::time_point expires;
    };
    void close(std::unique_ptr<UpstreamClient> client, std::string_view reason);
    void expire();
    void arm();

    net::asio::any_io_executor ex_;
    std::size_t max_idle_;
    std::chrono::seconds idle_timeout_;
    metrics::Metrics& metrics_;
    const std::atomic<std::int64_t>& relay_waiting_;
    std::vector<Idle> idle_;  // oldest first
    net::asio::steady_timer timer_;
    bool armed_ = false;
    bool draining_ = false;
    std::atomic<bool> drained_{false};
    std::atomic<std::size_t> closing_{0};  // QUITs in flight
};

// A fresh connect still waiting after this long means the relay is busy.
inline constexpr std::chrono::milliseconds kRelayBusyAfter{500};

// Held for the length of one fresh connect: past kRelayBusyAfter it counts
// in `waiting` until it ends, and every pool sheds an idle connection.
class RelayBusyWatch {
  public:
    using Pools = std::vector<std::unique_ptr<UpstreamPool>>;
    RelayBusyWatch(const net::asio::any_io_executor& ex, std::atomic<std::int64_t>& waiting,
                   const Pools& pools);
    ~RelayBusyWatch();
    RelayBusyWatch(const RelayBusyWatch&) = delete;
    RelayBusyWatch& operator=(const RelayBusyWatch&) = delete;

  private:
    net::asio::steady_timer timer_;
    std::atomic<std::int64_t>& waiting_;
};

}  // namespace relaygate::server
