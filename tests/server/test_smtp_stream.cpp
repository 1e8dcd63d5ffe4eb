// SmtpStream's reads and writes (net::in_frame): awaited in the caller's
// coroutine frame with their operation blocks in the stream, so the data
// path allocates nothing; every octet arrives; deadlines and cancel still
// end an operation as before. Real sockets on loopback.
#include "gateway/server/smtp_stream.hpp"

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tests/allocation_counter.hpp"

using namespace relaygate;
using namespace relaygate::net;
using relaygate::server::SmtpStream;

namespace {

struct Pair {
    asio::io_context io{1};
    std::optional<SmtpStream> a, b;
    Pair() {
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        tcp::socket client(io);
        client.connect(acceptor.local_endpoint());
        a.emplace(std::move(client));
        b.emplace(acceptor.accept());
    }
    template <class F>
    void run(F f) {
        asio::co_spawn(io, f, asio::detached);
        io.run();
    }
};

// A server context with a throwaway self-signed P-256 certificate, and a
// client context that does not verify (the test is about the stream).
struct TlsContexts {
    asio::ssl::context server{asio::ssl::context::tls_server};
    asio::ssl::context client{asio::ssl::context::tls_client};
    TlsContexts() {
        EVP_PKEY* key = EVP_EC_gen("P-256");
        X509* cert = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), 0);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("stream.test"), -1, -1,
                                   0);
        X509_set_issuer_name(cert, name);
        X509_sign(cert, key, EVP_sha256());
        SSL_CTX_use_certificate(server.native_handle(), cert);
        SSL_CTX_use_PrivateKey(server.native_handle(), key);
        client.set_verify_mode(asio::ssl::verify_none);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
};

// Writes `text` on one end and reads it whole on the other.
awaitable<bool> round_trip(SmtpStream& from, SmtpStream& to, std::string_view text) {
    error_code ec;
    co_await from.write(asio::buffer(text.data(), text.size()), ec);
    if (ec) co_return false;
    std::array<char, 256> buf{};
    std::size_t total = 0;
    while (total < text.size()) {
        std::size_t n = 0;
        co_await to.read_some(asio::buffer(buf.data() + total, buf.size() - total), ec, n);
        if (ec) co_return false;
        total += n;
    }
    co_return std::string_view(buf.data(), total) == text;
}

}  // namespace

TEST_CASE("1000 round trips: every octet arrives, and no heap allocation per read or write") {
    for (const bool deadlines : {false, true}) {
        CAPTURE(deadlines);
        Pair p;
        long allocations = -1;
        int good = 0;
        p.run([&]() -> awaitable<void> {
            co_await round_trip(*p.a, *p.b, "warm-up\r\n");
            const long before = relaygate::testing::allocations.load();
            for (int i = 0; i < 1000; ++i) {
                if (deadlines) {
                    p.a->expires_after(std::chrono::seconds(30));
                    p.b->expires_after(std::chrono::seconds(30));
                }
                const bool ok = co_await round_trip(i % 2 ? *p.a : *p.b, i % 2 ? *p.b : *p.a,
                                                    "250 2.1.0 Ok\r\n");
                good += ok;
            }
            allocations = relaygate::testing::allocations.load() - before;
            // Gone streams cancel their pending deadline waits: run() ends.
            p.a.reset();
            p.b.reset();
        });
        CHECK(good == 1000);
        // round_trip() itself is a coroutine (one frame per call, which Asio
        // recycles per thread); the reads and writes add nothing. With
        // deadlines, one pending timer wait per stream serves them all.
        CHECK(allocations <= (deadlines ? 4 : 0));
    }
}

TEST_CASE("over TLS too: every octet arrives, and the operation blocks fit the stream's slots") {
    TlsContexts tls;
    Pair p;
    error_code server_ec, client_ec;
    asio::co_spawn(
        p.io,
        [&]() -> awaitable<void> { co_await p.b->handshake(tls.server, true, {}, server_ec); },
        asio::detached);
    long allocations = -1;
    int good = 0;
    p.run([&]() -> awaitable<void> {
        co_await p.a->handshake(tls.client, false, "stream.test", client_ec);
        if (client_ec) co_return;
        co_await round_trip(*p.a, *p.b, "warm-up\r\n");
        const long before = relaygate::testing::allocations.load();
        for (int i = 0; i < 200; ++i)
            good +=
                co_await round_trip(i % 2 ? *p.a : *p.b, i % 2 ? *p.b : *p.a, "250 2.1.0 Ok\r\n");
        allocations = relaygate::testing::allocations.load() - before;
    });
    REQUIRE_FALSE(client_ec);
    CHECK_FALSE(server_ec);
    CHECK(good == 200);
    // OpenSSL allocates with malloc (not counted here); Asio's composed
    // TLS operations, through operator new, fit the slots: 400 operations
    // cost at most an incidental allocation or two (with use_awaitable:
    // two or more each).
    CHECK(allocations <= 2);
}

TEST_CASE("a read past its deadline ends with timeout and leaves the socket open") {
    Pair p;
    error_code read_ec;
    bool after = false;
    p.run([&]() -> awaitable<void> {
        p.b->expires_after(std::chrono::milliseconds(50));
        std::array<char, 16> buf{};
        std::size_t n = 0;
        co_await p.b->read_some(asio::buffer(buf), read_ec, n);
        p.b->expires_after(std::chrono::seconds(5));
        after = co_await round_trip(*p.b, *p.a, "421 4.4.2 timeout\r\n");
        p.a.reset();
        p.b.reset();
    });
    CHECK(read_ec == beast::error::timeout);
    CHECK(after);  // the session can still say 421
}

TEST_CASE("cancel() ends a pending read with operation_aborted") {
    Pair p;
    error_code read_ec;
    p.run([&]() -> awaitable<void> {
        asio::steady_timer t(p.io, std::chrono::milliseconds(20));
        t.async_wait([&](const error_code&) { p.b->cancel(); });
        std::array<char, 16> buf{};
        std::size_t n = 0;
        co_await p.b->read_some(asio::buffer(buf), read_ec, n);
    });
    CHECK(read_ec == asio::error::operation_aborted);
}

TEST_CASE("the peer's close ends a read with eof") {
    Pair p;
    error_code read_ec;
    p.run([&]() -> awaitable<void> {
        p.a->close();
        std::array<char, 16> buf{};
        std::size_t n = 0;
        co_await p.b->read_some(asio::buffer(buf), read_ec, n);
    });
    CHECK(read_ec == asio::error::eof);
}
