// Is this descriptor the journal? systemd connects a service's stdout and
// stderr to journald and says so in JOURNAL_STREAM ("DEVICE:INODE" of that
// stream, systemd.exec(5)). On it, each operational log line gets its
// syslog priority as an sd-daemon(3) prefix ("<4>"), which journald strips
// and stores, so `journalctl -u relaygate -p warning` works. Nothing else.
#pragma once

#include <string_view>

#include "gateway/server/log.hpp"

namespace relaygate::server {

// True when `journal_stream` (the JOURNAL_STREAM value, may be null) names
// the device and inode that `fd` is open on.
bool is_journal_stream(int fd, const char* journal_stream);

// The sd-daemon(3) prefix of a level: <7> debug, <6> info, <4> warning,
// <3> error.
std::string_view journal_priority_prefix(Level level);

}  // namespace relaygate::server
