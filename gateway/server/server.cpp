// Server lifecycle: bind, serve, drain. Signals: SIGHUP reloads the policy and the TLS
// certificates; SIGTERM/SIGINT start the drain (readiness 503, listeners closed, sessions
// told 421 at their next command) and the process exits when the sessions
// are gone or the drain deadline passes.
#include "gateway/server/server.hpp"

#include <malloc.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/common/ascii.hpp"
#include "gateway/ratelimit/batch_store.hpp"
#include "gateway/ratelimit/memory_store.hpp"
#include "gateway/server/accept_backoff.hpp"
#include "gateway/server/admin_server.hpp"
#include "gateway/server/client_session.hpp"
#include "gateway/server/descriptors.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/redis_store.hpp"
#include "gateway/server/systemd_notify.hpp"
#include "gateway/server/upstream_pool.hpp"
#include "gateway/session/volume.hpp"

namespace relaygate::server {

using namespace net;

namespace {
std::string random_hex(std::size_t bytes) {
    std::vector<unsigned char> b(bytes);
    RAND_bytes(b.data(), static_cast<int>(b.size()));
    return ascii::hex(b.data(), b.size());
}
}  // namespace

namespace {
session::VolumeSettings volume_settings(const config::Config& c) {
    session::VolumeSettings v;
    v.report_only = c.rate_limit.report_only;
    v.recipient_lease = c.rate_limit.recipient_lease;
    v.anomalies = c.anomalies.enabled;
    v.first_seen = c.anomalies.first_seen;
    v.first_seen_ttl = static_cast<double>(c.anomalies.first_seen_ttl.count());
    v.spike.bucket_seconds = static_cast<double>(c.anomalies.bucket.count());
    v.spike.slots = c.anomalies.seasonal_slots;
    v.spike.alpha = c.anomalies.alpha_percent / 100.0;
    v.spike.multiple = c.anomalies.spike_multiple;
    v.spike.min_messages = c.anomalies.spike_min_messages;
    return v;
}
}  // namespace

Server::Server(config::Config config)
    : signals_(io_), drain_timer_(io_), watch_timer_(io_), trim_timer_(io_), batch_timer_(io_) {
    shared_.config = std::move(config);
    for (const auto& l : shared_.config.listeners) {
        ListenerInfo info;
        info.config = l;
        info.settings.hostname = shared_.config.hostname;
        info.settings.limits = shared_.config.limits;
        info.settings.verdict_header = shared_.config.verdict_header;
        info.settings.authserv_ids = shared_.config.authserv_ids;
        info.settings.starttls = l.starttls;
        info.settings.auth = l.auth;
        info.settings.session_seconds =
            static_cast<double>(shared_.config.timeouts.session.count());
        info.settings.volume = volume_settings(shared_.config);
        info.settings.upstream_pipelining = shared_.config.upstream.pipelining;
        info.settings.upstream_defer_mail = shared_.config.upstream.defer_mail;
        info.settings.upstream_chunking = shared_.config.upstream.chunking;
        for (const auto& c : l.trusted_proxies)
            if (auto p = policy::parse_cidr(c).cidr) info.trusted_proxies.push_back(*p);
        shared_.listeners.push_back(std::move(info));
    }
    shared_.auth_pool = std::make_unique<asio::thread_pool>(2);
    const auto& at = shared_.config.auth_throttle;
    shared_.auth_throttle = std::make_unique<session::AuthThrottle>(session::AuthThrottleLimits{
        at.client_failures, at.user_failures, static_cast<double>(at.window.count()), at.entries});
    const auto& dns = shared_.config.dns;
    try {
        shared_.dns = std::make_unique<DnsResolver>(
            io_.get_executor(),
            DnsOptions{dns.servers, dns.timeout_ms / 1000.0, static_cast<int>(dns.attempts),
                       dns.cache_entries},
            &shared_.metrics);
    } catch (const std::exception& e) {
        // Only DNS-verified domains and DKIM need it: without a resolver
        // those transactions get 451 (dns_tempfail), everything else works.
        log_warn("dns_unavailable", {{"error", e.what()}});
    }
    shared_.metrics.configure(shared_.config.metrics);
    shared_.policy =
        std::make_unique<PolicyHolder>(shared_.config.policy_source(), shared_.metrics);
    shared_.limiter = std::make_unique<ConnectionLimiter>(
        shared_.config.limits.max_connections, shared_.config.limits.max_connections_per_client);
    shared_.session_prefix = random_hex(4) + "-";
    unsigned threads = shared_.config.threads;
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 1; i < threads; ++i) {
        // Concurrency hint 1: one thread runs it, so handlers it posts to
        // itself skip the shared queue's lock.
        workers_.push_back(std::make_unique<asio::io_context>(1));
        work_guards_.push_back(asio::make_work_guard(*workers_.back()));
    }
    // The pool's size is for the process: each thread keeps its share.
    const std::size_t pool_size = shared_.config.upstream.pool_size;
    for (std::size_t i = 0; i < thread_count(); ++i)
        shared_.upstream_pools.push_back(std::make_unique<UpstreamPool>(
            context(i).get_executor(), (pool_size + thread_count() - 1) / thread_count(),
            shared_.config.upstream.idle_timeout, shared_.metrics, shared_.relay_waiting));
}

Server::~Server() {
    // Before the io_contexts their sockets and timers belong to.
    shared_.upstream_pools.clear();
    shared_.dns.reset();
    shared_.limits.reset();
}

namespace {
double steady_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The embedded store, with the metrics the Redis store reports itself.
class MeteredMemoryStore final : public ratelimit::Store {
  public:
    MeteredMemoryStore(std::size_t entries, metrics::Metrics& m)
        : store_(steady_seconds, entries), metrics_(m) {
        metrics_.rate_limit_store_up(true);
    }
    void submit(ratelimit::Request request, std::function<void(ratelimit::Outcome)> done) override {
        done(*decide_now(request));
    }
    std::optional<ratelimit::Outcome> decide_now(ratelimit::Request& request) override {
        const double t0 = steady_seconds();
        auto outcome = store_.decide(request);
        metrics_.rate_limit_store_latency("memory", steady_seconds() - t0);
        // Every 256th call: the gauge's own cost stays off the hot path.
        if ((++calls_ & 0xff) == 0) metrics_.rate_limit_store_entries(store_.size());
        return outcome;
    }
    void clear_hold(std::string key, std::function<void(bool)> done) override {
        store_.clear_hold(std::move(key), std::move(done));
    }
    std::string_view name() const override { return "memory"; }

  private:
    ratelimit::MemoryStore store_;
    metrics::Metrics& metrics_;
    std::atomic<std::uint64_t> calls_{0};
};

// What the batch store did, as metrics and audit lines. Shared with the
// callbacks the Redis client may still run while the stores go away.
class BatchMetrics final : public ratelimit::BatchEvents {
  public:
    BatchMetrics(metrics::Metrics& m, bool tenant_label)
        : metrics_(m), tenant_label_(tenant_label) {}
    void decided(bool in_process) override { metrics_.rate_limit_batch_decision(in_process); }
    void block_units(std::string_view result, std::uint64_t units) override {
        metrics_.rate_limit_block(result, units);
    }
    // A spike in counts sent by a flush, not with a message: no session.
    void spike(std::string_view volume_key, const ratelimit::Outcome& o) override {
        record_anomaly(metrics_, tenant_label_, {}, "volume_spike", ratelimit::hash_tag(volume_key),
                       session::spike_detail(o));
    }

  private:
    metrics::Metrics& metrics_;
    bool tenant_label_;
};

}  // namespace

std::unique_ptr<ratelimit::Store> Server::make_limits_store() {
    const auto& rl = shared_.config.rate_limit;
    if (rl.store == config::RateLimitStore::redis) {
        auto options = redis_store_options(rl);
        if (!options) throw std::runtime_error("rate_limit: " + options.error());
        // One connection per thread: a session's call and its reply stay
        // on the session's own thread.
        std::vector<asio::io_context::executor_type> executors;
        for (std::size_t i = 0; i < thread_count(); ++i)
            executors.push_back(context(i).get_executor());
        auto redis = std::make_unique<RedisStore>(std::move(executors), std::move(options).value(),
                                                  shared_.metrics);
        if (rl.batch.count() == 0) return redis;
        ratelimit::BatchSettings s;
        s.batch_seconds = static_cast<double>(rl.batch.count()) / 1000;
        s.lease_fraction = static_cast<double>(rl.block_percent) / 100;
        s.seen_entries = rl.seen_cache_entries;
        // A remembered mark's expiry runs at most an hour (or half its
        // TTL) short of what sending every sighting would give.
        s.seen_refresh = std::min(
            3600.0, static_cast<double>(shared_.config.anomalies.first_seen_ttl.count()) / 2);
        auto batched = std::make_unique<ratelimit::BatchStore>(
            std::move(redis), steady_seconds, s,
            std::make_shared<BatchMetrics>(shared_.metrics, shared_.config.anomalies.tenant_label));
        batch_ = batched.get();
        return batched;
    }
    return std::make_unique<MeteredMemoryStore>(rl.memory_entries, shared_.metrics);
}

int Server::run() {
    // Blocks of 1 MiB and more (a policy's tables, its file's text, the
    // parser's buffers) come from mmap and go back to the kernel when
    // freed. Without a fixed threshold glibc raises it to the largest block
    // freed so far (up to 32 MiB): after the first reload the next policy's
    // big blocks come from the heap, and each reload that changes their
    // sizes leaves holes the trim cannot give back (measured: 112-170 MB
    // after reloads instead of 95 steady; scripts/README.md, "Scale").
    ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
    if (std::string error; !Logger::open_audit(shared_.config.audit_log, error)) {
        log_error("startup_failed", {{"reason", error}});
        return 1;
    }
    // Two descriptors per connection: take all the kernel allows us, and
    // say so at start if that is still too few for max_connections.
    const auto nofile = raise_descriptor_limit();
    for (const auto& w : config::config_warnings(shared_.config, nofile))
        log_warn("config_warning", {{"warning", w}});
    if (!load_policy_at_start()) return 1;
    ::malloc_trim(0);  // the parser's garbage, before anything else allocates
    try {
        shared_.limits = make_limits_store();
    } catch (const std::exception& e) {
        log_error("startup_failed", {{"reason", e.what()}});
        return 1;
    }
    if (std::string error; !shared_.tls.load(shared_.config, error)) {
        log_error("startup_failed", {{"reason", error}});
        return 1;
    }
    report_certificate();

    try {
        for (std::size_t i = 0; i < shared_.config.listeners.size(); ++i)
            open_listener(i);
        if (shared_.config.admin.enabled) {
            tcp::endpoint ep(asio::ip::make_address(shared_.config.admin.address),
                             shared_.config.admin.port);
            admin_ = std::make_unique<AdminServer>(
                io_, ep, shared_.metrics, shared_.health,
                [this](nlohmann::json& status) {
                    shared_.policy->status(status);
                    const auto* store = shared_.limits.get();
                    // The store is not part of readiness: fail_open decides
                    // without it, fail_closed answers 451 (both are served).
                    status["rate_limit_store"] = std::string(store ? store->name() : "none");
                    status["rate_limit_store_up"] = store && store->available();
                },
                shared_.limits.get());
            log_info("listening", {{"kind", "admin"},
                                   {"address", admin_->local_endpoint().address().to_string()},
                                   {"port", admin_->local_endpoint().port()}});
            admin_->start();
        }
    } catch (const std::exception& e) {
        log_error("startup_failed", {{"reason", e.what()}});
        return 1;
    }

    for (auto& a : acceptors_) {
        auto loop = [this, &a]() -> awaitable<void> { co_await accept_loop(a); };
        asio::co_spawn(context(a.thread), loop, log_exception("smtp accept loop"));
    }
    start_signals();
    start_file_watch();
    if (poller_) poller_->start(io_.get_executor());
    start_memory_trim();
    start_batch_flush();
    shared_.health.listeners_up = true;

    log_info("started", {{"threads", thread_count()},
                         {"upstream", shared_.config.upstream.host + ":" +
                                          std::to_string(shared_.config.upstream.port)}});
    systemd::notify_ready("serving");  // Type=notify: listeners are up
    // Each thread writes its audit lines at most kAuditFlushInterval after
    // the first of them, and what is left when its loop stops.
    const auto serve = [](asio::io_context& io) {
        asio::steady_timer flush(io);
        batch_audit_with(flush, kAuditFlushInterval);
        io.run();
        Logger::batch_audit_on_this_thread(nullptr);
        Logger::flush_audit();
    };
    std::vector<std::thread> pool;
    for (auto& w : workers_)
        pool.emplace_back([&serve, &io = *w] { serve(io); });
    serve(io_);
    for (auto& t : pool)
        t.join();
    log_info("stopped", {});
    return 0;
}

namespace {
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
}

// Throws on a socket error (run() reports it as startup_failed).
void Server::open_listener(std::size_t listener) {
    const auto& l = shared_.config.listeners[listener];
    tcp::endpoint ep(asio::ip::make_address(l.address), l.port);
    const std::size_t sockets = l.reuse_port ? thread_count() : 1;
    for (std::size_t t = 0; t < sockets; ++t) {
        auto acc = std::make_unique<tcp::acceptor>(context(t));
        acc->open(ep.protocol());
        acc->set_option(asio::socket_base::reuse_address(true));
        if (l.reuse_port) acc->set_option(reuse_port(true));
        acc->bind(ep);
        acc->listen(asio::socket_base::max_listen_connections);
        if (t == 0) {
            ep = acc->local_endpoint();  // port 0: the others take the same port
            log_info("listening", {{"kind", "smtp"},
                                   {"address", ep.address().to_string()},
                                   {"port", ep.port()},
                                   {"sockets", sockets}});
        }
        acceptors_.push_back({std::move(acc), listener, t, sockets > 1});
    }
}

awaitable<void> Server::accept_loop(Acceptor& a) {
    const auto& cfg = shared_.listeners[a.listener].config;
    const std::size_t listener = a.listener;
    tcp::acceptor& acceptor = *a.socket;
    AcceptBackoff backoff(cfg.address + ":" + std::to_string(cfg.port), &shared_.metrics);
    for (;;) {
        error_code ec;
        // The connection lives on one thread's io_context: its coroutine,
        // client socket and upstream socket never run concurrently with
        // themselves, without a strand.
        const std::size_t thread = a.own_thread ? a.thread : next_context_++ % thread_count();
        auto& home = context(thread);
        tcp::socket socket(home.get_executor());
        co_await acceptor.async_accept(socket, asio::redirect_error(use_awaitable, ec));
        if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
        if (ec) {
            co_await accept_pause(acceptor, backoff.on_error(ec));
            continue;
        }
        backoff.on_success();
        auto ex = socket.get_executor();
        auto* pool = shared_.upstream_pools[thread].get();
        auto session = [this, s = std::move(socket), listener, pool]() mutable -> awaitable<void> {
            co_await run_client_session(std::move(s), shared_, listener, *pool);
        };
        asio::co_spawn(ex, std::move(session), log_exception("client session"));
    }
}

void Server::start_signals() {
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    signals_.async_wait([this](const error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            log_info("reload_requested", {{"signal", "SIGHUP"}});
            // A fetched policy is fetched again now; its cached copy is
            // loaded again only for the credentials beside it.
            if (poller_) poller_->fetch_now();
            if (!poller_ || !shared_.config.credentials_file.empty()) {
                systemd::notify_reloading();  // READY=1 again once the policy load ends
                request_policy_reload();
            }
            reload_tls();
            start_signals();
            return;
        }
        log_info("drain_requested", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
        begin_drain();
    });
}

// policy_file or policy_dir: loaded here, or `run` fails. policy_url: the
// cached copy, or one fetch (see PolicyPoller).
bool Server::load_policy_at_start() {
    bool loaded = false;
    if (shared_.config.policy_url.empty()) {
        loaded = shared_.policy->reload();
    } else {
        auto setup = policy_url_setup(shared_.config);
        if (!setup) {
            log_error("startup_failed", {{"reason", setup.error()}});
            return false;
        }
        poller_ = std::make_unique<PolicyPoller>(shared_.config, std::move(setup).value(),
                                                 *shared_.policy, shared_.metrics, policy_loader_);
        loaded = poller_->start_up();
    }
    if (!loaded) {
        log_error("startup_failed", {{"reason", "policy did not load"},
                                     {"source", shared_.config.policy_source().describe()}});
        return false;
    }
    shared_.health.policy_loaded = true;
    return true;
}

// A load of 100k tenants takes seconds of CPU: it runs on its own thread,
// not on thread 0, which accepts every connection and serves /metrics. A
// request while a load is queued is already covered by it; one while a
// load runs queues one more (the files may have changed after it read them).
void Server::request_policy_reload() {
    if (reload_queued_.exchange(true)) return;
    asio::post(policy_loader_, [this] {
        reload_queued_ = false;
        shared_.policy->reload();
        systemd::notify_ready("serving");  // ends a SIGHUP's RELOADING=1 (kept or swapped)
        // Parsing leaves hundreds of MB in glibc's free lists; the old
        // policy goes when its last session ends (and the trim timer runs).
        ::malloc_trim(0);
    });
}

void Server::report_certificate() {
    if (auto t = shared_.tls.server_certificate_not_after()) {
        shared_.metrics.tls_certificate_expiry(static_cast<double>(*t));
        const auto left = *t - std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        if (left < 14 * 86400)
            log_warn("tls_certificate_expiring",
                     {{"file", shared_.config.tls.cert_file}, {"seconds_left", left}});
    }
}

void Server::reload_tls() {
    std::string error;
    if (shared_.tls.load(shared_.config, error)) {
        log_info("tls_reloaded", {});
        report_certificate();
    } else
        log_error("tls_reload_failed", {{"error", error}, {"keeping_previous", true}});
}

// Hot reload on file change: the policy, and the TLS certificate and key
// (cert-manager rotates them in place; a Secret volume swaps them together).
// A half-written pair fails to load and keeps the previous one; the write
// that completes it is the next change.
void Server::start_file_watch() {
    if (shared_.config.policy_poll.count() == 0) return;
    if (policy_watch_.empty()) {
        policy_watch_ = FileWatch(shared_.config.policy_source().watched());
        std::vector<std::filesystem::path> tls;
        for (const auto* f : {&shared_.config.tls.cert_file, &shared_.config.tls.key_file,
                              &shared_.config.upstream.ca_file})
            if (!f->empty()) tls.emplace_back(*f);
        tls_watch_ = FileWatch(std::move(tls));
    }
    watch_timer_.expires_after(shared_.config.policy_poll);
    watch_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        if (policy_watch_.changed()) {
            log_info("reload_requested", {{"trigger", "file_change"}, {"what", "policy"}});
            request_policy_reload();
        }
        if (tls_watch_.changed()) {
            log_info("reload_requested", {{"trigger", "file_change"}, {"what", "tls"}});
            reload_tls();
        }
        start_file_watch();
    });
}

// glibc keeps freed memory in its arenas: after a burst of connections or
// large messages the process would hold its peak for good. Every 5 s in
// which sessions or transactions ended, give unused pages back to the kernel
// (malloc_trim walks the free lists; at this rate it costs nothing
// measurable).
void Server::start_memory_trim() {
    trim_timer_.expires_after(std::chrono::seconds(5));
    trim_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        if (shared_.ended_since_trim.exchange(0) > 0) ::malloc_trim(0);
        start_memory_trim();
    });
}

// Blocks and volume counts older than rate_limit.batch_ms go to Redis.
void Server::start_batch_flush() {
    if (!batch_) return;
    const auto every = std::max(shared_.config.rate_limit.batch / 2, std::chrono::milliseconds(10));
    batch_timer_.expires_after(every);
    batch_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        batch_->flush();
        shared_.metrics.rate_limit_batch_entries(batch_->entries());
        start_batch_flush();
    });
}

void Server::begin_drain() {
    systemd::notify_stopping();
    shared_.health.draining = true;
    // Each on its own thread: an acceptor is not closed under its loop.
    for (auto& a : acceptors_)
        asio::post(context(a.thread), [&a] {
            error_code ec;
            a.socket->close(ec);
        });
    watch_timer_.cancel();
    trim_timer_.cancel();
    batch_timer_.cancel();
    if (poller_) poller_->stop();
    for (std::size_t i = 0; i < thread_count(); ++i)
        asio::post(context(i), [pool = shared_.upstream_pools[i].get()] { pool->drain(); });
    {
        std::lock_guard lock(shared_.sessions_mutex);
        for (auto& [id, wake] : shared_.wakers)
            wake();
    }
    // Sessions notice `draining` before their next read; the poll below
    // ends the process when the last one is gone or the deadline passes.
    drain_deadline_ = std::chrono::steady_clock::now() + shared_.config.drain_timeout;
    drain_poll();
}

void Server::drain_poll() {
    // Pooled relay connections get their QUIT (bounded by upstream.quit_seconds).
    const bool pools_drained =
        std::all_of(shared_.upstream_pools.begin(), shared_.upstream_pools.end(),
                    [](const auto& pool) { return pool->drained(); });
    if ((shared_.limiter->active() == 0 && pools_drained) ||
        std::chrono::steady_clock::now() >= drain_deadline_) {
        if (batch_ && !batch_flushed_) {
            // Unused units and unsent counts go to Redis before the loops
            // stop; its replies get one store timeout to arrive.
            batch_flushed_ = true;
            batch_->flush(true);
            drain_timer_.expires_after(shared_.config.rate_limit.timeout +
                                       std::chrono::milliseconds(50));
            drain_timer_.async_wait([this](const error_code& ec) {
                if (!ec) drain_poll();
            });
            return;
        }
        log_info("drain_finished", {{"sessions_left", shared_.limiter->active()}});
        if (admin_) admin_->stop();
        signals_.cancel();
        work_guards_.clear();
        for (auto& w : workers_)
            w->stop();
        io_.stop();
        return;
    }
    drain_timer_.expires_after(std::chrono::milliseconds(100));
    drain_timer_.async_wait([this](const error_code& ec) {
        if (!ec) drain_poll();
    });
}

void batch_audit_with(asio::steady_timer& timer, std::chrono::milliseconds interval) {
    Logger::batch_audit_on_this_thread([&timer, interval](std::function<void()> flush) {
        timer.expires_after(interval);
        timer.async_wait([flush = std::move(flush)](const error_code&) { flush(); });
    });
}

}  // namespace relaygate::server
