// The session runner: a for(;;) over machine.next(), one co_await per action.
// Client replies are batched and flushed before each read, which is what
// RFC 2920 pipelining expects of a server.
#include "gateway/server/client_session.hpp"

#include <algorithm>
#include <chrono>

#include "gateway/server/log.hpp"
#include "gateway/server/upstream_client.hpp"

namespace relaygate::server {

using namespace net;
using session::Action;
using Clock = std::chrono::steady_clock;

namespace {

class RunnerHooks final : public session::Hooks {
  public:
    explicit RunnerHooks(metrics::Metrics& m) : metrics_(m) {}
    double now() override {
        return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    }
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
                       {"duration_seconds", r.duration}});
    }
    void on_decision(std::string_view point, double seconds) override {
        metrics_.decision_latency(point, seconds);
    }
    void on_reply(int code) override { metrics_.smtp_reply(code); }

  private:
    metrics::Metrics& metrics_;
};

}  // namespace

awaitable<void> run_client_session(tcp::socket socket, Server::Shared& shared) {
    const auto started = Clock::now();
    error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    const std::string client_addr = ec ? std::string() : remote.address().to_string();
    session::ClientInfo info;
    info.session_id = shared.session_prefix + std::to_string(++shared.next_session);
    info.address = client_addr;
    info.port = ec ? 0 : remote.port();

    beast::tcp_stream client(std::move(socket));
    auto slot = shared.limiter->acquire(client_addr);
    if (!slot || shared.health.draining) {
        // Refuse politely (RFC 5321 3.1: 421 in place of the greeting).
        const bool draining = shared.health.draining;
        shared.metrics.connection_opened(draining ? "rejected_draining" : "rejected_limit");
        const std::string reply = draining ? "421 4.3.2 Service shutting down, try again later\r\n"
                                           : "421 4.7.0 Too many connections, try again later\r\n";
        client.expires_after(std::chrono::seconds(5));
        co_await asio::async_write(client, asio::buffer(reply),
                                   asio::redirect_error(use_awaitable, ec));
        client.socket().shutdown(tcp::socket::shutdown_both, ec);
        co_return;
    }
    shared.metrics.connection_opened("accepted");
    client.socket().set_option(tcp::no_delay(true), ec);

    RunnerHooks hooks(shared.metrics);
    auto policy = shared.policy->get();
    session::SessionMachine machine(shared.settings, policy, info, hooks);
    UpstreamClient upstream(client.get_executor(), shared.config.upstream, shared.config.hostname,
                            shared.metrics);
    XclientInfo xclient{client_addr, {}};

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
        co_await asio::async_write(client, asio::buffer(out),
                                   asio::redirect_error(use_awaitable, wec));
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
                if (shared.health.draining &&
                    machine.stage() == session::SessionMachine::Stage::command)
                    machine.on_drain();
                // Deadlines: RFC 5321 4.5.3.2 per stage, plus a minimum data
                // rate during DATA so a slowloris cannot hold a slot forever.
                auto deadline =
                    std::chrono::duration_cast<std::chrono::milliseconds>(timeouts.command);
                bool rate_bound = false;
                if (machine.stage() == session::SessionMachine::Stage::data) {
                    if (!in_data) {
                        in_data = true;
                        data_started = Clock::now();
                        data_bytes = 0;
                    }
                    deadline =
                        std::chrono::duration_cast<std::chrono::milliseconds>(timeouts.data_block);
                    if (timeouts.min_data_rate > 0) {
                        const auto allowed =
                            timeouts.data_grace +
                            std::chrono::milliseconds(data_bytes * 1000 / timeouts.min_data_rate);
                        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            allowed - (Clock::now() - data_started));
                        if (left < deadline) {
                            deadline = std::max(left, std::chrono::milliseconds(1));
                            rate_bound = true;
                        }
                    }
                } else {
                    in_data = false;
                }
                client.expires_after(deadline);
                error_code rec;
                const std::size_t n = co_await client.async_read_some(
                    asio::buffer(buf), asio::redirect_error(use_awaitable, rec));
                if (rec == beast::error::timeout) {
                    close_reason = rate_bound ? "data_too_slow" : "timeout";
                    machine.on_timeout(rate_bound ? Reason::data_too_slow : Reason::timeout);
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
            case Action::Kind::close:
                co_await flush();
                done = true;
                break;
        }
    }
    client.socket().shutdown(tcp::socket::shutdown_both, ec);
    client.close();
    shared.metrics.connection_closed();
    Logger::audit(
        {{"type", "connection"},
         {"session", info.session_id},
         {"client", client_addr},
         {"transactions", machine.transactions()},
         {"close", close_reason},
         {"duration_seconds", std::chrono::duration<double>(Clock::now() - started).count()}});
}

}  // namespace relaygate::server
