// ProxyParser implementation: a per-octet state machine over a bounded buffer
// of the header, then one decode of the complete v1 line or v2 block.
// Section numbers refer to HAProxy's proxy-protocol.txt (2020/03/05).
// No I/O; inet_pton/inet_ntop are the only libc calls, for address text.
#include "gateway/proxy/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include "gateway/common/ascii.hpp"
#include "gateway/common/result.hpp"

namespace relaygate::proxy {

namespace {

constexpr std::string_view kV1Signature = "PROXY";

// Spec 2.2: the high nibble of the 14th octet is the family, the low one the
// transport.
constexpr unsigned kAfInet = 0x1, kAfInet6 = 0x2, kAfUnix = 0x3;
constexpr unsigned kTransportStream = 0x1, kTransportDgram = 0x2;
constexpr unsigned kCmdLocal = 0x0, kCmdProxy = 0x1;
constexpr std::size_t kInetBlock = 2 * 4 + 2 * 2;    // "len = 12"
constexpr std::size_t kInet6Block = 2 * 16 + 2 * 2;  // "len = 36"

using HeaderResult = Result<ProxyHeader, ProxyError>;

bool allows(Versions allowed, Versions v) {
    return (static_cast<unsigned>(allowed) & static_cast<unsigned>(v)) != 0;
}

// Spec 2.1: "exactly 4 integers in the range [0..255] ... separated by exactly
// one dot ... Heading zeroes are not permitted".
bool is_canonical_ipv4(std::string_view s) {
    int parts = 0;
    while (true) {
        const auto dot = s.find('.');
        const std::string_view part = s.substr(0, dot);
        if (part.empty() || part.size() > 3) return false;
        if (part.size() > 1 && part[0] == '0') return false;
        int v = 0;
        for (char c : part) {
            if (!ascii::is_digit(static_cast<unsigned char>(c))) return false;
            v = v * 10 + (c - '0');
        }
        if (v > 255) return false;
        ++parts;
        if (dot == std::string_view::npos) break;
        s.remove_prefix(dot + 1);
    }
    return parts == 4;
}

// IPv6 text per RFC 5952 4 (lower-case hex, no leading zeros, the longest
// run of two or more zero groups as "::"), always in hex: glibc's inet_ntop
// writes IPv4-compatible and -mapped addresses as dotted quads ("::0.15.0.15"),
// which the v1 grammar (spec 2.1) does not allow, so a header re-emitted
// from our own output would no longer parse.
std::string ipv6_text(const unsigned char* b) {
    unsigned g[8];
    for (int i = 0; i < 8; ++i) g[i] = (b[2 * i] << 8) | b[2 * i + 1];
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (g[i] != 0) {
            ++i;
            continue;
        }
        int j = i;
        while (j < 8 && g[j] == 0) ++j;
        if (j - i > best_len && j - i >= 2) best = i, best_len = j - i;
        i = j;
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 8; ++i) {
        if (i == best) {
            out += "::";
            i += best_len - 1;
            continue;
        }
        if (!out.empty() && out.back() != ':') out += ':';
        bool started = false;
        for (int shift = 12; shift >= 0; shift -= 4) {
            const unsigned d = (g[i] >> shift) & 15;
            if (d || started || shift == 0) {
                out += hex[d];
                started = true;
            }
        }
    }
    return out;
}

std::string ntop(int af, const void* bytes) {
    if (af == AF_INET6) return ipv6_text(static_cast<const unsigned char*>(bytes));
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(af, bytes, text, sizeof text) == nullptr) return {};
    return text;
}

// Spec 2.1: "series of sets of 4 hexadecimal digits (upper or lower case)
// delimited by colons ... one double colon ... exactly 128 bits". Only hex
// digits and colons: the dotted-quad tail inet_pton also accepts is not in
// that grammar. Returns the RFC 5952 text, or empty if invalid.
std::string canonical_ipv6(std::string_view s) {
    if (s.empty() || s.size() > 39) return {};
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        const bool hex =
            ascii::is_digit(u) || (ascii::to_lower(c) >= 'a' && ascii::to_lower(c) <= 'f');
        if (!hex && c != ':') return {};
    }
    in6_addr a{};
    if (inet_pton(AF_INET6, std::string(s).c_str(), &a) != 1) return {};
    return ntop(AF_INET6, &a);
}

// Spec 2.1: "a decimal integer in the range [0..65535] inclusive. Heading
// zeroes are not permitted".
bool parse_port(std::string_view s, std::uint16_t& out) {
    if (s.empty() || s.size() > 5) return false;
    if (s.size() > 1 && s[0] == '0') return false;
    std::uint32_t v = 0;
    for (char c : s) {
        if (!ascii::is_digit(static_cast<unsigned char>(c))) return false;
        v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (v > 65535) return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

// `line` is the whole v1 line without its CRLF; it starts with "PROXY" and
// holds only printable US-ASCII (checked octet by octet on the way in).
HeaderResult parse_v1(std::string_view line) {
    std::string_view rest = line.substr(kV1Signature.size());
    if (rest.empty() || rest[0] != ' ') return unexpected(ProxyError::v1_bad_syntax);
    rest.remove_prefix(1);

    ProxyHeader h;
    h.version = 1;
    const auto sp = rest.find(' ');
    const std::string_view proto = rest.substr(0, sp);
    // Spec 2.1: for UNKNOWN "the receiver must ignore anything presented
    // before the CRLF" and use the real connection's endpoints.
    if (proto == "UNKNOWN") return h;
    if (proto.empty()) return unexpected(ProxyError::v1_bad_syntax);
    if (proto != "TCP4" && proto != "TCP6") return unexpected(ProxyError::v1_bad_protocol);
    if (sp == std::string_view::npos) return unexpected(ProxyError::v1_bad_syntax);
    rest.remove_prefix(sp + 1);

    // Exactly one space between fields: no empty field, exactly four.
    std::array<std::string_view, 4> f;
    std::size_t n = 0;
    while (true) {
        const auto next = rest.find(' ');
        const std::string_view field = rest.substr(0, next);
        if (field.empty() || n == f.size()) return unexpected(ProxyError::v1_bad_syntax);
        f[n++] = field;
        if (next == std::string_view::npos) break;
        rest.remove_prefix(next + 1);
    }
    if (n != f.size()) return unexpected(ProxyError::v1_bad_syntax);

    // "The advertised protocol family dictates what format to use."
    if (proto == "TCP4") {
        if (!is_canonical_ipv4(f[0]) || !is_canonical_ipv4(f[1]))
            return unexpected(ProxyError::v1_bad_address);
        h.family = Family::tcp4;
        h.src_addr = f[0];
        h.dst_addr = f[1];
    } else {
        h.src_addr = canonical_ipv6(f[0]);
        h.dst_addr = canonical_ipv6(f[1]);
        if (h.src_addr.empty() || h.dst_addr.empty()) return unexpected(ProxyError::v1_bad_address);
        h.family = Family::tcp6;
    }
    if (!parse_port(f[2], h.src_port) || !parse_port(f[3], h.dst_port))
        return unexpected(ProxyError::v1_bad_port);
    h.local = false;
    return h;
}

std::uint16_t load_u16(std::string_view b, std::size_t at) {
    return static_cast<std::uint16_t>((static_cast<unsigned char>(b[at]) << 8) |
                                      static_cast<unsigned char>(b[at + 1]));
}

std::uint32_t load_u32(std::string_view b, std::size_t at) {
    return (std::uint32_t{load_u16(b, at)} << 16) | load_u16(b, at + 2);
}

// `block` is the complete v2 header (16 + length octets) of a PROXY command
// over TCP4 or TCP6, its length already checked against the address block.
HeaderResult parse_v2_proxy(std::string_view block) {
    const unsigned fam = static_cast<unsigned char>(block[13]) >> 4;
    ProxyHeader h;
    h.version = 2;
    h.local = false;
    std::size_t at = kV2FixedSize;
    if (fam == kAfInet) {
        h.family = Family::tcp4;
        h.src_addr = ntop(AF_INET, block.data() + at);
        h.dst_addr = ntop(AF_INET, block.data() + at + 4);
        at += 8;
    } else {
        h.family = Family::tcp6;
        h.src_addr = ntop(AF_INET6, block.data() + at);
        h.dst_addr = ntop(AF_INET6, block.data() + at + 16);
        at += 32;
    }
    h.src_port = load_u16(block, at);
    h.dst_port = load_u16(block, at + 2);
    at += 4;

    // Spec 2.2: TLVs fill the rest exactly; each 3-octet TLV header and its
    // value must lie inside the announced length.
    std::size_t crc_at = 0;  // offset of the PP2_TYPE_CRC32C value, if any
    while (at < block.size()) {
        if (block.size() - at < 3) return unexpected(ProxyError::v2_bad_tlv);
        const auto type = static_cast<std::uint8_t>(block[at]);
        const std::size_t len = load_u16(block, at + 1);
        if (len > block.size() - at - 3) return unexpected(ProxyError::v2_bad_tlv);
        const std::size_t value_at = at + 3;
        at = value_at + len;
        if (type == kTlvNoop) continue;  // 2.2.4: "should be ignored"
        if (type == kTlvUniqueId && len > kMaxUniqueId) return unexpected(ProxyError::v2_bad_tlv);
        if (type == kTlvCrc32c) {
            // One 32-bit checksum per header: a second has no meaning.
            if (len != 4 || crc_at != 0) return unexpected(ProxyError::v2_bad_tlv);
            crc_at = value_at;
        }
        h.tlvs.push_back(Tlv{type, std::string(block.substr(value_at, len))});
    }
    // 2.2.3: the CRC32C of the whole header computed with its own field
    // zeroed; a receiver that supports it MUST reject a mismatch. Checked
    // once the structure is known good, so a malformed TLV reports as such.
    if (crc_at != 0) {
        std::string zeroed(block);
        std::fill_n(zeroed.begin() + static_cast<std::ptrdiff_t>(crc_at), 4, '\0');
        if (crc32c(zeroed) != load_u32(block, crc_at))
            return unexpected(ProxyError::v2_bad_checksum);
    }
    return h;
}

}  // namespace

std::string_view to_string(ProxyError e) {
    switch (e) {
        case ProxyError::not_proxy:
            return "not a PROXY protocol header";
        case ProxyError::version_not_allowed:
            return "PROXY protocol version not allowed on this listener";
        case ProxyError::v1_too_long:
            return "PROXY v1 line longer than 107 octets";
        case ProxyError::v1_bad_line_ending:
            return "PROXY v1 line with bare CR or LF";
        case ProxyError::v1_bad_character:
            return "PROXY v1 line with non-printable octet";
        case ProxyError::v1_bad_syntax:
            return "PROXY v1 line malformed";
        case ProxyError::v1_bad_protocol:
            return "PROXY v1 protocol not TCP4, TCP6 or UNKNOWN";
        case ProxyError::v1_bad_address:
            return "PROXY v1 address not canonical for its family";
        case ProxyError::v1_bad_port:
            return "PROXY v1 port invalid";
        case ProxyError::v2_bad_version:
            return "PROXY v2 version not 2";
        case ProxyError::v2_bad_command:
            return "PROXY v2 command not LOCAL or PROXY";
        case ProxyError::v2_bad_family:
            return "PROXY v2 family or transport undefined";
        case ProxyError::v2_unsupported_family:
            return "PROXY v2 family not TCP over IPv4 or IPv6";
        case ProxyError::v2_too_long:
            return "PROXY v2 header longer than allowed";
        case ProxyError::v2_bad_length:
            return "PROXY v2 length shorter than the address block";
        case ProxyError::v2_bad_tlv:
            return "PROXY v2 TLV malformed or out of bounds";
        case ProxyError::v2_bad_checksum:
            return "PROXY v2 CRC32C mismatch";
        case ProxyError::finished:
            return "PROXY header already parsed";
    }
    return "bad PROXY header";
}

std::string_view to_string(Family f) {
    switch (f) {
        case Family::unspec:
            return "unknown";
        case Family::tcp4:
            return "tcp4";
        case Family::tcp6:
            return "tcp6";
    }
    return "unknown";
}

ProxyParser::ProxyParser(Versions allowed, std::size_t max_v2_payload)
    : allowed_(allowed),
      max_v2_payload_(std::clamp(max_v2_payload, kMinV2Payload, kMaxV2Payload)) {}

ProxyEvent ProxyParser::fail(std::size_t consumed, ProxyError e) {
    state_ = State::finished;
    buf_.clear();
    buf_.shrink_to_fit();
    ProxyEvent ev;
    ev.kind = ProxyEvent::Kind::error;
    ev.consumed = consumed;
    ev.error = e;
    return ev;
}

ProxyEvent ProxyParser::succeed(std::size_t consumed, ProxyHeader header) {
    state_ = State::finished;
    buf_.clear();
    buf_.shrink_to_fit();
    ProxyEvent ev;
    ev.kind = ProxyEvent::Kind::done;
    ev.consumed = consumed;
    ev.header = std::move(header);
    return ev;
}

std::optional<ProxyError> ProxyParser::step(unsigned char c) {
    buf_.push_back(static_cast<char>(c));
    const std::size_t n = buf_.size();
    switch (state_) {
        case State::signature: {
            // Spec 2.2 "Identifying the protocol version": the 12-octet v2
            // signature, else "PROXY" for v1, else "the connection must be
            // dropped". The first octet already tells them apart.
            const auto first = static_cast<unsigned char>(buf_[0]);
            if (first == kV1Signature[0]) {
                if (c != static_cast<unsigned char>(kV1Signature[n - 1])) {
                    return ProxyError::not_proxy;
                }
                if (n == kV1Signature.size()) {
                    if (!allows(allowed_, Versions::v1)) {
                        return ProxyError::version_not_allowed;
                    }
                    state_ = State::v1_line;
                }
                return std::nullopt;
            }
            if (first == kV2Signature[0]) {
                if (c != kV2Signature[n - 1]) {
                    return ProxyError::not_proxy;
                }
                if (n == kV2Signature.size()) {
                    if (!allows(allowed_, Versions::v2)) {
                        return ProxyError::version_not_allowed;
                    }
                    state_ = State::v2_fixed;
                }
                return std::nullopt;
            }
            return ProxyError::not_proxy;
        }
        case State::v1_line: {
            // Spec 2.1: "The receiver must not tolerate a single CR or LF
            // character to end the line".
            if (buf_[n - 2] == '\r') {
                if (c != '\n') {
                    return ProxyError::v1_bad_line_ending;
                }
                return std::nullopt;  // complete: feed() decodes it
            }
            if (c == '\n') {
                return ProxyError::v1_bad_line_ending;
            }
            // "one line of US-ASCII text": printable octets only.
            if (c != '\r' && (c < 0x20 || c > 0x7e)) {
                return ProxyError::v1_bad_character;
            }
            // "If the CRLF sequence is not found in the first 107
            // characters, the receiver should declare the line invalid."
            if (n >= kV1MaxLine) {
                return ProxyError::v1_too_long;
            }
            return std::nullopt;
        }
        case State::v2_fixed: {
            if (n == 13) {
                // "The highest four bits contains the version ... the receiver
                // must only accept this value [2]"; commands other than LOCAL
                // and PROXY: "Receivers must drop connections".
                if ((c >> 4) != 0x2) {
                    return ProxyError::v2_bad_version;
                }
                if ((c & 0xF) != kCmdLocal && (c & 0xF) != kCmdProxy) {
                    return ProxyError::v2_bad_command;
                }
            } else if (n == 14) {
                const unsigned fam = c >> 4, transport = c & 0xF;
                // "other values are unspecified ... must be rejected as
                // invalid by receivers".
                if (fam > kAfUnix || transport > kTransportDgram) {
                    return ProxyError::v2_bad_family;
                }
                // LOCAL: the family "is ignored". PROXY: relaygate serves TCP
                // only. UNSPEC, AF_UNIX and DGRAM are valid combinations the
                // spec lets a receiver reject instead of using the real
                // endpoints; here the real endpoint is the load balancer, whose
                // address must never stand in for the client's.
                const bool proxy = (static_cast<unsigned char>(buf_[12]) & 0xF) == kCmdProxy;
                if (proxy &&
                    ((fam != kAfInet && fam != kAfInet6) || transport != kTransportStream)) {
                    return ProxyError::v2_unsupported_family;
                }
            } else if (n == kV2FixedSize) {
                // "the length of the protocol header in bytes is always exactly
                // 16 + this value". LOCAL may carry any block (it is skipped);
                // PROXY needs at least its family's address block.
                const std::size_t len = load_u16(buf_, 14);
                if (len > max_v2_payload_) {
                    return ProxyError::v2_too_long;
                }
                const bool proxy = (static_cast<unsigned char>(buf_[12]) & 0xF) == kCmdProxy;
                const unsigned fam = static_cast<unsigned char>(buf_[13]) >> 4;
                if (proxy && len < (fam == kAfInet ? kInetBlock : kInet6Block)) {
                    return ProxyError::v2_bad_length;
                }
                v2_total_ = kV2FixedSize + len;
                state_ = State::v2_block;
            }
            return std::nullopt;
        }
        case State::v2_block:
        case State::finished:
            break;
    }
    return std::nullopt;
}

ProxyEvent ProxyParser::feed(std::string_view input) {
    if (state_ == State::finished) {
        ProxyEvent ev;
        ev.kind = ProxyEvent::Kind::error;
        ev.error = ProxyError::finished;
        return ev;
    }
    std::size_t i = 0;
    while (i < input.size() || (state_ == State::v2_block && buf_.size() == v2_total_)) {
        if (state_ == State::v2_block) {
            // The length is known: take exactly the rest of the header and not
            // one octet more (spec 2.2: the receiver "knows in advance").
            const std::size_t take = std::min(v2_total_ - buf_.size(), input.size() - i);
            buf_.append(input.substr(i, take));
            i += take;
            if (buf_.size() < v2_total_) break;
            const bool proxy = (static_cast<unsigned char>(buf_[12]) & 0xF) == kCmdProxy;
            ProxyHeader local;
            local.version = 2;
            // LOCAL: "discard the protocol block including the family".
            auto header = proxy ? parse_v2_proxy(buf_) : HeaderResult(std::move(local));
            if (!header) return fail(i, header.error());
            return succeed(i, std::move(header).value());
        }
        if (const auto err = step(static_cast<unsigned char>(input[i++]))) return fail(i, *err);
        if (state_ == State::v1_line && buf_.size() >= 2 && buf_.back() == '\n') {
            auto header = parse_v1(std::string_view(buf_).substr(0, buf_.size() - 2));
            if (!header) return fail(i, header.error());
            return succeed(i, std::move(header).value());
        }
    }
    ProxyEvent ev;
    ev.consumed = input.size();
    return ev;
}

std::uint32_t crc32c(std::string_view data) {
    // Reflected Castagnoli polynomial 0x1EDC6F41 (RFC 4960 appendix B).
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t crc = 0xFFFFFFFFu;
    for (char ch : data)
        crc = table[(crc ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

}  // namespace relaygate::proxy
