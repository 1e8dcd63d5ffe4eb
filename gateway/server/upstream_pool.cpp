// UpstreamPool implementation. Everything runs on the pool's own thread: the
// sessions that take and release connections and the expiry timer.
#include "gateway/server/upstream_pool.hpp"

#include <algorithm>

#include "gateway/metrics/metrics.hpp"
#include "gateway/server/log.hpp"

namespace relaygate::server {

using namespace net;

UpstreamPool::UpstreamPool(asio::any_io_executor ex, std::size_t max_idle,
                           std::chrono::seconds idle_timeout, metrics::Metrics& metrics,
                           const std::atomic<std::int64_t>& relay_waiting)
    : ex_(ex),
      max_idle_(max_idle),
      idle_timeout_(idle_timeout),
      metrics_(metrics),
      relay_waiting_(relay_waiting),
      timer_(ex) {}

UpstreamPool::~UpstreamPool() {
    metrics_.upstream_pool_idle(-static_cast<double>(idle_.size()));
}

std::unique_ptr<UpstreamClient> UpstreamPool::take(const XclientInfo& client) {
    expire();
    auto pick = idle_.rend();
    for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
        if (it->client->announced_as(client)) {
            pick = it;
            break;
        }
        if (pick == idle_.rend() && it->client->reusable_for(client)) pick = it;
    }
    if (pick == idle_.rend()) {
        if (max_idle_ > 0) metrics_.upstream_pool_checkout("empty");
        return nullptr;
    }
    auto taken = std::move(pick->client);
    idle_.erase(std::next(pick).base());
    metrics_.upstream_pool_idle(-1);
    return taken;
}

void UpstreamPool::reused() {
    metrics_.upstream_pool_checkout("reused");
}

void UpstreamPool::stale() {
    metrics_.upstream_pool_checkout("stale");
}

void UpstreamPool::release(std::unique_ptr<UpstreamClient> client, Clock::time_point last_used) {
    if (!client) return;
    const auto expires = last_used + idle_timeout_;
    if (max_idle_ == 0 || draining_) return close(std::move(client), "");
    if (!client->idle_and_clean()) return close(std::move(client), "unusable");
    if (relay_waiting_.load() > 0) return close(std::move(client), "relay_busy");
    if (expires <= Clock::now()) return close(std::move(client), "idle_timeout");
    expire();
    if (idle_.size() >= max_idle_) {
        // Room for the newest: the oldest is the likeliest to go stale.
        auto oldest = std::move(idle_.front().client);
        idle_.erase(idle_.begin());
        metrics_.upstream_pool_idle(-1);
        close(std::move(oldest), "full");
    }
    idle_.push_back({std::move(client), expires});
    metrics_.upstream_pool_idle(1);
    arm();
}

void UpstreamPool::drain() {
    draining_ = true;
    timer_.cancel();
    auto all = std::move(idle_);
    idle_.clear();
    metrics_.upstream_pool_idle(-static_cast<double>(all.size()));
    for (auto& i : all)
        close(std::move(i.client), "drain");
    drained_.store(true);
}

void UpstreamPool::shed() {
    if (idle_.empty()) return;
    auto oldest = std::move(idle_.front().client);
    idle_.erase(idle_.begin());
    metrics_.upstream_pool_idle(-1);
    close(std::move(oldest), "relay_busy");
}

RelayBusyWatch::RelayBusyWatch(const asio::any_io_executor& ex, std::atomic<std::int64_t>& waiting,
                               const Pools& pools)
    : timer_(ex, kRelayBusyAfter), waiting_(waiting) {
    // The handler outlives neither `waiting` nor `pools` (the server's) but
    // may outlive this watch: it touches nothing of it.
    timer_.async_wait([&waiting, &pools](const error_code& ec) {
        if (ec) return;
        ++waiting;
        for (const auto& pool : pools)
            asio::post(pool->executor(), [p = pool.get()] { p->shed(); });
    });
}

// Nothing cancelled: the handler ran or will run with success, so it counted
// (or will count) this connect as waiting.
RelayBusyWatch::~RelayBusyWatch() {
    if (timer_.cancel() == 0) --waiting_;
}

// QUIT needs a round of I/O; the session that released the connection
// need not wait for it.
void UpstreamPool::close(std::unique_ptr<UpstreamClient> client, std::string_view reason) {
    if (!reason.empty()) metrics_.upstream_pool_closed(reason);
    ++closing_;
    auto quit = [this, c = std::move(client)]() -> awaitable<void> {
        co_await c->quit();
        --closing_;
    };
    asio::co_spawn(ex_, std::move(quit), log_exception("upstream quit"));
}

void UpstreamPool::expire() {
    const auto now = Clock::now();
    // Entries are in release order, and each expires idle_timeout_ after its
    // last use; a session may have kept one idle for a while first, so check all.
    std::vector<std::unique_ptr<UpstreamClient>> expired;
    std::erase_if(idle_, [&](Idle& i) {
        if (i.expires > now) return false;
        expired.push_back(std::move(i.client));
        return true;
    });
    metrics_.upstream_pool_idle(-static_cast<double>(expired.size()));
    for (auto& c : expired)
        close(std::move(c), "idle_timeout");
}

void UpstreamPool::arm() {
    if (armed_ || idle_.empty()) return;
    const auto next =
        std::min_element(idle_.begin(), idle_.end(), [](const Idle& a, const Idle& b) {
            return a.expires < b.expires;
        })->expires;
    armed_ = true;
    timer_.expires_at(next);
    timer_.async_wait([this](const error_code& ec) {
        armed_ = false;
        if (ec) return;
        expire();
        arm();
    });
}

}  // namespace relaygate::server
