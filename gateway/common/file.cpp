#include "gateway/common/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

namespace relaygate {

std::optional<std::string> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    // Into the string itself, sized up front: a 30 MB policy is not copied.
    std::string out;
    std::error_code ec;
    if (const auto size = std::filesystem::file_size(path, ec); !ec) out.reserve(size);
    char chunk[65536];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0)
        out.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (in.bad()) return std::nullopt;
    return out;
}

std::optional<std::string> read_descriptor(int fd) {
    std::string out;
    if (struct stat st{}; ::fstat(fd, &st) == 0 && st.st_size > 0)
        out.reserve(static_cast<std::size_t>(st.st_size));
    char chunk[65536];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) return out;
        out.append(chunk, static_cast<std::size_t>(n));
    }
}

std::optional<std::string> read_secret_file(const std::filesystem::path& path) {
    auto text = read_file(path);
    if (!text) return std::nullopt;
    if (!text->empty() && text->back() == '\n') text->pop_back();
    if (!text->empty() && text->back() == '\r') text->pop_back();
    return text;
}

std::filesystem::path staged_path(const std::filesystem::path& path) {
    return path.string() + ".tmp";
}

int write_staged(const std::filesystem::path& path, std::string_view data, std::string& error) {
    const std::string tmp = staged_path(path);
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = "cannot create " + tmp + ": " + std::strerror(errno);
        return -1;
    }
    std::size_t done = 0;
    while (done < data.size()) {
        const auto n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    if (done != data.size() || ::fsync(fd) != 0) {
        error = "cannot write " + tmp + ": " + std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        return -1;
    }
    return fd;
}

bool commit_staged(const std::filesystem::path& path, std::string& error) {
    const std::string tmp = staged_path(path);
    if (::rename(tmp.c_str(), path.c_str()) == 0) return true;
    error = "cannot write " + path.string() + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
}

void discard_staged(const std::filesystem::path& path) {
    ::unlink(staged_path(path).c_str());
}

bool replace_file(const std::filesystem::path& path, std::string_view data, std::string& error) {
    const int fd = write_staged(path, data, error);
    if (fd < 0) return false;
    ::close(fd);
    return commit_staged(path, error);
}

}  // namespace relaygate
