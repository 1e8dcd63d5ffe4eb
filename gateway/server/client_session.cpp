// The session runner: a for(;;) over machine.next(), one co_await per action.
// Client replies are batched and flushed before each read, which is what
// RFC 2920 pipelining expects of a server. Before the machine starts, the
// runner reads the PROXY protocol header (when the listener requires one)
// and performs implicit TLS.
#include "gateway/server/client_session.hpp"

#include <algorithm>
#include <chrono>

#include "gateway/proxy/proxy_protocol.hpp"
#include "gateway/server/callback_awaitable.hpp"
#include "gateway/server/dns_resolver.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/smtp_stream.hpp"
#include "gateway/server/upstream_client.hpp"
#include "gateway/server/upstream_pool.hpp"
#include "gateway/session/auth_throttle.hpp"
#include "gateway/session/read_deadline.hpp"
#include "gateway/smtp/reply.hpp"
#include "policy/engine/password_hash.hpp"

namespace relaygate::server {

using namespace net;
using session::Action;
using Clock = std::chrono::steady_clock;
using Stage = session::SessionMachine::Stage;

namespace {

// Actions that first send the client the replies decided so far.
bool flushes_first(const session::Action& a) {
    using namespace session;
    switch (a.index()) {
        case index_of<act::ReadClient>:
        case index_of<act::StartTls>:
        case index_of<act::DnsLookup>:
        case index_of<act::Close>:
            return true;
        default:
            return false;
    }
}

// The 64 KiB read buffers of the data phase, kept for reuse on this thread:
// a session holds one only while it reads message data (an idle connection
// holds none), and taking one back costs neither an allocation nor zeroing.
class DataBuffers {
  public:
    static constexpr std::size_t kSize = 65536;
    static std::unique_ptr<char[]> take() {
        auto& kept = list();
        if (kept.empty()) return std::make_unique_for_overwrite<char[]>(kSize);
        auto buffer = std::move(kept.back());
        kept.pop_back();
        return buffer;
    }
    static void give_back(std::unique_ptr<char[]>& buffer) {
        if (!buffer) return;
        if (auto& kept = list(); kept.size() < kKept) kept.push_back(std::move(buffer));
        buffer.reset();
    }

  private:
    static constexpr std::size_t kKept = 8;  // per thread: 512 KiB at most
    static std::vector<std::unique_ptr<char[]>>& list() {
        thread_local std::vector<std::unique_ptr<char[]>> kept;
        return kept;
    }
};

class RunnerHooks final : public session::Hooks {
  public:
    RunnerHooks(metrics::Metrics& m, PolicyHolder& policy, std::atomic<std::uint64_t>& ended,
                const std::string& session_id, bool tenant_label)
        : metrics_(m),
          policy_(policy),
          ended_(ended),
          session_id_(session_id),
          tenant_label_(tenant_label) {}
    std::shared_ptr<const policy::Policy> current_policy() override { return policy_.get(); }
    double now() override {
        return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    }
    std::uint64_t unix_time() override {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
    }
    void on_domain_proof(std::string_view result) override { metrics_.domain_proof(result); }
    void on_dkim_result(const dkim::VerifyResult& r) override {
        metrics_.dkim_signature(dkim::to_string(r.status));
    }
    void on_transaction(const session::TransactionRecord& r) override {
        ++ended_;
        metrics_.transaction(r.tenant, r.reason, r.report_only);
        if (r.relayed) metrics_.message_relayed(r.tenant, r.size);
        AuditLine("transaction")
            .field("session", r.session_id)
            .field("client", r.client)
            .field("tenant", r.tenant)
            .field("identity", r.identity)
            .field("envelope_domain", r.envelope_domain)
            .field("header_from_domain", r.header_from_domain)
            .field("recipients", r.recipients)
            .field("size", r.size)
            .field("stage", r.stage)
            .field("reason", label(r.reason))
            .field("report_only", r.report_only)
            .field("reply", r.reply)
            .field("queue_id", r.queue_id)
            .field("dkim", r.dkim)
            .field("commit_unknown", r.commit_unknown)
            .field("limit", r.limit)
            .field("duration_seconds", r.duration)
            .write();
    }
    void on_limits_outcome(std::string_view, const ratelimit::Outcome& o) override {
        metrics_.rate_limit_decision(o.status == ratelimit::Outcome::Status::store_error
                                         ? "store_error"
                                     : o.allowed ? "allowed"
                                                 : "limited");
    }
    void on_lease(std::string_view event, std::uint64_t units) override {
        metrics_.rate_limit_lease(event, units);
    }
    void on_rate_limited(std::string_view limit, bool reported, std::string_view tenant,
                         std::string_view detail) override {
        metrics_.rate_limited(limit, reported);
        AuditLine("rate_limit")
            .field("session", session_id_)
            .field("tenant", tenant)
            .field("limit", limit)
            .field("action", reported ? "reported" : "refused")
            .field("detail", detail)
            .write();
    }
    void on_anomaly(std::string_view kind, std::string_view tenant,
                    std::string_view detail) override {
        record_anomaly(metrics_, tenant_label_, session_id_, kind, tenant, detail);
    }
    void on_decision(std::string_view point, double seconds) override {
        metrics_.decision_latency(point, seconds);
    }
    void on_reply(int code) override { metrics_.smtp_reply(code); }
    void on_transition(std::string_view what, std::string_view from, std::string_view to) override {
        if (Logger::enabled(Level::debug))
            Logger::log(Level::debug, "session_state",
                        {{"session", session_id_}, {"what", what}, {"from", from}, {"to", to}});
    }

  private:
    metrics::Metrics& metrics_;
    PolicyHolder& policy_;
    std::atomic<std::uint64_t>& ended_;
    const std::string& session_id_;
    bool tenant_label_;  // anomalies.tenant_label: a tenant label on relaygate_anomalies_total
};

// Runs `fn` on `pool` and resumes the calling coroutine on its own executor
// (the connection's thread) with the result. `co_await post(pool)` alone
// would not do: Asio 1.18 resumes an awaitable on the coroutine's executor,
// so the work would still run on the I/O thread.
template <class Fn>
awaitable<bool> run_on_pool(asio::thread_pool& pool, Fn fn) {
    auto initiate = [&pool, fn = std::move(fn)](auto handler) mutable {
        asio::post(pool, [handler = std::move(handler), fn = std::move(fn)]() mutable {
            const bool result = fn();
            auto home = asio::get_associated_executor(handler);
            asio::dispatch(home,
                           [handler = std::move(handler), result]() mutable { handler(result); });
        });
    };
    co_return co_await asio::async_initiate<decltype(use_awaitable), void(bool)>(initiate,
                                                                                 use_awaitable);
}

// A hash for unknown users when the policy has none (no SASL users at all).
const std::string& fallback_decoy_hash() {
    static const std::string decoy = policy::decoy_password_hash();
    return decoy;
}

void audit_auth(const session::ClientInfo& info, std::string_view user, std::string_view result,
                std::string_view scope = {}) {
    AuditLine line("auth");
    line.field("session", info.session_id)
        .field("client", info.address)
        // Client-supplied: bounded, and escaped by the JSON writer.
        .field("user", user.substr(0, 128))
        .field("result", result);
    if (!scope.empty()) line.field("scope", scope);
    line.write();
}

// Registers a waker for the drain; removes it when the session ends.
class WakerRegistration {
  public:
    WakerRegistration(Server::Shared& shared, std::function<void()> wake) : shared_(shared) {
        id_ = ++shared_.next_waker;
        std::lock_guard lock(shared_.sessions_mutex);
        shared_.wakers.emplace(id_, std::move(wake));
    }
    ~WakerRegistration() {
        std::lock_guard lock(shared_.sessions_mutex);
        shared_.wakers.erase(id_);
    }

  private:
    Server::Shared& shared_;
    std::uint64_t id_ = 0;
};

proxy::Versions versions(config::ProxyProtocol p) {
    switch (p) {
        case config::ProxyProtocol::v1:
            return proxy::Versions::v1;
        case config::ProxyProtocol::v2:
            return proxy::Versions::v2;
        default:
            return proxy::Versions::both;
    }
}

// Reads the PROXY header. Returns the real client address ("" when the
// header carries none, e.g. LOCAL health checks) and leaves the bytes that
// followed it in `leftover`; nullopt means the connection must be dropped.
awaitable<std::optional<std::string>> read_proxy_header(SmtpStream& stream,
                                                        const config::Listener& cfg,
                                                        std::string& leftover, std::string& error) {
    proxy::ProxyParser parser(versions(cfg.proxy_protocol));
    std::array<char, 1024> buf;
    const auto deadline = Clock::now() + cfg.proxy_timeout;
    for (;;) {
        error_code ec;
        stream.expires_after(deadline - Clock::now());
        std::size_t n = 0;
        co_await stream.read_some(asio::buffer(buf), ec, n);
        if (ec) {
            error = ec == beast::error::timeout ? "timeout" : ec.message();
            co_return std::nullopt;
        }
        const std::string_view in(buf.data(), n);
        auto ev = parser.feed(in);
        if (ev.kind == proxy::ProxyEvent::Kind::need_more) continue;
        if (ev.kind == proxy::ProxyEvent::Kind::error) {
            error = std::string(proxy::to_string(ev.error));
            co_return std::nullopt;
        }
        leftover.assign(in.substr(ev.consumed));
        // UNKNOWN / LOCAL carry no usable address: such a client can still
        // authenticate, but no network or provider identity applies.
        co_return ev.header.usable_for_identity() ? ev.header.src_addr : std::string();
    }
}

}  // namespace

void record_anomaly(metrics::Metrics& metrics, bool tenant_label, std::string_view session,
                    std::string_view kind, std::string_view tenant, std::string_view detail) {
    metrics.anomaly(kind, tenant_label ? tenant : std::string_view());
    AuditLine line("anomaly");
    if (!session.empty()) line.field("session", session);
    line.field("kind", kind).field("tenant", tenant).field("detail", detail).write();
}

awaitable<void> run_client_session(tcp::socket socket, Server::Shared& shared,
                                   std::size_t listener_index, UpstreamPool& pool) {
    const auto started = Clock::now();
    const auto& listener = shared.listeners[listener_index];
    error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    const std::string peer_addr = ec ? std::string() : remote.address().to_string();
    session::ClientInfo info;
    info.session_id = shared.session_prefix + std::to_string(++shared.next_session);
    info.address = peer_addr;
    info.port = ec ? 0 : remote.port();

    SmtpStream client(std::move(socket));
    client.socket().set_option(tcp::no_delay(true), ec);
    std::string early_input;

    // A refusal before the greeting: the reply comes from the reason table.
    auto refuse = [&](std::string_view result, Reason why) -> awaitable<void> {
        shared.metrics.connection_opened(result);
        const std::string reply = smtp::format_reply(smtp::make_reply(why));
        error_code wec;
        client.expires_after(std::chrono::seconds(5));
        co_await client.write(asio::buffer(reply.data(), reply.size()), wec);
        client.close();
    };

    if (listener.config.proxy_protocol != config::ProxyProtocol::off) {
        // The header is accepted only from the configured load balancers;
        // anyone else could claim any client address (HAProxy spec 2).
        auto peer = policy::IpAddress::parse(peer_addr);
        const bool trusted =
            peer && std::any_of(listener.trusted_proxies.begin(), listener.trusted_proxies.end(),
                                [&](const policy::Cidr& c) { return c.contains(*peer); });
        if (!trusted) {
            log_warn("proxy_rejected",
                     {{"peer", peer_addr}, {"reason", label(Reason::untrusted_proxy)}});
            co_await refuse("rejected_proxy", Reason::untrusted_proxy);
            co_return;
        }
        std::string error;
        auto real = co_await read_proxy_header(client, listener.config, early_input, error);
        if (!real) {
            log_warn("proxy_rejected", {{"peer", peer_addr},
                                        {"reason", label(Reason::proxy_header_invalid)},
                                        {"detail", error}});
            co_await refuse("rejected_proxy", Reason::proxy_header_invalid);
            co_return;
        }
        info.address = *real;
    }

    auto slot = shared.limiter->acquire(info.address);
    if (!slot || shared.health.draining) {
        // Refuse politely (RFC 5321 3.1: 421 in place of the greeting).
        const bool draining = shared.health.draining;
        co_await refuse(draining ? "rejected_draining" : "rejected_limit",
                        draining ? Reason::shutting_down : Reason::too_many_connections);
        co_return;
    }
    shared.metrics.connection_opened("accepted");

    RunnerHooks hooks(shared.metrics, *shared.policy, shared.ended_since_trim, info.session_id,
                      shared.config.anomalies.tenant_label);
    auto policy = shared.policy->get();
    session::SessionMachine machine(listener.settings, policy, info, hooks);
    // The relay connection: taken from the thread's pool or opened at the
    // first MAIL FROM, handed back to the pool when the session is done.
    std::unique_ptr<UpstreamClient> upstream;
    XclientInfo xclient{info.address, {}};
    // The first pooled connection's RSET rides with the MAIL (relays that
    // offer PIPELINING); once one was found dead, the session checks each
    // before use, so a relay restart costs a sender at most one retry.
    bool defer_rset = true;
    auto open_upstream = [&]() -> awaitable<session::UpstreamResult> {
        // A pooled connection the relay closed while idle fails its RSET;
        // two such in a row and the pool is left to expire.
        for (int tries = 0; tries < 2; ++tries) {
            auto pooled = pool.take(xclient);
            if (!pooled) break;
            auto r = co_await pooled->reuse(xclient, defer_rset);
            if (r.ok) {
                pool.reused();
                upstream = std::move(pooled);
                co_return r;
            }
            pool.stale();
        }
        if (!upstream)
            upstream = std::make_unique<UpstreamClient>(
                client.get_executor(), shared.config.upstream, shared.config.hostname,
                shared.metrics, shared.tls.client());
        // A relay at its process limit greets only when a connection ends.
        RelayBusyWatch busy(client.get_executor(), shared.relay_waiting, shared.upstream_pools);
        auto r = co_await upstream->connect(xclient);
        co_return r;
    };
    // Every upstream action but the connect follows a successful connect.
    auto not_connected = [] {
        session::UpstreamResult r;
        r.failure = Reason::upstream_failed;
        return r;
    };

    auto handshake = [&]() -> awaitable<bool> {
        auto ctx = shared.tls.server(listener.config.request_client_certificate);
        error_code hec;
        client.expires_after(std::chrono::seconds(30));
        if (ctx) co_await client.handshake(*ctx, true, {}, hec);
        const bool ok = ctx && !hec;
        shared.metrics.tls_handshake(ok ? "success" : "failure");
        if (!ok)
            log_warn("tls_handshake_failed",
                     {{"session", info.session_id}, {"error", hec.message()}});
        machine.on_tls_result(
            ok, ok ? peer_certificate_facts(client.native_tls()) : policy::ConnectionFacts{});
        co_return ok;
    };
    if (listener.config.implicit_tls) co_await handshake();
    if (!early_input.empty()) machine.on_client_data(early_input);

    // Drain: a session idle in a command read is woken so it can answer 421.
    // The waker's handler may run after this frame is gone, so everything it
    // touches lives in `drain`, which the frame marks dead on every exit.
    struct DrainState {
        bool alive = true;
        bool idle_read = false;
        bool woken = false;
        SmtpStream* client = nullptr;
    };
    auto drain = std::make_shared<DrainState>();
    drain->client = &client;
    struct MarkDead {
        std::shared_ptr<DrainState> state;
        ~MarkDead() { state->alive = false; }
    } mark_dead{drain};
    auto home = client.get_executor();
    WakerRegistration waker(shared, [drain, home] {
        asio::post(home, [drain] {
            if (!drain->alive) return;
            drain->woken = true;
            if (drain->idle_read) drain->client->cancel();
        });
    });

    const auto& timeouts = shared.config.timeouts;
    std::string out;
    // Reads land in a small buffer while commands arrive; a 64 KiB one is
    // held only during DATA, so an idle connection holds neither.
    std::array<char, 2048> command_buf;
    std::unique_ptr<char[]> data_buf;
    std::string close_reason = "quit";
    session::ReadDeadline deadline(timeouts, shared.config.upstream.idle_timeout, started);
    auto upstream_used = Clock::now();

    for (bool done = false; !done;) {
        Action a = machine.next();
        // The replies so far go out before a read, STARTTLS, a DNS lookup
        // (replies already decided need not wait for it) and the close, in
        // this frame (no coroutine of its own). A client that cannot take
        // them is gone, and the connection record says why.
        if (!out.empty() && flushes_first(a)) {
            error_code wec;
            client.expires_after(timeouts.command);
            co_await client.write(asio::buffer(out), wec);
            if (out.capacity() > 4096)
                std::string().swap(out);
            else
                out.clear();
            if (wec && a.index() != session::index_of<session::act::Close>) {
                close_reason = "write_error";
                machine.on_client_closed();
                continue;
            }
        }
        switch (a.index()) {
            case session::index_of<session::act::SendClient>:
                out += std::get<session::act::SendClient>(a).bytes;
                break;
            case session::index_of<session::act::ReadClient>: {
                const bool command_stage = machine.stage() == Stage::command;
                if (shared.health.draining && command_stage) machine.on_drain();
                const auto now = Clock::now();
                const auto next =
                    deadline.before_read(now, {command_stage, machine.partial_command(),
                                               machine.upstream_idle(), upstream_used});
                asio::mutable_buffer target;
                if (command_stage) {
                    DataBuffers::give_back(data_buf);
                    target = asio::buffer(command_buf);
                } else {
                    if (!data_buf) data_buf = DataBuffers::take();
                    target = asio::buffer(data_buf.get(), DataBuffers::kSize);
                }
                client.expires_after(
                    std::max(next.at - now, Clock::duration(std::chrono::milliseconds(1))));
                error_code rec;
                drain->idle_read = command_stage;
                std::size_t n = 0;
                co_await client.read_some(target, rec, n);
                drain->idle_read = false;
                if (rec == beast::error::timeout) {
                    if (next.wake == session::ReadDeadline::Wake::upstream_idle) {
                        // Not the client's fault: close the idle relay
                        // connection and keep waiting for the command.
                        machine.on_upstream_idle();
                    } else {
                        close_reason = std::string(session::close_label(next.wake));
                        machine.on_timeout(session::reason(next.wake));
                    }
                } else if (rec == asio::error::operation_aborted && drain->woken) {
                    close_reason = "drain";
                    machine.on_timeout(Reason::shutting_down);
                } else if (rec) {
                    close_reason = "client_closed";
                    machine.on_client_closed();
                } else {
                    deadline.on_read(n);
                    machine.on_client_data(
                        std::string_view(static_cast<const char*>(target.data()), n));
                }
                break;
            }
            // g++ 12 mishandles co_await inside a call's argument list: bind
            // each result to a named variable first.
            case session::index_of<session::act::UpstreamConnect>: {
                xclient.helo = machine.client_helo();
                auto r = co_await open_upstream();
                upstream_used = Clock::now();
                machine.on_upstream_result(std::move(r));
                break;
            }
            case session::index_of<session::act::UpstreamCommand>: {
                auto& c = std::get<session::act::UpstreamCommand>(a);
                auto r = not_connected();
                if (upstream)
                    r = co_await upstream->command(std::move(c.line), c.step, c.then_rcpt);
                if (upstream && upstream->stale()) {
                    // Its deferred RSET found the pooled connection dead: the
                    // session tries once more (UpstreamConnect), checked.
                    pool.stale();
                    defer_rset = false;
                }
                upstream_used = Clock::now();
                machine.on_upstream_result(std::move(r));
                break;
            }
            case session::index_of<session::act::UpstreamWrite>: {
                auto r = not_connected();
                if (upstream)
                    r = co_await upstream->write(
                        std::move(std::get<session::act::UpstreamWrite>(a).bytes));
                upstream_used = Clock::now();
                machine.on_upstream_result(std::move(r));
                break;
            }
            case session::index_of<session::act::UpstreamCommit>: {
                auto& c = std::get<session::act::UpstreamCommit>(a);
                std::string bytes = std::move(c.data);  // one write: data and "."
                bytes += c.terminator;
                if (c.terminator.empty()) shared.metrics.upstream_chunked();  // one BDAT LAST
                auto r = not_connected();
                if (upstream) r = co_await upstream->commit(std::move(bytes));
                upstream_used = Clock::now();
                machine.on_upstream_result(std::move(r));
                break;
            }
            case session::index_of<session::act::UpstreamAbort>:
                if (upstream) upstream->abort();
                break;
            case session::index_of<session::act::UpstreamQuit>:
                // The pool keeps it if it is clean, and QUITs it otherwise.
                pool.release(std::move(upstream), upstream_used);
                break;
            case session::index_of<session::act::StartTls>:
                co_await handshake();
                break;
            case session::index_of<session::act::VerifyAuth>: {
                auto& v = std::get<session::act::VerifyAuth>(a);
                const std::string& user = v.user;
                auto& throttle = *shared.auth_throttle;
                const double t_now = hooks.now();
                if (auto scope = throttle.admit(info.address, user, t_now);
                    scope != session::AuthThrottle::Scope::none) {
                    // Refused without looking at the password: a throttled
                    // guess costs the attacker a round trip and us nothing.
                    shared.metrics.auth("throttled");
                    shared.metrics.auth_throttled(session::to_string(scope));
                    audit_auth(info, user, "throttled", session::to_string(scope));
                    machine.on_auth_throttled();
                    break;
                }
                // A bounded queue: a flood of guesses from many addresses
                // gets 454 instead of growing it (and everybody's wait).
                const std::uint32_t ahead = shared.auth_pending.fetch_add(1);
                if (ahead >= shared.config.auth_throttle.max_pending) {
                    shared.auth_pending.fetch_sub(1);
                    shared.metrics.auth("busy");
                    audit_auth(info, user, "busy");
                    machine.on_auth_busy();
                    break;
                }
                shared.metrics.auth_pending(ahead + 1);
                // Unknown users are checked against a decoy hash of the same
                // cost, so the reply time does not tell which users exist.
                auto current = shared.policy->get();
                const std::string* known = current ? current->sasl_hash(user) : nullptr;
                std::string hash = known ? *known
                                   : current && !current->sasl_decoy_hash().empty()
                                       ? current->sasl_decoy_hash()
                                       : fallback_decoy_hash();
                auto check = [hash = std::move(hash), password = std::move(v.password)] {
                    return policy::verify_password(hash, password);
                };
                const bool matched = co_await run_on_pool(*shared.auth_pool, std::move(check));
                shared.metrics.auth_pending(shared.auth_pending.fetch_sub(1) - 1);
                const bool ok = matched && known != nullptr;
                shared.metrics.auth_throttle_entries(throttle.size());
                if (ok) {
                    throttle.succeeded(info.address, user, hooks.now());  // not a failure
                } else if (shared.config.auth_throttle.failure_delay.count() > 0) {
                    // A short delay slows guessing further (Postfix: 1 s).
                    asio::steady_timer delay(home, shared.config.auth_throttle.failure_delay);
                    co_await delay.async_wait(asio::redirect_error(use_awaitable, ec));
                }
                shared.metrics.auth(ok ? "success" : "failure");
                audit_auth(info, user, ok ? "success" : "failure");
                machine.on_auth_result(ok);
                break;
            }
            case session::index_of<session::act::DnsLookup>: {
                if (!shared.dns) {
                    dns::Answer none;  // status error
                    none.detail = "no DNS resolver";
                    machine.on_dns_result(none);
                    break;
                }
                dns::Answer answer = co_await shared.dns->resolve(
                    std::move(std::get<session::act::DnsLookup>(a).name), dns::RrType::txt);
                machine.on_dns_result(answer);
                break;
            }
            case session::index_of<session::act::CheckLimits>: {
                auto& request = std::get<session::act::CheckLimits>(a).request;
                auto& store = *shared.limits;
                // The memory store, or the batch store from the units it
                // holds, answers at once: no suspension, no executor hop.
                if (auto now = store.decide_now(request)) {
                    machine.on_limits_result(*now);
                    break;
                }
                ratelimit::Outcome outcome = co_await await_callback<ratelimit::Outcome>(
                    [&](auto done) { store.submit(std::move(request), std::move(done)); });
                machine.on_limits_result(outcome);
                break;
            }
            case session::index_of<session::act::RefundLimits>: {
                // Not waited for: nothing in the session depends on it. The
                // store keeps its requests in order on this thread's
                // connection, so the next transaction's MAIL FROM sees it.
                auto& refund = std::get<session::act::RefundLimits>(a);
                auto& metrics = shared.metrics;
                auto counted = [&metrics, units = refund.units](ratelimit::Outcome o) {
                    const bool ok = o.status == ratelimit::Outcome::Status::ok && !o.fallback;
                    metrics.rate_limit_lease(ok ? "refunded" : "lost", units);
                };
                shared.limits->submit(std::move(refund.request), std::move(counted));
                break;
            }
            case session::index_of<session::act::Close>:
                done = true;
                break;
        }
    }
    DataBuffers::give_back(data_buf);
    client.close();
    shared.metrics.connection_closed();
    ++shared.ended_since_trim;
    AuditLine("connection")
        .field("session", info.session_id)
        .field("client", info.address)
        .field("peer", peer_addr)
        .field("tls", client.tls())
        .field("transactions", machine.transactions())
        .field("close", close_reason)
        .field("duration_seconds", std::chrono::duration<double>(Clock::now() - started).count())
        .write();
}

}  // namespace relaygate::server
