// Structured logging: one JSON object per line. The operational log goes to
// stderr; the audit log (one line per transaction and per connection) goes
// to stderr or a file. Thread-safe; never throws into the data path.
#pragma once

#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace relaygate::server {

enum class Level { debug, info, warn, error };

class Logger {
  public:
    // target: "-" for stderr, else a file opened for appending.
    static void open_audit(const std::string& target);
    static void log(Level level, std::string_view event, nlohmann::json fields = {});
    static void audit(nlohmann::json record);
    static void set_min_level(Level level);
    // Whether a line at `level` would be written (skip building it if not).
    static bool enabled(Level level);
};

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
