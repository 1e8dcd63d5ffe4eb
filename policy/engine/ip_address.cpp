// IP address and CIDR parsing. inet_pton does the text grammar (pure libc,
// no resolver); everything else is explicit bit arithmetic.
#include "policy/engine/ip_address.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace relaygate::policy {
namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_v4_mapped(const std::array<std::uint8_t, 16>& b) {
    for (std::size_t i = 0; i < kMappedPrefix.size(); ++i)
        if (b[i] != kMappedPrefix[i]) return false;
    return true;
}

}  // namespace

IpAddress IpAddress::v4(std::uint32_t host_order) {
    IpAddress ip;
    ip.family_ = Family::v4;
    ip.bytes_[0] = static_cast<std::uint8_t>(host_order >> 24);
    ip.bytes_[1] = static_cast<std::uint8_t>(host_order >> 16);
    ip.bytes_[2] = static_cast<std::uint8_t>(host_order >> 8);
    ip.bytes_[3] = static_cast<std::uint8_t>(host_order);
    return ip;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) {
    IpAddress ip;
    if (is_v4_mapped(bytes)) {
        ip.family_ = Family::v4;
        for (int i = 0; i < 4; ++i)
            ip.bytes_[i] = bytes[12 + i];
        return ip;
    }
    ip.family_ = Family::v6;
    ip.bytes_ = bytes;
    return ip;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    // inet_pton needs a NUL-terminated string; longest IPv6 text is 45 chars.
    if (text.empty() || text.size() > 45) return std::nullopt;
    char buf[46];
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    std::array<std::uint8_t, 16> b{};
    if (text.find(':') == std::string_view::npos) {
        if (inet_pton(AF_INET, buf, b.data()) != 1) return std::nullopt;
        IpAddress ip;
        ip.family_ = Family::v4;
        ip.bytes_ = b;
        return ip;
    }
    if (inet_pton(AF_INET6, buf, b.data()) != 1) return std::nullopt;
    return v6(b);
}

IpAddress IpAddress::masked(unsigned prefix_len) const {
    IpAddress out = *this;
    for (unsigned i = 0; i < 16; ++i) {
        unsigned first_bit = i * 8;
        if (first_bit >= prefix_len) {
            out.bytes_[i] = 0;
        } else if (prefix_len - first_bit < 8) {
            out.bytes_[i] &= static_cast<std::uint8_t>(0xff << (8 - (prefix_len - first_bit)));
        }
    }
    return out;
}

std::string IpAddress::to_string() const {
    std::string out;
    append_to(out);
    return out;
}

void IpAddress::append_to(std::string& out) const {
    if (!is_v4()) {
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
        out += buf;
        return;
    }
    // Dotted decimal, as inet_ntop writes it (on the data path, per message).
    char buf[sizeof "255.255.255.255"];
    char* p = buf;
    for (int i = 0; i < 4; ++i) {
        if (i) *p++ = '.';
        p = std::to_chars(p, buf + sizeof buf, bytes_[i]).ptr;
    }
    out.append(buf, p);
}

bool Cidr::contains(const IpAddress& ip) const {
    return ip.family() == address.family() && ip.masked(prefix_len) == address;
}

bool Cidr::overlaps(const Cidr& other) const {
    // Two prefixes overlap exactly when the shorter one contains the other.
    return prefix_len <= other.prefix_len ? contains(other.address) : other.contains(address);
}

std::string Cidr::to_string() const {
    std::string out;
    append_to(out);
    return out;
}

void Cidr::append_to(std::string& out) const {
    address.append_to(out);
    char len[4];
    const auto end = std::to_chars(len, len + sizeof len, prefix_len).ptr;
    out += '/';
    out.append(len, end);
}

std::string_view to_string(CidrError e) {
    switch (e) {
        case CidrError::syntax:
            return "not an IPv4 or IPv6 address or network";
        case CidrError::prefix_length:
            return "prefix length out of range";
        case CidrError::host_bits_set:
            return "host bits set after the prefix length";
    }
    return "invalid network";
}

CidrParse parse_cidr(std::string_view text) {
    std::string_view addr_text = text;
    std::optional<unsigned> len;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        addr_text = text.substr(0, slash);
        std::string_view len_text = text.substr(slash + 1);
        unsigned value = 0;
        auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), value);
        if (len_text.empty() || len_text.size() > 3 || ec != std::errc{} ||
            end != len_text.data() + len_text.size())
            return {std::nullopt, CidrError::prefix_length};
        len = value;
    }
    auto ip = IpAddress::parse(addr_text);
    if (!ip) return {std::nullopt, CidrError::syntax};
    bool written_v6 = addr_text.find(':') != std::string_view::npos;
    unsigned written_bits = written_v6 ? 128 : 32;
    unsigned prefix = len.value_or(written_bits);
    if (prefix > written_bits) return {std::nullopt, CidrError::prefix_length};
    if (written_v6 && ip->is_v4()) {
        // ::ffff:a.b.c.d/len: only prefixes inside the mapped block can be
        // expressed as IPv4; a shorter one would span both families.
        if (prefix < 96) return {std::nullopt, CidrError::prefix_length};
        prefix -= 96;
    }
    if (ip->masked(prefix) != *ip) return {std::nullopt, CidrError::host_bits_set};
    return {Cidr{*ip, prefix}, std::nullopt};
}

}  // namespace relaygate::policy
