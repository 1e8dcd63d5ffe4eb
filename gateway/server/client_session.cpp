// The session runner: a for(;;) over machine.next(), one co_await per action.
// Client replies are batched and flushed before each read, which is what
// RFC 2920 pipelining expects of a server. Before the machine starts, the
// runner reads the PROXY protocol header (when the listener requires one)
// and performs implicit TLS.
#include "gateway/server/client_session.hpp"

#include <algorithm>
#include <chrono>

#include "gateway/proxy/proxy_protocol.hpp"
#include "gateway/server/dns_resolver.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/smtp_stream.hpp"
#include "gateway/server/upstream_client.hpp"
#include "gateway/smtp/reply.hpp"
#include "policy/engine/password_hash.hpp"

namespace relaygate::server {

using namespace net;
using session::Action;
using Clock = std::chrono::steady_clock;
using Stage = session::SessionMachine::Stage;

namespace {

class RunnerHooks final : public session::Hooks {
  public:
    explicit RunnerHooks(metrics::Metrics& m) : metrics_(m) {}
    double now() override {
        return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    }
    std::uint64_t unix_time() override {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
    }
    void on_domain_proof(std::string_view result) override { metrics_.domain_proof(result); }
    void on_dkim_result(std::string_view result) override { metrics_.dkim_signature(result); }
    void on_transaction(const session::TransactionRecord& r) override {
        metrics_.transaction(r.tenant, r.reason, r.report_only);
        if (r.relayed) metrics_.message_relayed(r.tenant, r.size);
        Logger::audit({{"type", "transaction"},
                       {"session", r.session_id},
                       {"client", r.client},
                       {"tenant", r.tenant},
                       {"identity", r.identity},
                       {"envelope_domain", r.envelope_domain},
                       {"header_from_domain", r.header_from_domain},
                       {"recipients", r.recipients},
                       {"size", r.size},
                       {"stage", r.stage},
                       {"reason", label(r.reason)},
                       {"report_only", r.report_only},
                       {"reply", r.reply},
                       {"queue_id", r.queue_id},
                       {"dkim", r.dkim},
                       {"duration_seconds", r.duration}});
    }
    void on_decision(std::string_view point, double seconds) override {
        metrics_.decision_latency(point, seconds);
    }
    void on_reply(int code) override { metrics_.smtp_reply(code); }

  private:
    metrics::Metrics& metrics_;
};

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
        const std::size_t n = co_await stream.read_some(asio::buffer(buf), ec);
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

awaitable<void> run_client_session(tcp::socket socket, Server::Shared& shared,
                                   std::size_t listener_index) {
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
    client.tcp().socket().set_option(tcp::no_delay(true), ec);
    std::string early_input;

    auto refuse = [&](std::string_view result, std::string_view reply) -> awaitable<void> {
        shared.metrics.connection_opened(result);
        error_code wec;
        client.expires_after(std::chrono::seconds(5));
        if (!reply.empty()) co_await client.write(asio::buffer(reply.data(), reply.size()), wec);
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
            log_warn("proxy_rejected", {{"peer", peer_addr}, {"reason", "untrusted_proxy"}});
            co_await refuse("rejected_proxy",
                            smtp::format_reply(smtp::make_reply(Reason::untrusted_proxy)));
            co_return;
        }
        std::string error;
        auto real = co_await read_proxy_header(client, listener.config, early_input, error);
        if (!real) {
            log_warn("proxy_rejected", {{"peer", peer_addr},
                                        {"reason", label(Reason::proxy_header_invalid)},
                                        {"detail", error}});
            co_await refuse("rejected_proxy",
                            smtp::format_reply(smtp::make_reply(Reason::proxy_header_invalid)));
            co_return;
        }
        info.address = *real;
    }

    auto slot = shared.limiter->acquire(info.address);
    if (!slot || shared.health.draining) {
        // Refuse politely (RFC 5321 3.1: 421 in place of the greeting).
        const bool draining = shared.health.draining;
        co_await refuse(draining ? "rejected_draining" : "rejected_limit",
                        draining ? "421 4.3.2 Service shutting down, try again later\r\n"
                                 : "421 4.7.0 Too many connections, try again later\r\n");
        co_return;
    }
    shared.metrics.connection_opened("accepted");

    RunnerHooks hooks(shared.metrics);
    auto policy = shared.policy->get();
    session::SessionMachine machine(listener.settings, policy, info, hooks);
    UpstreamClient upstream(client.tcp().get_executor(), shared.config.upstream,
                            shared.config.hostname, shared.metrics, shared.tls.client());
    XclientInfo xclient{info.address, {}};

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
    auto strand = client.tcp().get_executor();
    WakerRegistration waker(shared, [drain, strand] {
        asio::post(strand, [drain] {
            if (!drain->alive) return;
            drain->woken = true;
            if (drain->idle_read) drain->client->cancel();
        });
    });

    const auto& timeouts = shared.config.timeouts;
    std::string out;
    std::array<char, 65536> buf;
    Clock::time_point data_started{};
    std::uint64_t data_bytes = 0;
    bool in_data = false;
    std::string close_reason = "quit";

    auto flush = [&]() -> awaitable<bool> {
        if (out.empty()) co_return true;
        error_code wec;
        client.expires_after(timeouts.command);
        co_await client.write(asio::buffer(out), wec);
        out.clear();
        co_return !wec;
    };

    for (bool done = false; !done;) {
        Action a = machine.next();
        switch (a.kind) {
            case Action::Kind::send_client:
                out += a.bytes;
                break;
            case Action::Kind::read_client: {
                if (!co_await flush()) {
                    close_reason = "write_error";
                    machine.on_client_closed();
                    break;
                }
                const bool command_stage = machine.stage() == Stage::command;
                if (shared.health.draining && command_stage) machine.on_drain();
                // Deadlines: RFC 5321 4.5.3.2 per stage, plus a minimum data
                // rate during DATA so a slowloris cannot hold a slot forever.
                using ms = std::chrono::milliseconds;
                auto deadline = std::chrono::duration_cast<ms>(timeouts.command);
                bool rate_bound = false;
                if (!command_stage) {
                    if (!in_data) {
                        in_data = true;
                        data_started = Clock::now();
                        data_bytes = 0;
                    }
                    deadline = std::chrono::duration_cast<ms>(timeouts.data_block);
                    if (timeouts.min_data_rate > 0) {
                        const auto allowed =
                            timeouts.data_grace + ms(data_bytes * 1000 / timeouts.min_data_rate);
                        const auto left =
                            std::chrono::duration_cast<ms>(allowed - (Clock::now() - data_started));
                        if (left < deadline) {
                            deadline = std::max(left, ms(1));
                            rate_bound = true;
                        }
                    }
                } else {
                    in_data = false;
                }
                client.expires_after(deadline);
                error_code rec;
                drain->idle_read = command_stage;
                const std::size_t n = co_await client.read_some(asio::buffer(buf), rec);
                drain->idle_read = false;
                if (rec == beast::error::timeout) {
                    close_reason = rate_bound ? "data_too_slow" : "timeout";
                    machine.on_timeout(rate_bound ? Reason::data_too_slow : Reason::timeout);
                } else if (rec == asio::error::operation_aborted && drain->woken) {
                    close_reason = "drain";
                    machine.on_timeout(Reason::shutting_down);
                } else if (rec) {
                    close_reason = "client_closed";
                    machine.on_client_closed();
                } else {
                    data_bytes += n;
                    machine.on_client_data(std::string_view(buf.data(), n));
                }
                break;
            }
            // g++ 12 mishandles co_await inside a call's argument list: bind
            // each result to a named variable first.
            case Action::Kind::upstream_connect: {
                xclient.helo = machine.client_helo();
                auto r = co_await upstream.connect(xclient);
                machine.on_upstream_result(std::move(r));
                break;
            }
            case Action::Kind::upstream_command: {
                auto r = co_await upstream.command(std::move(a.bytes), a.step);
                machine.on_upstream_result(std::move(r));
                break;
            }
            case Action::Kind::upstream_write: {
                auto r = co_await upstream.write(std::move(a.bytes));
                machine.on_upstream_result(std::move(r));
                break;
            }
            case Action::Kind::upstream_commit: {
                auto r = co_await upstream.commit(std::move(a.bytes));
                machine.on_upstream_result(std::move(r));
                break;
            }
            case Action::Kind::upstream_abort:
                upstream.abort();
                break;
            case Action::Kind::upstream_quit:
                co_await upstream.quit();
                break;
            case Action::Kind::start_tls: {
                if (!co_await flush()) {
                    machine.on_client_closed();
                    break;
                }
                co_await handshake();
                break;
            }
            case Action::Kind::verify_auth: {
                // PBKDF2 runs on the auth pool, then we hop back to the strand.
                const std::string* hash = policy->sasl_hash(a.bytes);
                bool ok = false;
                co_await asio::post(shared.auth_pool->get_executor(), use_awaitable);
                ok = hash && policy::verify_password(*hash, a.secret);
                co_await asio::post(strand, use_awaitable);
                if (!ok) {
                    // A short delay slows password guessing (Postfix: 1 s).
                    asio::steady_timer delay(strand, std::chrono::seconds(1));
                    co_await delay.async_wait(asio::redirect_error(use_awaitable, ec));
                }
                shared.metrics.auth(ok ? "success" : "failure");
                machine.on_auth_result(ok);
                break;
            }
            case Action::Kind::dns_lookup: {
                // Flush first: replies already decided need not wait for DNS.
                if (!co_await flush()) {
                    machine.on_client_closed();
                    break;
                }
                if (!shared.dns) {
                    dns::Answer none;  // status error
                    none.detail = "no DNS resolver";
                    machine.on_dns_result(none);
                    break;
                }
                dns::Answer answer =
                    co_await shared.dns->resolve(std::move(a.bytes), dns::RrType::txt);
                machine.on_dns_result(answer);
                break;
            }
            case Action::Kind::close:
                co_await flush();
                done = true;
                break;
        }
    }
    client.close();
    shared.metrics.connection_closed();
    Logger::audit(
        {{"type", "connection"},
         {"session", info.session_id},
         {"client", info.address},
         {"peer", peer_addr},
         {"tls", client.tls()},
         {"transactions", machine.transactions()},
         {"close", close_reason},
         {"duration_seconds", std::chrono::duration<double>(Clock::now() - started).count()}});
}

}  // namespace relaygate::server
