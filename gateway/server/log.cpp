// Logger implementation: a mutex per sink, timestamps in RFC 3339 UTC.
#include "gateway/server/log.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

namespace relaygate::server {
namespace {

std::mutex g_log_mutex;
std::mutex g_audit_mutex;
std::FILE* g_audit = stderr;
Level g_min_level = Level::info;

std::string now_rfc3339() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const std::time_t t = system_clock::to_time_t(now);
    const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    return buf;
}

const char* level_name(Level l) {
    switch (l) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warn:
            return "warn";
        case Level::error:
            return "error";
    }
    return "info";
}

void write_line(std::FILE* f, std::mutex& m, const nlohmann::json& j) {
    // `replace` keeps invalid UTF-8 from client input from throwing.
    const std::string line =
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::lock_guard lock(m);
    std::fwrite(line.data(), 1, line.size(), f);
    std::fflush(f);
}

}  // namespace

bool Logger::open_audit(const std::string& target, std::string& error) {
    std::FILE* f = stderr;
    if (target != "-" && !target.empty()) {
        f = std::fopen(target.c_str(), "a");
        if (!f) {
            error = fmt::format("cannot open audit log {}: {}", target, std::strerror(errno));
            return false;
        }
    }
    std::lock_guard lock(g_audit_mutex);
    g_audit = f;
    return true;
}

std::string audit_log_problem(const std::string& target) {
    if (target == "-" || target.empty()) return {};
    namespace fs = std::filesystem;
    const fs::path path(target);
    std::error_code ec;
    const auto st = fs::status(path, ec);
    const bool exists = fs::exists(st);
    if (exists && fs::is_directory(st)) return fmt::format("audit log {} is a directory", target);
    // An existing file must be writable; a new one needs a writable directory.
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    const std::string probe = exists ? target : dir.string();
    if (::access(probe.c_str(), W_OK) != 0)
        return fmt::format("cannot open audit log {}: {}{}", target, std::strerror(errno),
                           exists ? "" : fmt::format(" (directory {})", probe));
    return {};
}

bool Logger::enabled(Level level) {
    return level >= g_min_level;
}

void Logger::set_min_level(Level level) {
    g_min_level = level;
}

void Logger::log(Level level, std::string_view event, nlohmann::json fields) {
    if (level < g_min_level) return;
    nlohmann::json j = {{"ts", now_rfc3339()}, {"level", level_name(level)}, {"event", event}};
    if (fields.is_object()) j.update(fields);
    write_line(stderr, g_log_mutex, j);
}

void Logger::audit(nlohmann::json record) {
    nlohmann::json j = {{"ts", now_rfc3339()}, {"log", "audit"}};
    j.update(record);
    write_line(g_audit, g_audit_mutex, j);
}

}  // namespace relaygate::server
