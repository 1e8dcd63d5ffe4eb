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

}  // namespace relaygate::server
