// sd_notify(3) through libsystemd: the socket handling (abstract
// namespace, credentials) is libsystemd's, the message text is ours.
#include "gateway/server/systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <ctime>
#include <string>

namespace relaygate::server::systemd {

bool notify(std::string_view state) {
    // sd_notify returns 0 without NOTIFY_SOCKET, > 0 when sent, < 0 on error.
    // unset_environment=0: every later call must find the socket too.
    const std::string text(state);
    return ::sd_notify(0, text.c_str()) > 0;
}

bool notify_ready(std::string_view status) {
    std::string text = "READY=1\nSTATUS=";
    text += status;
    return notify(text);
}

bool notify_reloading() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                      static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    return notify("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

bool notify_stopping() {
    return notify("STOPPING=1\nSTATUS=draining");
}

}  // namespace relaygate::server::systemd
