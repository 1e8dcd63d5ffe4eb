// https:// URLs as policy_url takes them: scheme, host (a name, an IPv4
// literal or a bracketed IPv6 literal), optional port, path and query.
// Pure parsing, no I/O; fuzzed (tests/fuzz/fuzz_https_url.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relaygate {

struct HttpsUrl {
    std::string host;  // a name, an IPv4 literal or an IPv6 literal without brackets
    std::uint16_t port = 443;
    std::string target = "/";  // path and query
};
// "https://host[:port][/path][?query]"; nullopt for any other scheme,
// userinfo, a fragment, an empty host, a bad port, or spaces and control
// characters.
std::optional<HttpsUrl> parse_https_url(std::string_view url);

}  // namespace relaygate
