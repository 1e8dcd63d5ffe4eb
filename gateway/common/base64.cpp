// Base64 codec. Both flavours share one core: the padded form is the
// unpadded one plus the '=' that make its length a multiple of 4.
#include "gateway/common/base64.hpp"

#include <array>
#include <cstdint>

namespace relaygate {
namespace {
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int, 256> make_table() {
    std::array<int, 256> t{};
    for (auto& v : t)
        v = -1;
    for (std::size_t i = 0; i < kAlphabet.size(); ++i)
        t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
    return t;
}
constexpr auto kTable = make_table();
}  // namespace

int base64_value(char c) {
    return kTable[static_cast<unsigned char>(c)];
}

std::string base64_encode(std::string_view in, Base64Padding padding) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        acc = (acc << 8) | static_cast<unsigned char>(c);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += kAlphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
    if (padding == Base64Padding::padded)
        while (out.size() % 4 != 0)
            out += '=';
    return out;
}

std::optional<std::string> base64_decode(std::string_view in, Base64Padding padding) {
    if (padding == Base64Padding::padded) {
        // RFC 4648 3.2: padded to a multiple of 4 with at most two '='.
        if (in.size() % 4 != 0) return std::nullopt;
        for (int k = 0; k < 2 && in.ends_with('='); ++k)
            in.remove_suffix(1);
    }
    // One leftover character carries 6 bits: less than an octet.
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = base64_value(c);
        if (v < 0) return std::nullopt;  // also a '=' before the end
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    // Canonical form: the bits left over must be zero (RFC 4648 3.5).
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

}  // namespace relaygate
