// Nameserver configuration: /etc/resolv.conf (parsed by libldns) and
// "address[:port]" server strings from the command line or config. Parsing
// only: nothing here sends a query.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"

namespace relaygate::dns {

struct Endpoint {
    std::string address;  // an IPv4 or IPv6 literal
    std::uint16_t port = 53;
};

// The `nameserver` addresses of a resolv.conf(5) file, in order; an error
// when the file cannot be read or names no server.
Result<std::vector<std::string>, std::string> read_resolv_conf(
    const std::filesystem::path& path = "/etc/resolv.conf");

// "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353".
Result<Endpoint, std::string> parse_server(std::string_view server);

}  // namespace relaygate::dns
