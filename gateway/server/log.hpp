// Structured logging: one JSON object per line. The operational log goes to
// stderr (each line prefixed with its syslog priority, "<6>", when stderr is
// the journal: journal_stream.hpp); the audit log (one line per transaction
// and per connection) goes to stderr or a file, and a file that cannot be
// opened stops the start (never a silent fallback to stderr). Thread-safe;
// never throws into the data path.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace relaygate::server {

// How long an audit line may wait to be written with the ones after it
// (one write per thread per interval under load; lost if the process dies
// in between, written at a drain or stop).
inline constexpr std::chrono::milliseconds kAuditFlushInterval{10};

enum class Level { debug, info, warn, error };

class Logger {
  public:
    // target: "-" for stderr, else a file opened for appending. False, with
    // `error` set, when the file cannot be opened; the audit log is unchanged.
    static bool open_audit(const std::string& target, std::string& error);
    static void log(Level level, std::string_view event, nlohmann::json fields = {});
    static void set_min_level(Level level);
    // Audit lines written on this thread are collected and written
    // together when the handler that `post` schedules runs (the server's
    // threads: kAuditFlushInterval after the first line), or at 64 KiB.
    // Without it (any other thread) each line is written at once.
    // Call flush_audit() when the thread's loop has stopped.
    static void batch_audit_on_this_thread(std::function<void(std::function<void()>)> post);
    // Writes what this thread has collected.
    static void flush_audit();
    // Whether a line at `level` would be written (skip building it if not).
    static bool enabled(Level level);
};

// One audit line, formatted in place into a buffer the thread reuses (no
// JSON DOM): {"ts":...,"log":"audit","type":TYPE,...fields in call
// order}. Strings are escaped as nlohmann::json's dump does with
// error_handler_t::replace (invalid UTF-8 becomes U+FFFD), so client
// input cannot break the line. One at a time per thread; write() ends it.
class AuditLine {
  public:
    explicit AuditLine(std::string_view type);
    AuditLine(const AuditLine&) = delete;
    AuditLine& operator=(const AuditLine&) = delete;

    AuditLine& field(std::string_view key, std::string_view value);
    AuditLine& field(std::string_view key, const char* value) {
        return field(key, std::string_view(value));
    }
    AuditLine& field(std::string_view key, const std::string& value) {
        return field(key, std::string_view(value));
    }
    AuditLine& field(std::string_view key, bool value);
    template <std::integral T>
    requires(!std::same_as<T, bool>) AuditLine& field(std::string_view key, T value) {
        key_(key);
        char text[24];
        const auto end = std::to_chars(text, text + sizeof text, value).ptr;
        return number(std::string_view(text, static_cast<std::size_t>(end - text)));
    }
    AuditLine& field(std::string_view key, double value);  // NaN and infinities: null
    void write();

  private:
    void key_(std::string_view key);
    AuditLine& number(std::string_view text);
    std::string& buf_;
};

// Appends `s` as a JSON string (quotes included) the way nlohmann::json's
// dump(-1, ' ', false, error_handler_t::replace) writes it. Public for tests.
void append_json_string(std::string& out, std::string_view s);

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
