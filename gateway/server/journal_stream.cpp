// JOURNAL_STREAM parsing with fstat(2); no libsystemd needed for this.
#include "gateway/server/journal_stream.hpp"

#include <sys/stat.h>

#include <charconv>
#include <cstdint>
#include <cstring>

namespace relaygate::server {

bool is_journal_stream(int fd, const char* journal_stream) {
    if (journal_stream == nullptr) return false;
    const std::string_view text(journal_stream);
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    std::uint64_t dev = 0, ino = 0;
    const char* end = text.data() + text.size();
    const auto d = std::from_chars(text.data(), text.data() + colon, dev);
    if (d.ec != std::errc() || d.ptr != text.data() + colon || colon == 0) return false;
    const auto i = std::from_chars(text.data() + colon + 1, end, ino);
    if (i.ec != std::errc() || i.ptr != end || colon + 1 == text.size()) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return false;
    return static_cast<std::uint64_t>(st.st_dev) == dev &&
           static_cast<std::uint64_t>(st.st_ino) == ino;
}

std::string_view journal_priority_prefix(Level level) {
    switch (level) {
        case Level::debug:
            return "<7>";
        case Level::info:
            return "<6>";
        case Level::warn:
            return "<4>";
        case Level::error:
            return "<3>";
    }
    return "<6>";
}

}  // namespace relaygate::server
