// Tests for gateway/server/systemd_notify: with NOTIFY_SOCKET pointing at a
// datagram socket the test binds (as systemd would), each call sends
// exactly the documented assignments; without NOTIFY_SOCKET nothing is
// sent and the calls say so.
#include "gateway/server/systemd_notify.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "tests/common/temp_dir.hpp"

namespace systemd = relaygate::server::systemd;

namespace {

// A bound AF_UNIX datagram socket exported as NOTIFY_SOCKET for its lifetime.
struct NotifySocket {
    relaygate::test::TempDir dir;
    int fd = -1;
    NotifySocket() {
        const std::string path = (dir.path / "notify").string();
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        REQUIRE(path.size() < sizeof addr.sun_path);
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::setenv("NOTIFY_SOCKET", path.c_str(), 1) == 0);
    }
    ~NotifySocket() {
        ::unsetenv("NOTIFY_SOCKET");
        ::close(fd);
    }
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;

    // The next datagram, or "" when none arrives within a second.
    std::string receive() const {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1) return {};
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
    bool idle() const {
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, 50) == 0;
    }
};

}  // namespace

TEST_CASE("without NOTIFY_SOCKET every call is a no-op") {
    ::unsetenv("NOTIFY_SOCKET");
    CHECK_FALSE(systemd::notify("READY=1"));
    CHECK_FALSE(systemd::notify_ready("serving"));
    CHECK_FALSE(systemd::notify_reloading());
    CHECK_FALSE(systemd::notify_stopping());
}

TEST_CASE("READY=1 carries the status line") {
    NotifySocket sock;
    CHECK(systemd::notify_ready("serving 2 listeners"));
    CHECK(sock.receive() == "READY=1\nSTATUS=serving 2 listeners");
    CHECK(sock.idle());
}

TEST_CASE("a reload is RELOADING=1 with the monotonic clock, then READY=1") {
    NotifySocket sock;
    timespec before{};
    ::clock_gettime(CLOCK_MONOTONIC, &before);
    CHECK(systemd::notify_reloading());
    const std::string msg = sock.receive();
    const std::string prefix = "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=";
    REQUIRE(msg.rfind(prefix, 0) == 0);
    const auto usec = std::stoull(msg.substr(prefix.size()));
    CHECK(usec >= static_cast<unsigned long long>(before.tv_sec) * 1000000ULL);
    CHECK(systemd::notify_ready("policy reloaded"));
    CHECK(sock.receive() == "READY=1\nSTATUS=policy reloaded");
}

TEST_CASE("the drain is STOPPING=1") {
    NotifySocket sock;
    CHECK(systemd::notify_stopping());
    CHECK(sock.receive() == "STOPPING=1\nSTATUS=draining");
    CHECK(sock.idle());
}

TEST_CASE("NOTIFY_SOCKET naming nothing is an error, not a crash") {
    relaygate::test::TempDir dir;
    REQUIRE(::setenv("NOTIFY_SOCKET", (dir.path / "absent").c_str(), 1) == 0);
    CHECK_FALSE(systemd::notify_ready("serving"));
    ::unsetenv("NOTIFY_SOCKET");
}
