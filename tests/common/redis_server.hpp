// A private redis-server for tests: /usr/bin/redis-server (Debian's
// package, installed by scripts/setup) on a free loopback port, without
// persistence, killed by its pid when the object goes (RAII).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace relaygate::testing {

using namespace std::chrono_literals;

inline std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

inline bool accepts(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

// A private redis-server; killed by its pid when the test ends (RAII).
class RedisServer {
  public:
    // `extra`: more redis-server arguments. `tls`: listen with TLS only.
    explicit RedisServer(std::vector<std::string> extra = {}, bool tls = false,
                         std::uint16_t port = 0)
        : extra_(std::move(extra)), tls_(tls), port_(port ? port : free_port()) {
        start();
    }
    ~RedisServer() { kill(); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void start() {
        const std::string port = std::to_string(port_);
        std::vector<std::string> args{"/usr/bin/redis-server", "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly",          "no"};
        if (tls_) {
            args.insert(args.end(), {"--port", "0", "--tls-port", port});
        } else {
            args.insert(args.end(), {"--port", port});
        }
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) throw std::runtime_error("cannot spawn /usr/bin/redis-server");
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("redis-server exited at start");
            }
            if (accepts(port_)) return;
            std::this_thread::sleep_for(10ms);
        }
        kill();
        throw std::runtime_error("redis-server did not listen");
    }
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    void pause() { ::kill(pid_, SIGSTOP); }
    void resume() { ::kill(pid_, SIGCONT); }

  private:
    std::vector<std::string> extra_;
    bool tls_ = false;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

}  // namespace relaygate::testing
