// A Redis server address as the config writes it: "host:port",
// "[v6]:port" or a bare host (port 6379). Header-only and pure, so the
// config reader can validate it without linking the Redis client.
#pragma once

#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relaygate::resp {

struct HostPort {
    std::string host;  // a name or an IP literal (IPv6 without brackets)
    std::uint16_t port = 6379;
};

// nullopt when malformed: empty host, bad or zero port, an IPv6 literal
// without brackets (ambiguous with the port), characters a host name
// cannot hold.
inline std::optional<HostPort> parse_host_port(std::string_view s) {
    HostPort out;
    std::string_view port;
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos || close == 1) return std::nullopt;
        out.host = std::string(s.substr(1, close - 1));
        const auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
            if (port.empty()) return std::nullopt;
        }
        for (char c : out.host)
            if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'))
                return std::nullopt;
    } else {
        const auto colon = s.find(':');
        if (colon != s.rfind(':')) return std::nullopt;  // IPv6 needs brackets
        out.host = std::string(s.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = s.substr(colon + 1);
            if (port.empty()) return std::nullopt;
        }
        if (out.host.empty()) return std::nullopt;
        for (char c : out.host)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
                return std::nullopt;
    }
    if (!port.empty()) {
        unsigned value = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
            return std::nullopt;
        out.port = static_cast<std::uint16_t>(value);
    }
    return out;
}

}  // namespace relaygate::resp
