// ProxyParser: the HAProxy PROXY protocol header (v1 text, v2 binary) that a
// trusted load balancer puts in front of the SMTP stream (proxy-protocol.txt,
// 2020/03/05). Owns header syntax only: it never does I/O, never guesses
// whether a header is present, and never takes a byte past the header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace relaygate::proxy {

// Which header versions a listener accepts. The spec (2.) says a receiver is
// configured for the protocol and must not guess; this is that configuration.
enum class Versions : std::uint8_t { v1 = 1, v2 = 2, both = 3 };

// Spec 2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two
// full-length IPv6 addresses and ports).
inline constexpr std::size_t kV1MaxLine = 107;
// Spec 2.2: 12-byte signature, ver_cmd, fam, 16-bit length.
inline constexpr std::size_t kV2FixedSize = 16;
inline constexpr std::array<unsigned char, 12> kV2Signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
// Bound on the v2 length field (address block + TLVs). Spec 2. designs both
// formats to fit one minimal TCP segment (576 - 40 = 536 octets), which is
// what load balancers send in practice (AWS/GCP/Azure add one TLV of a few
// dozen octets); the field itself allows 65535. The default keeps a pending
// connection's buffer under 600 octets; the minimum still admits an IPv6
// address block; the maximum is the field's range.
inline constexpr std::size_t kDefaultMaxV2Payload = 536;
inline constexpr std::size_t kMinV2Payload = 36;
inline constexpr std::size_t kMaxV2Payload = 65535;

// Spec 2.2 TLV types this parser looks at.
inline constexpr std::uint8_t kTlvCrc32c = 0x03;
inline constexpr std::uint8_t kTlvNoop = 0x04;
inline constexpr std::uint8_t kTlvUniqueId = 0x05;
// Spec 2.2.5: "an opaque byte sequence of up to 128 bytes".
inline constexpr std::size_t kMaxUniqueId = 128;

enum class ProxyError : std::uint8_t {
    not_proxy,              // the first octets are neither the v1 nor the v2 signature
    version_not_allowed,    // a valid signature of a version this listener does not accept
    v1_too_long,            // no CRLF within the first 107 octets
    v1_bad_line_ending,     // a CR not followed by LF, or an LF not preceded by CR
    v1_bad_character,       // an octet outside printable US-ASCII
    v1_bad_syntax,          // not exactly one space between exactly six fields
    v1_bad_protocol,        // protocol other than TCP4, TCP6 or UNKNOWN
    v1_bad_address,         // not a canonical address of the announced family
    v1_bad_port,            // not 0-65535 in decimal without leading zeros
    v2_bad_version,         // v2 signature with a version nibble other than 2
    v2_bad_command,         // command other than LOCAL (0) or PROXY (1)
    v2_bad_family,          // address family or transport not defined by the spec
    v2_unsupported_family,  // PROXY over AF_UNSPEC, AF_UNIX or DGRAM: no TCP peer
    v2_too_long,            // length field above the configured bound
    v2_bad_length,          // length shorter than the family's address block
    v2_bad_tlv,             // TLV header or value past the end, or a malformed known TLV
    v2_bad_checksum,        // PP2_TYPE_CRC32C present and wrong (spec 2.2.3: MUST reject)
    finished,               // feed() after the parser already returned done or error
};

std::string_view to_string(ProxyError e);

// The proxied connection's family. `unspec` for v1 UNKNOWN and v2 LOCAL.
enum class Family : std::uint8_t { unspec, tcp4, tcp6 };

// "unknown", "tcp4", "tcp6".
std::string_view to_string(Family f);

// A v2 Type-Length-Value extension (spec 2.2), value kept as raw octets.
// Nested PP2_TYPE_SSL sub-TLVs are not interpreted.
struct Tlv {
    std::uint8_t type = 0;
    std::string value;
    friend bool operator==(const Tlv&, const Tlv&) = default;
};

struct ProxyHeader {
    int version = 0;  // 1 or 2
    // v2 LOCAL or v1 UNKNOWN: the spec says to use the real socket endpoints
    // and ignore any address information; family is unspec, addresses empty.
    bool local = true;
    Family family = Family::unspec;
    // Textual addresses: IPv4 dotted quad, IPv6 in inet_ntop's RFC 5952 form
    // (lower case, longest zero run as "::"), whatever case the sender used.
    std::string src_addr;
    std::string dst_addr;
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    // v2 PROXY only, in wire order; PP2_TYPE_NOOP (spec 2.2.4: "should be
    // ignored") is dropped; PP2_TYPE_CRC32C is kept after it was verified.
    std::vector<Tlv> tlvs;

    // True only for a proxied TCP connection with both addresses: never for
    // v1 UNKNOWN or v2 LOCAL, whose addresses (if any) carry no meaning.
    bool usable_for_identity() const {
        return !local && family != Family::unspec && !src_addr.empty() && !dst_addr.empty();
    }

    friend bool operator==(const ProxyHeader&, const ProxyHeader&) = default;
};

struct ProxyEvent {
    enum class Kind : std::uint8_t { need_more, done, error };
    Kind kind = Kind::need_more;
    // Octets of this input taken by the call. need_more: all of it. done: up
    // to the end of the header; input.substr(consumed) is the start of the
    // SMTP stream and belongs to the caller. error: up to and including the
    // octet that showed the fault (the connection must be dropped anyway).
    std::size_t consumed = 0;
    ProxyHeader header;                        // for done
    ProxyError error = ProxyError::not_proxy;  // for error
};

// Incremental, resumable parser for the one header at the start of a
// connection.
//
// feed() takes input in any split and returns exactly one event. It checks
// each octet as it arrives and rejects as soon as the input cannot be a valid
// header (spec 2.1: "abort the connection as soon as possible"); addresses
// are decoded only once the whole line or block is in (spec 2.1/2.2). The
// same bytes give the same event and the same total `consumed` however they
// are cut. It retains at most kV1MaxLine or 16 + max_v2_payload octets.
// After done or error the parser is spent: further calls return
// error `finished` with consumed 0.
class ProxyParser {
  public:
    // max_v2_payload is clamped to [kMinV2Payload, kMaxV2Payload].
    explicit ProxyParser(Versions allowed, std::size_t max_v2_payload = kDefaultMaxV2Payload);

    ProxyEvent feed(std::string_view input);

    Versions allowed() const { return allowed_; }
    std::size_t max_v2_payload() const { return max_v2_payload_; }

  private:
    enum class State : std::uint8_t { signature, v1_line, v2_fixed, v2_block, finished };

    // Takes one octet into buf_; returns the fault it shows, if any.
    std::optional<ProxyError> step(unsigned char c);
    ProxyEvent fail(std::size_t consumed, ProxyError e);
    ProxyEvent succeed(std::size_t consumed, ProxyHeader header);

    Versions allowed_;
    std::size_t max_v2_payload_;
    State state_ = State::signature;
    std::string buf_;           // the header octets so far, bounded as above
    std::size_t v2_total_ = 0;  // v2: 16 + length field, once known
};

// CRC-32C (Castagnoli, RFC 4960 appendix B) as PP2_TYPE_CRC32C uses it.
// Exposed for tests and for whoever needs to produce a header.
std::uint32_t crc32c(std::string_view data);

}  // namespace relaygate::proxy
