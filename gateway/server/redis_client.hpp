// RedisClient: one pipelined connection to a Redis server (optional TLS,
// AUTH), reconnecting with exponential backoff. It moves bytes only: the
// RESP codec is gateway/redis/resp, the meaning of replies is the caller's.
// Never blocks the thread it runs on; every command has a deadline.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/redis/resp.hpp"

namespace relaygate::server {

struct RedisClientOptions {
    std::string address = "127.0.0.1:6379";  // "host:port", "[v6]:port", "host"
    std::string username;                    // empty: AUTH <password> (the default user)
    std::string password;                    // empty: no AUTH
    bool tls = false;
    std::string ca_file;      // empty: the system's trust store
    std::string verify_name;  // empty: the host of `address` (IP literals too)
    std::string cert_file;    // client certificate (PEM chain) and key, both or neither
    std::string key_file;
    std::chrono::milliseconds connect_timeout{1000};  // resolve + TCP + TLS + AUTH
    std::chrono::milliseconds command_timeout{250};   // from call() to the reply
    std::chrono::milliseconds backoff_min{50};        // between failed connection attempts,
    std::chrono::milliseconds backoff_max{5000};      // doubling up to this
    std::size_t max_pending = 10000;  // commands queued or in flight; over it: fail at once
    resp::ReaderLimits reader_limits;
    // Connection state changes (true: ready for commands), on the strand.
    std::function<void(bool up)> on_state;
};

// The error texts of call() start with the failure's kind: "connect: ",
// "timeout: " or "protocol: ". An error *reply* from Redis is not an
// error here: it arrives as a resp::Value of Type::error.
std::string_view redis_error_kind(std::string_view error);  // "connect" | "timeout" | "protocol"

// Reads a password file: its content with one trailing newline (LF or
// CRLF) removed; an error text when unreadable or empty.
Result<std::string, std::string> read_password_file(const std::string& path);

class RedisClient : public std::enable_shared_from_this<RedisClient> {
  public:
    using Done = std::function<void(Result<resp::Value, std::string>)>;

    // Builds the TLS context (throws std::runtime_error on a bad address or
    // unreadable certificate files: startup only) and starts connecting.
    static std::shared_ptr<RedisClient> create(net::asio::any_io_executor ex,
                                               RedisClientOptions options);
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // Sends one command. `done` is called exactly once, on the client's
    // strand (re-dispatch to your own executor), with the reply or an
    // error: not connected, queue full, deadline passed (the connection is
    // then closed: later replies could not be matched, so every command in
    // flight fails too), connection lost, protocol error. Thread-safe.
    void call(std::vector<std::string> argv, Done done);
    // Ready for commands (connected and authenticated). Thread-safe.
    bool connected() const { return up_.load(std::memory_order_relaxed); }
    // Stops reconnecting, closes, fails what is pending. Thread-safe; the
    // object lives on until its handlers have run.
    void close();

  private:
    struct Pending {
        std::string wire;  // the formatted command
        Done done;
        std::chrono::steady_clock::time_point deadline;
    };
    enum class State { connecting, up, down, closed };

    // One connection's objects. Handlers hold it, so a stream is never
    // destroyed under an operation; `conn_ != conn` marks a stale handler.
    struct Conn {
        explicit Conn(net::asio::strand<net::asio::any_io_executor>& strand)
            : resolver(strand), socket(strand) {}
        void close();
        net::tcp::resolver resolver;
        net::tcp::socket socket;
        std::optional<net::asio::ssl::stream<net::tcp::socket&>> tls;
        std::unique_ptr<resp::Reader> reader;
        std::string write_buf;
        bool writing = false;
        std::array<char, 16384> rbuf{};
    };

    RedisClient(net::asio::any_io_executor ex, RedisClientOptions options);
    net::awaitable<void> run(std::shared_ptr<RedisClient> self);
    net::awaitable<bool> connect_once(std::shared_ptr<Conn> conn);
    net::awaitable<void> read_loop(std::shared_ptr<Conn> conn);
    net::awaitable<std::size_t> read_some(Conn& conn, net::error_code& ec);
    void enqueue(std::vector<std::string> argv, Done done);
    void pump_writes();
    void arm_watchdog();
    void on_watchdog();
    // Closes the connection with `reason` (the first reason wins).
    void fail_connection(std::string reason);
    void fail_all(const std::string& reason);
    void set_state(State s);

    net::asio::strand<net::asio::any_io_executor> strand_;
    RedisClientOptions options_;
    std::string host_;
    std::uint16_t port_ = 0;
    std::shared_ptr<net::asio::ssl::context> tls_ctx_;
    std::shared_ptr<Conn> conn_;
    net::asio::steady_timer watchdog_;
    net::asio::steady_timer connect_timer_;
    net::asio::steady_timer backoff_timer_;
    bool watchdog_armed_ = false;
    std::deque<Pending> waiting_;    // not yet written
    std::deque<Pending> in_flight_;  // written (or being written): replies due in this order
    State state_ = State::connecting;
    std::string close_reason_;  // why the current connection is being closed
    std::atomic<bool> up_{false};
};

}  // namespace relaygate::server
