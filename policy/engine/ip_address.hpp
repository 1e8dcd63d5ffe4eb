// IpAddress and Cidr: small value types for client addresses and networks.
// Pure parsing and bit arithmetic; IPv4-mapped IPv6 (::ffff:a.b.c.d) is
// folded to IPv4 so one client never has two spellings. No DNS, no sockets.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relaygate::policy {

class IpAddress {
  public:
    enum class Family : std::uint8_t { v4, v6 };

    IpAddress() = default;
    static IpAddress v4(std::uint32_t host_order);
    static IpAddress v6(const std::array<std::uint8_t, 16>& bytes);

    // Accepts dotted-quad IPv4 and RFC 4291 2.2 IPv6 text (no zone ids, no
    // brackets). IPv4-mapped IPv6 becomes IPv4: the policy must match a
    // client the same way whether it arrived on a v4 or a dual-stack socket.
    static std::optional<IpAddress> parse(std::string_view text);

    Family family() const { return family_; }
    bool is_v4() const { return family_ == Family::v4; }
    unsigned bits() const { return is_v4() ? 32 : 128; }
    // IPv4 occupies bytes 0..3; IPv6 all 16.
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    bool bit(unsigned i) const { return (bytes_[i / 8] >> (7 - i % 8)) & 1; }
    // The address with every bit from `prefix_len` on cleared.
    IpAddress masked(unsigned prefix_len) const;
    std::string to_string() const;
    void append_to(std::string& out) const;  // to_string(), appended (IPv4 without libc)

    friend bool operator==(const IpAddress&, const IpAddress&) = default;
    friend std::strong_ordering operator<=>(const IpAddress&, const IpAddress&) = default;

  private:
    Family family_ = Family::v4;
    std::array<std::uint8_t, 16> bytes_{};
};

struct Cidr {
    IpAddress address;  // always masked to prefix_len
    unsigned prefix_len = 0;

    bool contains(const IpAddress& ip) const;
    bool overlaps(const Cidr& other) const;
    std::string to_string() const;  // "192.0.2.0/24"
    void append_to(std::string& out) const;
    friend bool operator==(const Cidr&, const Cidr&) = default;
};

enum class CidrError { syntax, prefix_length, host_bits_set };
std::string_view to_string(CidrError e);

// Parses "addr/len" (a bare address means a host route). Host bits set
// ("198.51.100.7/24") is an error, not silently masked: the writer meant
// either the host or the network and the policy must not guess which.
struct CidrParse {
    std::optional<Cidr> cidr;
    std::optional<CidrError> error;
};
CidrParse parse_cidr(std::string_view text);

}  // namespace relaygate::policy
