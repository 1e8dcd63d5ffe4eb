// The process's file descriptor limit (RLIMIT_NOFILE). Every connection
// costs two descriptors (client and upstream); running out makes accept()
// fail, so the gateway raises its soft limit to the hard one at start.
#pragma once

#include <cstdint>

namespace relaygate::server {

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit
// in force afterwards.
std::uint64_t raise_descriptor_limit();
// The hard RLIMIT_NOFILE: what raise_descriptor_limit() can reach.
std::uint64_t hard_descriptor_limit();

// One descriptor held in reserve (an open /dev/null). When accept() fails
// because the process is out of descriptors, releasing it lets exactly one
// connection in; the admin listener uses it so that /livez and /metrics
// still answer while SMTP clients have taken every other descriptor.
// Not thread-safe: one owner, one thread.
class SpareDescriptor {
  public:
    SpareDescriptor() { acquire(); }
    ~SpareDescriptor() { release(); }
    SpareDescriptor(const SpareDescriptor&) = delete;
    SpareDescriptor& operator=(const SpareDescriptor&) = delete;

    bool held() const { return fd_ >= 0; }
    // Takes a descriptor if none is held; fails quietly when none is free
    // (the owner tries again when one of its own connections closes).
    void acquire();
    void release();

  private:
    int fd_ = -1;
};

}  // namespace relaygate::server
