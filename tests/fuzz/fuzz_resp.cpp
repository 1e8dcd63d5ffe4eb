// libFuzzer target for gateway/redis/resp: no crash and no unbounded
// allocation under small limits; whole and chunked input give the same
// replies and the same verdict (error or not); a reply of strings only,
// formatted as a command again, reads back equal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/redis/resp.hpp"

using namespace relaygate::resp;

namespace {

std::vector<Value> run(std::string_view in, std::size_t chunk, bool& error) {
    ReaderLimits limits;
    limits.max_reply_bytes = 512;
    limits.max_elements = 64;
    limits.max_depth = 3;
    Reader r(limits);
    std::vector<Value> out;
    error = false;
    while (!in.empty() && !error) {
        const std::string piece(in.substr(0, chunk));
        in.remove_prefix(piece.size());
        r.feed(piece);
        for (;;) {
            auto n = r.next();
            if (!n) {
                error = true;
                break;
            }
            if (!n->has_value()) break;
            out.push_back(std::move(**n));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t chunk = 1 + data[0] % 13;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool e1 = false, e2 = false;
    const auto whole = run(in, in.size() + 1, e1);
    const auto split = run(in, chunk, e2);
    if (whole != split || e1 != e2) std::abort();
    for (const Value& v : whole) {
        if (v.type != Type::array || v.elements.empty()) continue;
        std::vector<std::string> argv;
        for (const Value& e : v.elements) {
            if (e.type != Type::string) break;
            argv.push_back(e.text);
        }
        if (argv.size() != v.elements.size()) continue;
        Reader back;
        back.feed(format_command(argv));
        auto n = back.next();
        if (!n || !n->has_value() || **n != v) std::abort();
    }
    return 0;
}
