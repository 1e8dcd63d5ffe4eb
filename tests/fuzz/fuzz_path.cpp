// libFuzzer target for gateway/smtp/path: no crash; an accepted path keeps
// its limits, and its re-emitted mailbox parses back to the same mailbox.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/smtp/path.hpp"

using namespace relaygate::smtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool utf8 = data[0] & 1;
    std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (path_token_length(text) > text.size()) std::abort();
    for (bool reverse : {true, false}) {
        auto r = reverse ? parse_reverse_path(text, utf8) : parse_forward_path(text, utf8);
        if (!r) continue;
        const Path& p = *r;
        if (text.size() > kMaxPath) std::abort();
        if (p.null != (text == "<>")) std::abort();
        if (!reverse && p.null) std::abort();
        if (reverse && p.postmaster) std::abort();
        if (p.null || p.postmaster) continue;
        if (p.local_part.size() > kMaxLocalPart || p.domain.empty()) std::abort();
        // The mailbox we would send upstream means the same thing.
        const std::string again = "<" + p.mailbox() + ">";
        auto r2 = parse_forward_path(again, utf8);
        if (!r2 || r2->mailbox() != p.mailbox() || r2->literal_kind != p.literal_kind) std::abort();
        if (path_token_length(again) != again.size()) std::abort();
    }
    return 0;
}
