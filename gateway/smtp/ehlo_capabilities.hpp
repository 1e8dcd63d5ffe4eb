// EHLO reply interpretation for the upstream client (RFC 5321 4.1.1.1).
// Owns turning a parsed 250 reply into a keyword table; it does not decide
// which extensions to use and never does I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/smtp/reply.hpp"

namespace relaygate::smtp {

struct EhloCapabilities {
    std::string greeting;  // the first line (the server's domain and text)
    // ehlo-keyword, upper-cased -> ehlo-params as sent.
    std::map<std::string, std::vector<std::string>, std::less<>> keywords;

    bool has(std::string_view keyword) const;  // keyword compared case-insensitively
    const std::vector<std::string>* params(std::string_view keyword) const;
    // RFC 1870: "SIZE n" (absent, or 0 = no fixed limit, gives nullopt).
    std::optional<std::uint64_t> size_limit() const;
};

// Extension lines are lines 2..n of a 250 reply. A line that is not
// ehlo-keyword *(SP ehlo-param) (e.g. the legacy "AUTH=LOGIN PLAIN") is
// skipped; a repeated keyword keeps its first line. Any other code gives an
// empty table.
EhloCapabilities parse_ehlo_capabilities(const Reply& reply);

}  // namespace relaygate::smtp
