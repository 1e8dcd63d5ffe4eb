// Logger implementation: a mutex per sink, timestamps in RFC 3339 UTC.
// Audit lines are formatted without a lock into the thread's own buffer;
// the mutex is held only for the write.
#include "gateway/server/log.hpp"

#include <fmt/core.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "gateway/server/journal_stream.hpp"

namespace relaygate::server {
namespace {

std::mutex g_log_mutex;
std::mutex g_audit_mutex;
std::FILE* g_audit = stderr;
Level g_min_level = Level::info;

void append_rfc3339(std::string& out) {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const std::time_t t = system_clock::to_time_t(now);
    const auto ms =
        static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
    // The date and time to the second change once a second: formatted then,
    // by each thread for itself.
    thread_local std::time_t second = -1;
    thread_local char prefix[48];
    thread_local std::size_t prefix_len = 0;
    if (t != second) {
        std::tm tm{};
        gmtime_r(&t, &tm);
        const int n = std::snprintf(prefix, sizeof prefix, "%04d-%02d-%02dT%02d:%02d:%02d.",
                                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                    tm.tm_min, tm.tm_sec);
        prefix_len =
            static_cast<std::size_t>(std::clamp(n, 0, static_cast<int>(sizeof prefix) - 1));
        second = t;
    }
    out.append(prefix, prefix_len);
    const char millis[] = {static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                           static_cast<char>('0' + ms % 10), 'Z'};
    out.append(millis, sizeof millis);
}

std::string now_rfc3339() {
    std::string s;
    append_rfc3339(s);
    return s;
}

// The audit state of one thread: the line being built and, when the
// thread batches, the lines waiting for its flush.
struct ThreadAudit {
    std::string line;
    std::string pending;
    std::function<void(std::function<void()>)> post;
    bool flush_posted = false;
};
thread_local ThreadAudit t_audit;
constexpr std::size_t kAuditBatchBytes = 64 * 1024;

void write_audit(std::string_view text) {
    std::lock_guard lock(g_audit_mutex);
    std::fwrite(text.data(), 1, text.size(), g_audit);
    std::fflush(g_audit);
}

void emit_audit(std::string_view line) {
    ThreadAudit& t = t_audit;
    if (!t.post) return write_audit(line);
    t.pending += line;
    if (t.pending.size() >= kAuditBatchBytes) return Logger::flush_audit();
    if (t.flush_posted) return;
    t.flush_posted = true;
    t.post([] {
        t_audit.flush_posted = false;
        Logger::flush_audit();
    });
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

void write_line(std::FILE* f, std::mutex& m, const nlohmann::json& j, std::string_view prefix) {
    // `replace` keeps invalid UTF-8 from client input from throwing.
    const std::string line = std::string(prefix) +
                             j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                             "\n";
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
    // Under systemd, stderr is the journal: give journald each line's priority.
    static const bool journal = is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM"));
    write_line(stderr, g_log_mutex, j, journal ? journal_priority_prefix(level) : "");
}

void Logger::batch_audit_on_this_thread(std::function<void(std::function<void()>)> post) {
    t_audit.post = std::move(post);
    t_audit.flush_posted = false;  // nothing is scheduled with this one yet
}

void Logger::flush_audit() {
    ThreadAudit& t = t_audit;
    if (t.pending.empty()) return;
    write_audit(t.pending);
    t.pending.clear();
}

namespace {

// Printable ASCII but the quote and the backslash: written as it is.
constexpr auto kPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x80; ++c)
        t[c] = c != '"' && c != '\\';
    return t;
}();

bool is_plain(char ch) {
    return kPlain[static_cast<unsigned char>(ch)];
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        // A run of printable ASCII that needs no escape goes in one append.
        std::size_t plain = i;
        while (plain < n && is_plain(s[plain]))
            ++plain;
        out.append(s.data() + i, plain - i);
        if ((i = plain) == n) break;
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"':
                    out += "\\\"";
                    break;
                case '\\':
                    out += "\\\\";
                    break;
                case '\b':
                    out += "\\b";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\f':
                    out += "\\f";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                default:
                    if (c < 0x20) {
                        out += "\\u00";
                        out += kHex[c >> 4];
                        out += kHex[c & 0xf];
                    } else {
                        out += static_cast<char>(c);
                    }
            }
            ++i;
            continue;
        }
        // RFC 3629's well-formed sequences: the lead byte fixes the length
        // and the range of the first continuation byte.
        std::size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c == 0xE0) {
            need = 2, lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            need = 2;
        } else if (c == 0xED) {
            need = 2, hi = 0x9F;  // no surrogates
        } else if (c == 0xF0) {
            need = 3, lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            need = 3;
        } else if (c == 0xF4) {
            need = 3, hi = 0x8F;  // nothing above U+10FFFF
        } else {
            out += kReplacement;  // not a lead byte: replaced and skipped
            ++i;
            continue;
        }
        std::size_t j = 1;
        for (; j <= need && i + j < n; ++j) {
            const auto d = static_cast<unsigned char>(s[i + j]);
            if (d < (j == 1 ? lo : 0x80) || d > (j == 1 ? hi : 0xBF)) break;
        }
        if (j > need) {
            out.append(s.substr(i, need + 1));
        } else {
            // One replacement for the broken sequence; the byte that broke
            // it is read again as the start of the next one.
            out += kReplacement;
        }
        i += j > need ? need + 1 : j;
    }
    out += '"';
}

AuditLine::AuditLine(std::string_view type) : buf_(t_audit.line) {
    buf_.clear();
    buf_ += "{\"ts\":\"";
    append_rfc3339(buf_);
    buf_ += "\",\"log\":\"audit\"";
    field("type", type);
}

void AuditLine::key_(std::string_view key) {
    buf_ += ',';
    append_json_string(buf_, key);
    buf_ += ':';
}

AuditLine& AuditLine::number(std::string_view text) {
    buf_ += text;
    return *this;
}

AuditLine& AuditLine::field(std::string_view key, std::string_view value) {
    key_(key);
    append_json_string(buf_, value);
    return *this;
}

AuditLine& AuditLine::field(std::string_view key, bool value) {
    key_(key);
    return number(value ? "true" : "false");
}

AuditLine& AuditLine::field(std::string_view key, double value) {
    key_(key);
    if (!std::isfinite(value)) return number("null");
    char text[32];  // the shortest text that reads back as `value`
    const auto end = std::to_chars(text, text + sizeof text, value).ptr;
    return number(std::string_view(text, static_cast<std::size_t>(end - text)));
}

void AuditLine::write() {
    buf_ += "}\n";
    emit_audit(buf_);
}

}  // namespace relaygate::server
