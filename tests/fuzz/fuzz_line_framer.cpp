// libFuzzer target for gateway/smtp/line_framer: no crash, bounded output,
// and the same events whether the input comes whole or in chunks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/smtp/line_framer.hpp"

using relaygate::smtp::LineEvent;
using relaygate::smtp::LineFramer;

namespace {

std::vector<std::string> run(std::string_view in, std::size_t max, std::size_t chunk) {
    LineFramer f(max);
    std::vector<std::string> events;
    while (!in.empty()) {
        // Each chunk lives in its own buffer, destroyed after use.
        std::string piece(in.substr(0, chunk));
        in.remove_prefix(piece.size());
        std::string_view rest = piece;
        for (;;) {
            LineEvent ev = f.feed(rest);
            if (ev.consumed > rest.size()) std::abort();
            rest.remove_prefix(ev.consumed);
            if (ev.kind == LineEvent::Kind::need_more) {
                if (!rest.empty()) std::abort();
                break;
            }
            if (ev.kind == LineEvent::Kind::line) {
                if (ev.line.size() + 2 > f.max_line_length()) std::abort();
                if (ev.line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
                    std::abort();
                events.push_back("L" + std::string(ev.line));
            } else {
                events.push_back("E" + std::to_string(static_cast<int>(ev.error)));
            }
        }
    }
    return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::size_t max = 3 + data[0] % 64;
    const std::size_t chunk = 1 + data[1] % 17;
    std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
    if (run(in, max, in.size() + 1) != run(in, max, chunk)) std::abort();
    return 0;
}
