#include "gateway/server/file_watch.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <system_error>

namespace relaygate::server {

namespace {

// "" when the file is missing.
std::string stat_stamp(const std::filesystem::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return {};
    return std::to_string(st.st_dev) + ':' + std::to_string(st.st_ino) + ':' +
           std::to_string(st.st_size) + ':' + std::to_string(st.st_mtim.tv_sec) + '.' +
           std::to_string(st.st_mtim.tv_nsec);
}

// A directory: its own stamp plus every entry's name and stamp, in name
// order (a file edited in place changes the entry, not the directory).
std::string directory_stamp(const std::filesystem::path& dir, std::string own) {
    std::error_code ec;
    std::vector<std::string> entries;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        entries.push_back(it->path().filename().string() + '=' + stat_stamp(it->path()));
    std::sort(entries.begin(), entries.end());
    for (auto& e : entries)
        own += '|' + e;
    return own;
}

}  // namespace

FileWatch::FileWatch(std::vector<std::filesystem::path> files)
    : files_(std::move(files)), last_(stamp()) {}

std::string FileWatch::stamp() const {
    std::string all;
    for (const auto& f : files_) {
        auto s = stat_stamp(f);
        if (s.empty()) return {};
        std::error_code ec;
        if (std::filesystem::is_directory(f, ec)) s = directory_stamp(f, std::move(s));
        all += s;
        all += '\n';
    }
    return all;
}

bool FileWatch::changed() {
    auto now = stamp();
    if (now.empty() || now == last_) return false;
    last_ = std::move(now);
    return true;
}

}  // namespace relaygate::server
