// Structured logging: one JSON object per line. The operational log goes to
// stderr; the audit log (one line per transaction and per connection) goes
// to stderr or a file, and a file that cannot be opened stops the start
// (never a silent fallback to stderr). Thread-safe; never throws into the
// data path.
#pragma once

#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace relaygate::server {

enum class Level { debug, info, warn, error };

class Logger {
  public:
    // target: "-" for stderr, else a file opened for appending. False, with
    // `error` set, when the file cannot be opened; the audit log is unchanged.
    static bool open_audit(const std::string& target, std::string& error);
    static void log(Level level, std::string_view event, nlohmann::json fields = {});
    static void audit(nlohmann::json record);
    static void set_min_level(Level level);
    // Whether a line at `level` would be written (skip building it if not).
    static bool enabled(Level level);
};

// What keeps `open_audit(target)` from succeeding, without creating the
// file (for `relaygate check`); "" when nothing does.
std::string audit_log_problem(const std::string& target);

inline void log_info(std::string_view event, nlohmann::json fields = {}) {
    Logger::log(Level::info, event, std::move(fields));
}
inline void log_warn(std::string_view event, nlohmann::json fields = {}) {
    Logger::log(Level::warn, event, std::move(fields));
}
inline void log_error(std::string_view event, nlohmann::json fields = {}) {
    Logger::log(Level::error, event, std::move(fields));
}

// A co_spawn completion handler that logs an escaped exception instead of
// swallowing it (asio::detached would).
inline auto log_exception(std::string what) {
    return [what = std::move(what)](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log_error("coroutine_exception", {{"where", what}, {"error", ex.what()}});
        } catch (...) {
            log_error("coroutine_exception", {{"where", what}});
        }
    };
}

}  // namespace relaygate::server
