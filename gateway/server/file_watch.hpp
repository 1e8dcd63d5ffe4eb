// FileWatch: notices that any of a set of files changed since the last
// look, by stat() (device, inode, size, mtime). stat() follows symlinks, so
// the atomic swap of a Kubernetes ConfigMap or Secret volume (its ..data
// symlink) counts as a change though the path stays the same. Polled from a
// timer; no inotify, which misses exactly those swaps.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace relaygate::server {

class FileWatch {
  public:
    FileWatch() = default;
    // Remembers the files' current state: changed() compares against it.
    explicit FileWatch(std::vector<std::filesystem::path> files);

    // True once per change: when some file differs from the last look and
    // every file exists (a file being replaced by delete + create is not
    // reported until it is back). A directory counts as changed when any
    // of its entries is added, removed or changed.
    bool changed();

    bool empty() const { return files_.empty(); }

  private:
    std::string stamp() const;
    std::vector<std::filesystem::path> files_;
    std::string last_;
};

}  // namespace relaygate::server
