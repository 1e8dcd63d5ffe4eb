// RedisStore: the volume-control store shared by every replica
// (rate_limit.store = "redis"): one EVALSHA of the decide script per
// decision over RedisClient, one connection per I/O thread (a session's
// call and reply never leave its thread). On any failure it counts the error and either
// decides on this process's own counters with each limit divided by the
// replica count (fail_open) or answers store_error (fail_closed).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gateway/config/config.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/ratelimit/store.hpp"
#include "gateway/server/redis_client.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

struct RedisStoreOptions {
    RedisClientOptions client;  // its on_state is set by the store
    std::string key_prefix = "relaygate:";
    config::StoreFailure on_error = config::StoreFailure::fail_open;
    std::uint32_t replicas = 1;
    std::size_t fallback_entries = 1000000;  // the fail_open MemoryStore's bound
};

// From the config: reads the password file. An error text when it cannot.
Result<RedisStoreOptions, std::string> redis_store_options(const config::RateLimit& rl);

class RedisStore final : public ratelimit::Store {
  public:
    // One connection per executor, each started at once; submit() uses the
    // one whose io_context runs the calling thread (any, from elsewhere).
    // `metrics` must outlive the io_contexts' handlers (the server's
    // metrics do). Throws std::runtime_error on a bad address, key prefix
    // or TLS file (startup only).
    RedisStore(std::vector<net::asio::io_context::executor_type> executors,
               RedisStoreOptions options, metrics::Metrics& metrics);
    RedisStore(net::asio::io_context::executor_type ex, RedisStoreOptions options,
               metrics::Metrics& metrics)
        : RedisStore(std::vector{ex}, std::move(options), metrics) {}
    ~RedisStore() override;  // closes the connection

    // `done` runs on the Redis client's strand, which is on the calling
    // thread's io_context (or inline when the client fails at once):
    // re-dispatch to your own executor.
    void submit(ratelimit::Request request, std::function<void(ratelimit::Outcome)> done) override;
    void clear_hold(std::string volume_key, std::function<void(bool ok)> done) override;
    std::string_view name() const override { return "redis"; }
    bool available() const override { return connected(); }

    // Every connection is ready for commands.
    bool connected() const;

    // The fallback's request: every check's interval times `replicas`
    // (each replica gets count / replicas per period); the tolerance stays,
    // so the burst is divided too, but never below one unit of the check
    // (or the check could never pass); no volume or first-seen
    // observation (those need the shared history); no lease taken and no
    // refund given (both are Redis's). Public for tests.
    static ratelimit::Request divided(const ratelimit::Request& request, std::uint32_t replicas);

  private:
    // Shared with the callbacks in flight, which may outlive the store
    // (the client fails them after close()). `metrics` must outlive both.
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace relaygate::server
