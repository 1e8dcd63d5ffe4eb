// gzip with zlib's deflate (windowBits 15 + 16 selects the gzip wrapper).
#include "gateway/server/gzip.hpp"

#include <zlib.h>

#include "gateway/common/ascii.hpp"

namespace relaygate::server {

std::optional<std::string> gzip(std::string_view data) {
    z_stream z{};
    // Level 1: /metrics is mostly repeated names and labels; faster levels
    // already shrink it ~10x, and a scrape must stay cheap.
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return std::nullopt;
    std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return std::nullopt;
    return out;
}

bool accepts_gzip(std::string_view field) {
    while (!field.empty()) {
        const auto comma = field.find(',');
        std::string_view item = field.substr(0, comma);
        field = comma == std::string_view::npos ? std::string_view{} : field.substr(comma + 1);
        const auto semi = item.find(';');
        std::string_view coding = ascii::trim_wsp(item.substr(0, semi));
        std::string_view params =
            semi == std::string_view::npos ? std::string_view{} : item.substr(semi + 1);
        if (!ascii::iequals(coding, "gzip") && !ascii::iequals(coding, "x-gzip") && coding != "*")
            continue;
        // q=0 (or 0.0, 0.00, 0.000) refuses it.
        params = ascii::trim_wsp(params);
        if (params.size() >= 3 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=' &&
            params.substr(2).find_first_not_of("0.") == std::string_view::npos)
            continue;
        return true;
    }
    return false;
}

}  // namespace relaygate::server
