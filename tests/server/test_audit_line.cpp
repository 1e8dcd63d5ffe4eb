// Tests for the audit line writer (gateway/server/log): its strings are
// byte for byte what nlohmann::json's dump writes with
// error_handler_t::replace (the writer it replaced), for every byte and
// for random strings rich in UTF-8 edge cases; a whole line parses back
// with its fields in call order; batching holds lines until the posted
// flush runs, and a thread without batching writes at once.
#include "gateway/server/log.hpp"
#include "gateway/server/server.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using relaygate::server::append_json_string;
using relaygate::server::AuditLine;
using relaygate::server::batch_audit_with;
using relaygate::server::Logger;

namespace {

std::string ours(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
}

std::string theirs(std::string_view s) {
    return nlohmann::json(std::string(s))
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct TempAudit {
    std::string path;
    TempAudit() {
        char tmpl[] = "/tmp/relaygate-audit-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = tmpl;
        std::string error;
        REQUIRE(Logger::open_audit(path, error));
    }
    ~TempAudit() {
        std::string error;
        Logger::open_audit("-", error);
        std::remove(path.c_str());
    }
};

}  // namespace

TEST_CASE("every single byte and every pair of bytes escape as nlohmann::json's dump") {
    for (int a = 0; a < 256; ++a) {
        const std::string one(1, static_cast<char>(a));
        REQUIRE_MESSAGE(ours(one) == theirs(one), "byte ", a);
        for (int b = 0; b < 256; ++b) {
            const std::string two{static_cast<char>(a), static_cast<char>(b)};
            REQUIRE_MESSAGE(ours(two) == theirs(two), "bytes ", a, " ", b);
        }
    }
}

TEST_CASE("random strings rich in UTF-8 edge cases escape as nlohmann::json's dump") {
    // Lead bytes, continuation bytes at their range limits, ASCII controls,
    // quotes and backslashes, and valid multi-byte characters.
    const std::vector<unsigned char> alphabet{0x00, 0x01, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x1f, 0x20,
                                              '"',  '\\', 'a',  0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                              0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed,
                                              0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
    std::mt19937 rng(20261204);
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::uniform_int_distribution<int> len(0, 12);
    for (int i = 0; i < 200000; ++i) {
        std::string s;
        for (int n = len(rng); n > 0; --n)
            s += static_cast<char>(alphabet[pick(rng)]);
        REQUIRE_MESSAGE(ours(s) == theirs(s), "case ", i);
    }
    const std::string valid = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7 \xf4\x8f\xbf\xbf";
    CHECK(ours(valid) == "\"" + valid + "\"");
}

TEST_CASE("a line parses back with its fields in call order") {
    TempAudit audit;
    AuditLine("transaction")
        .field("session", "s-1")
        .field("reply", "250 2.0.0 \"ok\"\r\n\xff")
        .field("recipients", std::size_t{3})
        .field("signed", -7)
        .field("report_only", false)
        .field("duration_seconds", 0.25)
        .field("never", std::numeric_limits<double>::quiet_NaN())
        .write();
    const std::string text = read_all(audit.path);
    REQUIRE(!text.empty());
    CHECK(text.back() == '\n');
    CHECK(std::count(text.begin(), text.end(), '\n') == 1);
    const auto j = nlohmann::json::parse(text);
    CHECK(j["log"] == "audit");
    CHECK(j["type"] == "transaction");
    CHECK(j["reply"] == "250 2.0.0 \"ok\"\r\n\xef\xbf\xbd");
    CHECK(j["recipients"] == 3);
    CHECK(j["signed"] == -7);
    CHECK(j["report_only"] == false);
    CHECK(j["duration_seconds"] == 0.25);
    CHECK(j["never"].is_null());
    CHECK(text.starts_with("{\"ts\":\""));
    CHECK(text.find("\"log\":\"audit\",\"type\":\"transaction\",\"session\":\"s-1\",\"reply\"") !=
          std::string::npos);
}

TEST_CASE("the time stamp is RFC 3339 UTC with milliseconds, and follows the clock") {
    // Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS.mmmZ"; -1 when the
    // text is not exactly that.
    auto parse = [](const std::string& ts) -> double {
        if (ts.size() != 24 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T' || ts[13] != ':' ||
            ts[16] != ':' || ts[19] != '.' || ts[23] != 'Z')
            return -1;
        for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22})
            if (ts[i] < '0' || ts[i] > '9') return -1;
        std::tm tm{};
        tm.tm_year = std::stoi(ts.substr(0, 4)) - 1900;
        tm.tm_mon = std::stoi(ts.substr(5, 2)) - 1;
        tm.tm_mday = std::stoi(ts.substr(8, 2));
        tm.tm_hour = std::stoi(ts.substr(11, 2));
        tm.tm_min = std::stoi(ts.substr(14, 2));
        tm.tm_sec = std::stoi(ts.substr(17, 2));
        return static_cast<double>(timegm(&tm)) + std::stoi(ts.substr(20, 3)) / 1000.0;
    };
    auto now = [] {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    TempAudit audit;
    const double before = now();
    AuditLine("connection").field("n", 1).write();
    // The date and time to the second are formatted once a second: a line
    // in a later second must not get the earlier one's.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    AuditLine("connection").field("n", 2).write();
    const double after = now();
    std::istringstream lines(read_all(audit.path));
    std::string first, second;
    REQUIRE(std::getline(lines, first));
    REQUIRE(std::getline(lines, second));
    const double t1 = parse(nlohmann::json::parse(first)["ts"]);
    const double t2 = parse(nlohmann::json::parse(second)["ts"]);
    CHECK(t1 >= before - 0.001);
    CHECK(t2 <= after + 0.001);
    CHECK(t2 - t1 >= 1.099);
}

TEST_CASE("batched lines wait for the posted flush; without batching each is written at once") {
    TempAudit audit;
    std::vector<std::function<void()>> posted;
    Logger::batch_audit_on_this_thread(
        [&posted](std::function<void()> fn) { posted.push_back(std::move(fn)); });
    AuditLine("connection").field("n", 1).write();
    AuditLine("connection").field("n", 2).write();
    CHECK(read_all(audit.path).empty());
    REQUIRE(posted.size() == 1);  // one flush per batch
    posted.front()();
    const std::string two = read_all(audit.path);
    CHECK(std::count(two.begin(), two.end(), '\n') == 2);
    CHECK(two.find("\"n\":1}") < two.find("\"n\":2}"));

    // Over 64 KiB waiting: written without waiting for the flush.
    posted.clear();
    const std::string big(1000, 'x');
    for (int i = 0; i < 70; ++i)
        AuditLine("auth").field("user", big).write();
    CHECK(read_all(audit.path).size() > 64 * 1024);

    // What a stopped loop left behind goes out with flush_audit().
    AuditLine("connection").field("n", 3).write();
    Logger::batch_audit_on_this_thread(nullptr);
    Logger::flush_audit();
    CHECK(read_all(audit.path).find("\"n\":3}") != std::string::npos);

    AuditLine("connection").field("n", 4).write();
    CHECK(read_all(audit.path).find("\"n\":4}") != std::string::npos);
}

TEST_CASE("the server's threads write their audit lines an interval after the first") {
    TempAudit audit;
    relaygate::net::asio::io_context io;
    relaygate::net::asio::steady_timer timer(io);
    batch_audit_with(timer, std::chrono::milliseconds(200));
    AuditLine("connection").field("n", 1).write();
    AuditLine("connection").field("n", 2).write();
    io.poll();  // what is ready now: not the flush
    CHECK(read_all(audit.path).empty());
    io.run();  // the timer's flush, then nothing is left to do
    const std::string two = read_all(audit.path);
    CHECK(std::count(two.begin(), two.end(), '\n') == 2);
    // The next line arms the timer again.
    AuditLine("connection").field("n", 3).write();
    io.restart();
    io.poll();
    CHECK(read_all(audit.path).find("\"n\":3}") == std::string::npos);
    io.run();
    CHECK(read_all(audit.path).find("\"n\":3}") != std::string::npos);
    Logger::batch_audit_on_this_thread(nullptr);
}
