// Server: owns the io_contexts and their threads, the SMTP listeners, the
// admin endpoint, the policy holder and the signal handling. One io_context
// per thread (no strands, no hand-off between threads on the data path):
// the listeners accept on the first and hand each connection round-robin
// to one of them, where its coroutine, client socket and upstream socket
// live until it ends.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gateway/config/config.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/ratelimit/batch_store.hpp"
#include "gateway/ratelimit/store.hpp"
#include "gateway/server/connection_limiter.hpp"
#include "gateway/server/dns_resolver.hpp"
#include "gateway/server/file_watch.hpp"
#include "gateway/server/health.hpp"
#include "gateway/server/policy_holder.hpp"
#include "gateway/server/policy_poller.hpp"
#include "gateway/server/tls_context.hpp"
#include "gateway/session/auth_throttle.hpp"
#include "gateway/session/session.hpp"

namespace relaygate::server {

// Batches this thread's audit lines (Logger::batch_audit_on_this_thread):
// they are written together `interval` after the first of them, when
// `timer`'s loop runs the flush (or at 64 KiB, or by flush_audit()).
void batch_audit_with(net::asio::steady_timer& timer, std::chrono::milliseconds interval);

class AdminServer;
class UpstreamPool;

class Server {
  public:
    explicit Server(config::Config config);
    ~Server();

    // Loads the policy, binds every socket, serves until SIGTERM/SIGINT and
    // the drain finish. Returns the process exit code.
    int run();

    // Shared by every session (read-only after start, except the counters).
    struct ListenerInfo {
        config::Listener config;
        session::Settings settings;
        std::vector<policy::Cidr> trusted_proxies;
    };
    struct Shared {
        config::Config config;
        std::vector<ListenerInfo> listeners;
        metrics::Metrics metrics;
        Health health;
        std::unique_ptr<PolicyHolder> policy;
        std::unique_ptr<ConnectionLimiter> limiter;
        TlsContexts tls;
        // PBKDF2 checks are slow by design: they run here, not on I/O threads.
        std::unique_ptr<net::asio::thread_pool> auth_pool;
        // Password checks queued or running on auth_pool (bounded by
        // auth_throttle.max_pending).
        std::atomic<std::uint32_t> auth_pending{0};
        // Failed AUTH attempts across connections (per address, per user).
        std::unique_ptr<session::AuthThrottle> auth_throttle;
        // DNS for DNS-verified domains and DKIM keys (its own cache).
        std::unique_ptr<DnsResolver> dns;
        // Volume control: rate limits and anomaly state (memory or Redis).
        std::unique_ptr<ratelimit::Store> limits;
        // Fresh upstream connects waiting for a busy relay (RelayBusyWatch).
        std::atomic<std::int64_t> relay_waiting{0};
        // Idle upstream connections, one pool per I/O thread (index = thread).
        std::vector<std::unique_ptr<UpstreamPool>> upstream_pools;
        std::atomic<std::uint64_t> next_session{0};
        std::string session_prefix;
        // Drain: wakes sessions idle in a read so they can answer 421 now.
        std::mutex sessions_mutex;
        std::unordered_map<std::uint64_t, std::function<void()>> wakers;
        std::atomic<std::uint64_t> next_waker{0};
        // Sessions and transactions ended since the last malloc_trim: each
        // frees buffers that glibc would otherwise keep.
        std::atomic<std::uint64_t> ended_since_trim{0};
    };

  private:
    // A listening socket. With listeners[].reuse_port each thread has its
    // own on the listener's port (SO_REUSEPORT: the kernel spreads the
    // connections), and a connection stays on the thread that accepted it;
    // otherwise thread 0 accepts and hands connections out round-robin.
    struct Acceptor {
        std::unique_ptr<net::tcp::acceptor> socket;
        std::size_t listener = 0;
        std::size_t thread = 0;   // the io_context it runs on
        bool own_thread = false;  // its connections stay on `thread`
    };
    void open_listener(std::size_t listener);
    net::awaitable<void> accept_loop(Acceptor& acceptor);
    // The io_context of thread i (0: io_, which also runs the listeners,
    // the admin endpoint, the signals and the timers).
    net::asio::io_context& context(std::size_t i) { return i == 0 ? io_ : *workers_[i - 1]; }
    std::size_t thread_count() const { return workers_.size() + 1; }
    std::unique_ptr<ratelimit::Store> make_limits_store();
    void start_signals();
    // Every policy_poll_seconds: reloads the policy (and credentials) or
    // the TLS certificates when their files changed.
    void start_file_watch();
    void start_memory_trim();
    void start_batch_flush();
    bool load_policy_at_start();
    // Loads the policy on policy_loader_ and swaps it in (see server.cpp).
    void request_policy_reload();
    void reload_tls();
    // The server certificate's expiry: a gauge, and a warning under 14 days.
    void report_certificate();
    void begin_drain();
    void drain_poll();

    // shared_ first: members are destroyed in reverse order, and the
    // io_context destroys unfinished session coroutines, whose frames
    // still point into shared_ (limiter slots, waker registry, metrics).
    Shared shared_;
    net::asio::io_context io_{1};
    // Threads 1..N-1, each running its own io_context; kept running while
    // idle by the guards until the drain ends.
    std::vector<std::unique_ptr<net::asio::io_context>> workers_;
    std::vector<net::asio::executor_work_guard<net::asio::io_context::executor_type>> work_guards_;
    std::size_t next_context_ = 0;  // round-robin; only the accept loops (on io_) use it
    std::vector<Acceptor> acceptors_;
    std::unique_ptr<AdminServer> admin_;
    net::asio::signal_set signals_;
    net::asio::steady_timer drain_timer_;
    net::asio::steady_timer watch_timer_;
    net::asio::steady_timer trim_timer_;
    net::asio::steady_timer batch_timer_;
    // rate_limit.batch_ms with Redis: the batch store inside shared_.limits.
    ratelimit::BatchStore* batch_ = nullptr;
    bool batch_flushed_ = false;  // at the end of the drain
    FileWatch policy_watch_, tls_watch_;
    // policy_url only. Declared before policy_loader_: a load it posted
    // finishes (the loader is joined) before the poller goes away.
    std::unique_ptr<PolicyPoller> poller_;
    // One thread for policy loads; declared after shared_, so it is joined
    // (a running load finished) before the policy holder goes away.
    net::asio::thread_pool policy_loader_{1};
    std::atomic<bool> reload_queued_{false};
    std::chrono::steady_clock::time_point drain_deadline_{};
};

}  // namespace relaygate::server
