// The service manager's readiness protocol (sd_notify(3), libsystemd):
// READY=1 once the listeners are up, RELOADING=1 ... READY=1 around a
// SIGHUP reload, STOPPING=1 when the drain starts. Owns only the messages;
// the server decides when. Without NOTIFY_SOCKET (not started by systemd
// with Type=notify) every call is a no-op that returns false.
#pragma once

#include <string_view>

namespace relaygate::server::systemd {

// Sends `state` (newline-separated VAR=value assignments) as is. True when
// a service manager was told; false without NOTIFY_SOCKET or on error.
bool notify(std::string_view state);

// READY=1 plus a STATUS= line for `systemctl status`.
bool notify_ready(std::string_view status);
// RELOADING=1 with MONOTONIC_USEC= (systemd 253's Type=notify-reload wants
// it; 252 ignores it): the manager waits for the next READY=1.
bool notify_reloading();
// STOPPING=1: the drain has begun; the manager now waits TimeoutStopSec.
bool notify_stopping();

}  // namespace relaygate::server::systemd
