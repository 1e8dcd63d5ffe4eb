// RedisClient implementation. Everything runs on one strand: a coroutine
// connects (resolve, TCP, TLS, AUTH under one deadline), reads replies and
// matches them FIFO to the commands written; writes are batched (all the
// commands waiting go out in one write: pipelining); a watchdog timer
// holds every command to its deadline. Any fault closes the connection
// and fails everything pending: with pipelining, a reply after a lost one
// could not be matched to its command.
#include "gateway/server/redis_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

#include <fmt/core.h>

#include "gateway/common/file.hpp"
#include "gateway/redis/address.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/tls_context.hpp"

namespace relaygate::server {

using namespace net;
using Clock = std::chrono::steady_clock;

std::string_view redis_error_kind(std::string_view error) {
    if (error.starts_with("timeout:")) return "timeout";
    if (error.starts_with("protocol:")) return "protocol";
    return "connect";
}

Result<std::string, std::string> read_password_file(const std::string& path) {
    auto pw = read_secret_file(path);
    if (!pw) return unexpected("cannot read " + path);
    if (pw->empty()) return unexpected(path + " is empty");
    return std::move(*pw);
}

void RedisClient::Conn::close() {
    error_code ec;
    resolver.cancel();
    socket.close(ec);  // cancels every operation of the TLS stream over it too
}

std::shared_ptr<RedisClient> RedisClient::create(asio::any_io_executor ex,
                                                 RedisClientOptions options) {
    std::shared_ptr<RedisClient> c(new RedisClient(ex, std::move(options)));
    // run() handles every I/O error itself; an exception here is a bug.
    asio::co_spawn(c->strand_, c->run(c), log_exception("redis client"));
    return c;
}

RedisClient::RedisClient(asio::any_io_executor ex, RedisClientOptions options)
    : strand_(asio::make_strand(ex)),
      options_(std::move(options)),
      watchdog_(strand_),
      connect_timer_(strand_),
      backoff_timer_(strand_) {
    const auto hp = resp::parse_host_port(options_.address);
    if (!hp) throw std::runtime_error("bad Redis address \"" + options_.address + "\"");
    host_ = hp->host;
    port_ = hp->port;
    if (!options_.tls) return;
    // Always verified: counters shared with an impostor would let it lift
    // every limit (and a password sent in clear to it would leak).
    std::string error;
    tls_ctx_ = make_verifying_client_context(options_.ca_file, error);
    if (!tls_ctx_) throw std::runtime_error(error);
    error_code ec;
    if (!options_.cert_file.empty()) {
        tls_ctx_->use_certificate_chain_file(options_.cert_file, ec);
        if (ec) throw std::runtime_error("cannot load " + options_.cert_file + ": " + ec.message());
        tls_ctx_->use_private_key_file(options_.key_file, asio::ssl::context::pem, ec);
        if (ec) throw std::runtime_error("cannot load " + options_.key_file + ": " + ec.message());
    }
}

RedisClient::~RedisClient() = default;

void RedisClient::call(std::vector<std::string> argv, Done done) {
    // Always posted, never run inline: a completion that calls call()
    // again must not re-enter the reply loop.
    asio::post(strand_, [self = shared_from_this(), argv = std::move(argv),
                         done = std::move(done)]() mutable {
        self->enqueue(std::move(argv), std::move(done));
    });
}

void RedisClient::close() {
    asio::post(strand_, [self = shared_from_this()] {
        if (self->state_ == State::closed) return;
        self->fail_connection("connect: client closed");
        self->set_state(State::closed);
        self->backoff_timer_.cancel();
        self->connect_timer_.cancel();
        self->watchdog_.cancel();
        self->fail_all("connect: client closed");
    });
}

void RedisClient::set_state(State s) {
    if (state_ == s || state_ == State::closed) return;
    const bool was_up = state_ == State::up;
    state_ = s;
    up_.store(s == State::up, std::memory_order_relaxed);
    if (was_up != (s == State::up) && options_.on_state) options_.on_state(s == State::up);
}

void RedisClient::enqueue(std::vector<std::string> argv, Done done) {
    if (state_ == State::closed) return done(unexpected(std::string("connect: client closed")));
    // While reconnecting (backoff), fail at once: the caller has a fallback
    // and must not wait for a server that is known to be gone.
    if (state_ == State::down)
        return done(unexpected(fmt::format("connect: not connected to {}", options_.address)));
    if (waiting_.size() + in_flight_.size() >= options_.max_pending)
        return done(
            unexpected(fmt::format("timeout: {} commands already pending", options_.max_pending)));
    if (argv.empty()) return done(unexpected(std::string("protocol: empty command")));
    waiting_.push_back(
        {resp::format_command(argv), std::move(done), Clock::now() + options_.command_timeout});
    pump_writes();
    arm_watchdog();
}

void RedisClient::pump_writes() {
    auto conn = conn_;
    if (state_ != State::up || !conn || conn->writing || waiting_.empty()) return;
    conn->write_buf.clear();
    while (!waiting_.empty()) {
        conn->write_buf += waiting_.front().wire;
        waiting_.front().wire.clear();
        in_flight_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
    }
    conn->writing = true;
    auto handler =
        asio::bind_executor(strand_, [self = shared_from_this(), conn](error_code ec, std::size_t) {
            conn->writing = false;
            if (self->conn_ != conn) return;
            if (ec) {
                self->fail_connection("connect: write failed: " + ec.message());
                return;
            }
            self->pump_writes();
        });
    if (conn->tls)
        asio::async_write(*conn->tls, asio::buffer(conn->write_buf), std::move(handler));
    else
        asio::async_write(conn->socket, asio::buffer(conn->write_buf), std::move(handler));
}

void RedisClient::arm_watchdog() {
    if (watchdog_armed_ || state_ == State::closed) return;
    if (in_flight_.empty() && waiting_.empty()) return;
    // In-flight commands are older than waiting ones: the front of the
    // first non-empty queue has the earliest deadline.
    const auto deadline =
        in_flight_.empty() ? waiting_.front().deadline : in_flight_.front().deadline;
    watchdog_armed_ = true;
    watchdog_.expires_at(deadline);
    watchdog_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](error_code ec) {
        self->watchdog_armed_ = false;
        if (ec) return;
        self->on_watchdog();
    }));
}

void RedisClient::on_watchdog() {
    const auto now = Clock::now();
    const auto expired = [&](const std::deque<Pending>& q) {
        return !q.empty() && q.front().deadline <= now;
    };
    if (expired(in_flight_) || (state_ == State::up && expired(waiting_))) {
        fail_connection(
            fmt::format("timeout: no reply within {} ms", options_.command_timeout.count()));
        return;  // run() fails what is pending once the reader has stopped
    }
    // Still connecting: only the commands past their deadline fail.
    while (expired(waiting_)) {
        Pending p = std::move(waiting_.front());
        waiting_.pop_front();
        p.done(unexpected(
            fmt::format("timeout: not connected within {} ms", options_.command_timeout.count())));
    }
    arm_watchdog();
}

void RedisClient::fail_connection(std::string reason) {
    if (close_reason_.empty()) close_reason_ = std::move(reason);
    if (state_ == State::up) set_state(State::down);  // new commands fail at once
    if (conn_) conn_->close();
}

void RedisClient::fail_all(const std::string& reason) {
    // Moved out first: a completion may call call(), which only posts.
    std::deque<Pending> failed = std::move(in_flight_);
    for (auto& p : waiting_)
        failed.push_back(std::move(p));
    in_flight_.clear();
    waiting_.clear();
    for (auto& p : failed)
        p.done(unexpected(reason));
}

awaitable<std::size_t> RedisClient::read_some(Conn& conn, error_code& ec) {
    if (conn.tls)
        co_return co_await conn.tls->async_read_some(asio::buffer(conn.rbuf),
                                                     asio::redirect_error(use_awaitable, ec));
    co_return co_await conn.socket.async_read_some(asio::buffer(conn.rbuf),
                                                   asio::redirect_error(use_awaitable, ec));
}

// `self` keeps the client alive while the loop runs (until close()).
awaitable<void> RedisClient::run([[maybe_unused]] std::shared_ptr<RedisClient> self) {
    auto backoff = options_.backoff_min;
    for (;;) {
        if (state_ == State::closed) co_return;
        set_state(State::connecting);
        close_reason_.clear();
        auto conn = std::make_shared<Conn>(strand_);
        conn->reader = std::make_unique<resp::Reader>(options_.reader_limits);
        conn_ = conn;
        const bool ok = co_await connect_once(conn);
        if (ok && state_ == State::connecting) {
            backoff = options_.backoff_min;
            set_state(State::up);
            pump_writes();
            co_await read_loop(conn);
        }
        conn->close();
        conn_.reset();
        const std::string reason =
            close_reason_.empty() ? std::string("connect: connection closed") : close_reason_;
        set_state(State::down);
        fail_all(reason);
        if (state_ == State::closed) co_return;
        error_code ec;
        backoff_timer_.expires_after(backoff);
        co_await backoff_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        backoff = std::min(backoff * 2, options_.backoff_max);
    }
}

awaitable<bool> RedisClient::connect_once(std::shared_ptr<Conn> conn) {
    connect_timer_.expires_after(options_.connect_timeout);
    connect_timer_.async_wait(
        asio::bind_executor(strand_, [self = shared_from_this(), conn](error_code ec) {
            if (ec || self->conn_ != conn || self->state_ != State::connecting) return;
            self->fail_connection(fmt::format("connect: no connection within {} ms",
                                              self->options_.connect_timeout.count()));
        }));
    struct CancelTimer {
        asio::steady_timer& t;
        ~CancelTimer() { t.cancel(); }
    } cancel_timer{connect_timer_};
    const auto failed = [&](const error_code& ec, std::string_view what) {
        if (!close_reason_.empty() || state_ != State::connecting) return true;
        if (!ec) return false;
        fail_connection(fmt::format("connect: {} {}: {}", what, options_.address, ec.message()));
        return true;
    };

    error_code ec;
    tcp::resolver::results_type endpoints;
    const auto literal = asio::ip::make_address(host_, ec);
    if (!ec) {
        endpoints = tcp::resolver::results_type::create(tcp::endpoint(literal, port_), host_,
                                                        std::to_string(port_));
    } else {
        ec.clear();
        endpoints = co_await conn->resolver.async_resolve(host_, std::to_string(port_),
                                                          asio::redirect_error(use_awaitable, ec));
        if (failed(ec, "cannot resolve")) co_return false;
    }
    co_await asio::async_connect(conn->socket, endpoints, asio::redirect_error(use_awaitable, ec));
    if (failed(ec, "cannot connect to")) co_return false;
    conn->socket.set_option(tcp::no_delay(true), ec);

    if (tls_ctx_) {
        conn->tls.emplace(conn->socket, *tls_ctx_);
        expect_peer_name(conn->tls->native_handle(),
                         options_.verify_name.empty() ? host_ : options_.verify_name);
        co_await conn->tls->async_handshake(asio::ssl::stream_base::client,
                                            asio::redirect_error(use_awaitable, ec));
        if (failed(ec, "TLS handshake with")) co_return false;
    }

    if (!options_.password.empty()) {
        std::vector<std::string> argv{"AUTH"};
        if (!options_.username.empty()) argv.push_back(options_.username);
        argv.push_back(options_.password);
        conn->write_buf = resp::format_command(argv);
        if (conn->tls)
            co_await asio::async_write(*conn->tls, asio::buffer(conn->write_buf),
                                       asio::redirect_error(use_awaitable, ec));
        else
            co_await asio::async_write(conn->socket, asio::buffer(conn->write_buf),
                                       asio::redirect_error(use_awaitable, ec));
        conn->write_buf.assign(conn->write_buf.size(), '\0');  // no password left in memory
        conn->write_buf.clear();
        if (failed(ec, "AUTH write to")) co_return false;
        for (;;) {
            auto reply = conn->reader->next();
            if (!reply) {
                fail_connection("protocol: " + reply.error());
                co_return false;
            }
            if (reply->has_value()) {
                const resp::Value& v = **reply;
                if (v.type != resp::Type::status) {
                    // The server's text ("WRONGPASS invalid username-password
                    // pair ...") never contains the password.
                    fail_connection("connect: AUTH refused by " + options_.address + ": " +
                                    (v.is_error() ? v.text : std::string("unexpected reply")));
                    co_return false;
                }
                break;
            }
            const std::size_t n = co_await read_some(*conn, ec);
            if (failed(ec, "AUTH reply from")) co_return false;
            conn->reader->feed(std::string_view(conn->rbuf.data(), n));
        }
    }
    co_return close_reason_.empty() && state_ == State::connecting;
}

awaitable<void> RedisClient::read_loop(std::shared_ptr<Conn> conn) {
    for (;;) {
        error_code ec;
        const std::size_t n = co_await read_some(*conn, ec);
        if (conn_ != conn || !close_reason_.empty()) co_return;
        if (ec) {
            fail_connection(ec == asio::error::eof ? "connect: connection closed by the server"
                                                   : "connect: read failed: " + ec.message());
            co_return;
        }
        conn->reader->feed(std::string_view(conn->rbuf.data(), n));
        for (;;) {
            auto reply = conn->reader->next();
            if (!reply) {
                fail_connection("protocol: " + reply.error());
                co_return;
            }
            if (!reply->has_value()) break;
            if (in_flight_.empty()) {
                fail_connection("protocol: a reply to no command");
                co_return;
            }
            Pending p = std::move(in_flight_.front());
            in_flight_.pop_front();
            p.done(std::move(**reply));
        }
        arm_watchdog();
    }
}

}  // namespace relaygate::server
