// ASCII helpers shared by the protocol, message and policy code.
// Deliberately locale-free: SMTP and RFC 5322 syntax is defined on octets.
#pragma once

#include <string>
#include <string_view>

namespace relaygate::ascii {

constexpr bool is_alpha(unsigned char c) {
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}
constexpr bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
constexpr bool is_alnum(unsigned char c) {
    return is_alpha(c) || is_digit(c);
}
constexpr bool is_wsp(unsigned char c) {
    return c == ' ' || c == '\t';
}
// Control characters per RFC 5234 CTL: 0x00-0x1F and 0x7F.
constexpr bool is_ctl(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}
constexpr char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}
constexpr char to_upper(char c) {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c & ~0x20) : c;
}

// Strips WSP (SP, HTAB) from both ends: tag values (RFC 6376 3.2), list
// items.
constexpr std::string_view trim_wsp(std::string_view s) {
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

// Strips WSP, CR and LF from both ends: for values that may still carry a
// fold or a line end (header field bodies, TXT record strings).
constexpr std::string_view trim_wsp_crlf(std::string_view s) {
    auto blank = [](char c) {
        return is_wsp(static_cast<unsigned char>(c)) || c == '\r' || c == '\n';
    };
    while (!s.empty() && blank(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && blank(s.back()))
        s.remove_suffix(1);
    return s;
}

inline std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = to_lower(c);
    return out;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i])) return false;
    return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Lower-case hex of `n` octets (digests, fingerprints, ids).
inline std::string hex(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

constexpr bool is_all_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

}  // namespace relaygate::ascii
