#include "gateway/common/https_url.hpp"

#include <algorithm>
#include <charconv>

#include "gateway/common/ascii.hpp"

namespace relaygate {

std::optional<HttpsUrl> parse_https_url(std::string_view url) {
    constexpr std::string_view scheme = "https://";
    if (!ascii::istarts_with(url, scheme) || std::any_of(url.begin(), url.end(), [](char c) {
            return c <= ' ' || c >= 127 || c == '#';
        }))
        return std::nullopt;
    url.remove_prefix(scheme.size());
    const auto end = url.find_first_of("/?");
    const std::string_view authority = url.substr(0, end);
    HttpsUrl out;
    if (end != std::string_view::npos)
        out.target = (url[end] == '?' ? "/" : "") + std::string(url.substr(end));
    if (authority.find('@') != std::string_view::npos) return std::nullopt;
    // "host", "host:port", "[v6]", "[v6]:port"
    std::string_view host = authority, port_part;
    if (authority.starts_with('[')) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = authority.substr(1, close - 1);
        port_part = authority.substr(close + 1);
        if (host.find(':') == std::string_view::npos) return std::nullopt;
    } else if (const auto colon = authority.find(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port_part = authority.substr(colon);
    }
    if (host.empty()) return std::nullopt;
    out.host = std::string(host);
    if (!port_part.empty()) {
        const auto port = port_part.substr(1);
        unsigned p = 0;
        const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
        if (port_part.front() != ':' || port.empty() || ec != std::errc() ||
            ptr != port.data() + port.size() || p == 0 || p > 65535)
            return std::nullopt;
        out.port = static_cast<std::uint16_t>(p);
    }
    return out;
}

}  // namespace relaygate
