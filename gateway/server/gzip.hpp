// gzip (RFC 1952) for HTTP responses: /metrics when the scraper asks
// (Prometheus sends Accept-Encoding: gzip). zlib does the deflating.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relaygate::server {

// The gzip member holding `data`; nullopt if zlib fails (out of memory).
std::optional<std::string> gzip(std::string_view data);

// Whether an Accept-Encoding field value (RFC 9110 12.5.3) accepts gzip:
// "gzip" or "x-gzip" or "*" listed without q=0.
bool accepts_gzip(std::string_view accept_encoding);

}  // namespace relaygate::server
