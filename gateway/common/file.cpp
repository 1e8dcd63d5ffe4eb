#include "gateway/common/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

namespace relaygate {

namespace {
bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const auto n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

int open_staged(const std::filesystem::path& path, std::string& error) {
    const std::string tmp = staged_path(path);
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) error = "cannot create " + tmp + ": " + std::strerror(errno);
    return fd;
}
}  // namespace

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
    const int fd = open_staged(path, error);
    if (fd < 0) return -1;
    if (!write_all(fd, data) || ::fsync(fd) != 0) {
        error = "cannot write " + staged_path(path).string() + ": " + std::strerror(errno);
        ::close(fd);
        discard_staged(path);
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

StagedWriter::StagedWriter(std::filesystem::path path) : path_(std::move(path)) {}

void StagedWriter::open() {
    if (opened_) return;
    opened_ = true;
    fd_ = open_staged(path_, error_);
}

StagedWriter::~StagedWriter() {
    if (fd_ < 0) return;
    ::close(fd_);
    if (!committed_) discard_staged(path_);
}

void StagedWriter::append(std::string_view piece) {
    open();
    if (fd_ >= 0 && !write_all(fd_, piece))
        spill("cannot write " + staged_path(path_).string() + ": " + std::strerror(errno));
    if (fd_ >= 0)
        size_ += piece.size();
    else
        memory_ += piece;
}

void StagedWriter::finish() {
    open();
    if (fd_ >= 0 && ::fsync(fd_) != 0)
        spill("cannot write " + staged_path(path_).string() + ": " + std::strerror(errno));
}

void StagedWriter::spill(std::string why) {
    error_ = std::move(why);
    memory_.resize(size_);
    for (std::size_t done = 0; done < memory_.size();) {
        const auto n =
            ::pread(fd_, memory_.data() + done, memory_.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            lost_ = true;
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    ::close(fd_);
    fd_ = -1;
    discard_staged(path_);
}

bool StagedWriter::commit(std::string& error) {
    if (fd_ < 0) {
        error = error_;
        return false;
    }
    committed_ = commit_staged(path_, error);
    return committed_;
}

bool read_pieces(int fd, std::size_t piece_size,
                 const std::function<bool(std::string_view piece)>& sink) {
    std::string piece(piece_size, '\0');
    for (off_t at = 0;;) {
        const ssize_t n = ::pread(fd, piece.data(), piece.size(), at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        at += n;
        if (!sink(std::string_view(piece.data(), static_cast<std::size_t>(n)))) return true;
    }
}

}  // namespace relaygate
