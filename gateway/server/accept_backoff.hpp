// AcceptBackoff: what an accept loop does after accept() failed. Out of
// descriptors (EMFILE, ENFILE) or kernel memory, a retry fails at once, so
// a loop that retries immediately spins at 100% CPU and floods the log.
// Instead the loop pauses (10 ms, doubling to 1 s while it keeps failing),
// logs at most once per 10 s with a count of what it left out, and counts
// every failure in relaygate_accept_errors_total.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "gateway/metrics/metrics.hpp"
#include "gateway/net/asio.hpp"

namespace relaygate::server {

class AcceptBackoff {
  public:
    AcceptBackoff(std::string listener, metrics::Metrics* metrics)
        : listener_(std::move(listener)), metrics_(metrics) {}

    // The pause before the next accept (zero for errors that a retry can
    // clear, such as a connection reset before it was accepted).
    std::chrono::milliseconds on_error(const net::error_code& ec);
    void on_success() { pause_ = std::chrono::milliseconds(0); }

    static bool out_of_resources(const net::error_code& ec);

  private:
    std::string listener_;
    metrics::Metrics* metrics_;
    std::chrono::milliseconds pause_{0};
    std::chrono::steady_clock::time_point last_log_{};
    std::uint64_t suppressed_ = 0;
};

// Waits `pause` on the acceptor's executor (no-op for zero).
net::awaitable<void> accept_pause(net::tcp::acceptor& acceptor, std::chrono::milliseconds pause);

}  // namespace relaygate::server
