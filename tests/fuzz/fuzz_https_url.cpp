// libFuzzer target for gateway/common/https_url: no crash; an accepted URL
// has a host, a port and a target starting with '/', holds no byte that
// could split an HTTP request line, and written back out it parses to the
// same parts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/common/https_url.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto u = relaygate::parse_https_url(text);
    if (!u) return 0;
    if (u->host.empty() || u->port == 0 || u->target.empty() || u->target.front() != '/')
        std::abort();
    for (char c : u->host + u->target)
        if (c <= ' ' || c >= 127) std::abort();
    const bool v6 = u->host.find(':') != std::string::npos;
    const std::string again = "https://" + (v6 ? "[" + u->host + "]" : u->host) + ":" +
                              std::to_string(u->port) + u->target;
    const auto u2 = relaygate::parse_https_url(again);
    if (!u2 || u2->host != u->host || u2->port != u->port || u2->target != u->target) std::abort();
    return 0;
}
