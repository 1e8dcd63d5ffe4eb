// Tests for gateway/proxy/proxy_protocol: golden v1 and v2 headers (the spec's
// examples, bytes captured from swaks and HAProxy 2.6, binaries built here),
// every rejection rule, and every split point; the bytes after the header
// must always be left to the caller.
#include "gateway/proxy/proxy_protocol.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "tests/smtp/split_feed.hpp"

using namespace relaygate::proxy;
using relaygate::test::all_splits;

namespace {

std::string_view name(ProxyError e) {
    switch (e) {
        case ProxyError::not_proxy:
            return "not_proxy";
        case ProxyError::version_not_allowed:
            return "version_not_allowed";
        case ProxyError::v1_too_long:
            return "v1_too_long";
        case ProxyError::v1_bad_line_ending:
            return "v1_bad_line_ending";
        case ProxyError::v1_bad_character:
            return "v1_bad_character";
        case ProxyError::v1_bad_syntax:
            return "v1_bad_syntax";
        case ProxyError::v1_bad_protocol:
            return "v1_bad_protocol";
        case ProxyError::v1_bad_address:
            return "v1_bad_address";
        case ProxyError::v1_bad_port:
            return "v1_bad_port";
        case ProxyError::v2_bad_version:
            return "v2_bad_version";
        case ProxyError::v2_bad_command:
            return "v2_bad_command";
        case ProxyError::v2_bad_family:
            return "v2_bad_family";
        case ProxyError::v2_unsupported_family:
            return "v2_unsupported_family";
        case ProxyError::v2_too_long:
            return "v2_too_long";
        case ProxyError::v2_bad_length:
            return "v2_bad_length";
        case ProxyError::v2_bad_tlv:
            return "v2_bad_tlv";
        case ProxyError::v2_bad_checksum:
            return "v2_bad_checksum";
        case ProxyError::finished:
            return "finished";
    }
    return "?";
}

// One line per outcome, so a mismatch prints readably:
//   "need_more", "error <name> at=<n>",
//   "done v<n> local at=<n>" or
//   "done v<n> tcp4 <src> <sport> <dst> <dport> [tlv=<type>/<len>,...] at=<n>"
// where at= is the total of `consumed` over all calls.
struct Outcome {
    std::string summary;
    ProxyHeader header;
    std::string rest;  // the input the parser left to the caller
};

std::string hex2(unsigned v) {
    static constexpr char digits[] = "0123456789abcdef";
    return {digits[(v >> 4) & 0xF], digits[v & 0xF]};
}

Outcome run(ProxyParser& p, std::vector<std::string> pieces) {
    Outcome out;
    std::size_t total = 0;
    bool terminal = false;
    for (auto& piece : pieces) {
        std::string_view rest = piece;
        if (terminal) {
            out.rest += piece;
            continue;
        }
        ProxyEvent ev = p.feed(rest);
        REQUIRE(ev.consumed <= rest.size());
        total += ev.consumed;
        rest.remove_prefix(ev.consumed);
        if (ev.kind == ProxyEvent::Kind::need_more) {
            REQUIRE(rest.empty());
        } else {
            terminal = true;
            out.rest = std::string(rest);
            if (ev.kind == ProxyEvent::Kind::error) {
                out.summary = "error " + std::string(name(ev.error));
            } else {
                const ProxyHeader& h = ev.header;
                out.header = h;
                out.summary = "done v" + std::to_string(h.version);
                if (h.local) {
                    out.summary += " local";
                    CHECK(h.family == Family::unspec);
                    CHECK(h.src_addr.empty());
                    CHECK(h.dst_addr.empty());
                    CHECK_FALSE(h.usable_for_identity());
                } else {
                    out.summary += " " + std::string(to_string(h.family)) + " " + h.src_addr + " " +
                                   std::to_string(h.src_port) + " " + h.dst_addr + " " +
                                   std::to_string(h.dst_port);
                    CHECK(h.usable_for_identity());
                }
                for (std::size_t i = 0; i < h.tlvs.size(); ++i)
                    out.summary += (i ? "," : " tlv=") + hex2(h.tlvs[i].type) + "/" +
                                   std::to_string(h.tlvs[i].value.size());
            }
            out.summary += " at=" + std::to_string(total);
            // The parser is spent: it takes nothing more.
            ProxyEvent again = p.feed("EHLO x\r\n");
            CHECK(again.kind == ProxyEvent::Kind::error);
            CHECK(again.error == ProxyError::finished);
            CHECK(again.consumed == 0);
        }
        piece.assign(piece.size(), '#');  // a kept view into this piece would show garbage
    }
    if (!terminal) out.summary = "need_more";
    return out;
}

Outcome run_whole(std::string_view in, Versions v = Versions::both,
                  std::size_t max_v2 = kDefaultMaxV2Payload) {
    ProxyParser p(v, max_v2);
    return run(p, {std::string(in)});
}

// --- v2 builders --------------------------------------------------------

std::string sig() {
    return std::string(kV2Signature.begin(), kV2Signature.end());
}

std::string be16(unsigned v) {
    return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

std::string bytes(std::initializer_list<unsigned> b) {
    std::string s;
    for (unsigned x : b)
        s.push_back(static_cast<char>(x));
    return s;
}

// A v2 header: signature, ver_cmd, fam, length (of `body` unless given).
std::string v2(unsigned ver_cmd, unsigned fam, const std::string& body, int len = -1) {
    return sig() + bytes({ver_cmd, fam}) + be16(len < 0 ? unsigned(body.size()) : unsigned(len)) +
           body;
}

std::string tlv(unsigned type, const std::string& value) {
    return bytes({type}) + be16(unsigned(value.size())) + value;
}

// 192.0.2.10:40000 -> 198.51.100.2:25 (RFC 5737 documentation addresses).
const std::string kInet = bytes({192, 0, 2, 10, 198, 51, 100, 2}) + be16(40000) + be16(25);
// 2001:db8::10:40000 -> 2001:db8::2:25 (RFC 3849).
const std::string kInet6 = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                                  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02}) +
                           be16(40000) + be16(25);

// A PROXY TCP4 header with a PP2_TYPE_CRC32C TLV last, checksum filled in
// (spec 2.2.3), optionally off by one.
std::string v2_with_crc(const std::string& tlvs_before, bool corrupt = false) {
    std::string h = v2(0x21, 0x11, kInet + tlvs_before + tlv(kTlvCrc32c, std::string(4, '\0')));
    std::uint32_t crc = crc32c(h) + (corrupt ? 1 : 0);
    for (int i = 0; i < 4; ++i)
        h[h.size() - 4 + i] = static_cast<char>((crc >> (24 - 8 * i)) & 0xFF);
    return h;
}

std::string unhex(std::string_view h) {
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

// Captured on loopback: HAProxy 2.6 `server ... send-proxy-v2 proxy-v2-options
// crc32c,unique-id` (unique-id-format relaygate-%[uuid]), then the client's
// first bytes "EHLO x\r\n".
const std::string kHaproxyV2Tcp4 = unhex(
                                       "0d0a0d0a000d0a515549540a21110044"
                                       "7f0000017f000001bc566510"
                                       "030004"
                                       "4e7753b1"
                                       "05002e") +
                                   "relaygate-ed8a69ad-7131-4302-a0a5-ef83547a725d" + "EHLO x\r\n";
const std::string kHaproxyV2Tcp6 = unhex(
                                       "0d0a0d0a000d0a515549540a2121005c"
                                       "00000000000000000000000000000001"
                                       "00000000000000000000000000000001"
                                       "9e806512"
                                       "030004b447ef3b"
                                       "05002e") +
                                   "relaygate-ba03c563-06b2-4864-94d6-211f84550772" + "EHLO x\r\n";
// HAProxy's `check send-proxy-v2 check-send-proxy` health check: LOCAL, UNSPEC.
const std::string kHaproxyLocal = unhex("0d0a0d0a000d0a515549540a20000000");

struct Golden {
    std::string name;
    std::string in;
    std::string expect;  // run() summary
    Versions allowed = Versions::both;
};

// 39-character IPv6 address (spec 2.1's "ffff:f...f:ffff").
const std::string kV6Max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

const std::vector<Golden>& goldens() {
    static const std::vector<Golden> g{
        // ---- v1: spec 2.1 examples and limits ----
        {"spec example before HTTP",
         "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
         "Host: 192.168.0.11\r\n\r\n",
         "done v1 tcp4 192.168.0.1 56324 192.168.0.11 443 at=47"},
        {"spec TCP4 maximum, 56 chars",
         "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
         "done v1 tcp4 255.255.255.255 65535 255.255.255.255 65535 at=56"},
        {"spec TCP6 maximum, 104 chars", "PROXY TCP6 " + kV6Max + " " + kV6Max + " 65535 65535\r\n",
         "done v1 tcp6 " + kV6Max + " 65535 " + kV6Max + " 65535 at=104"},
        {"spec UNKNOWN short form, 15 chars", "PROXY UNKNOWN\r\n", "done v1 local at=15"},
        {"spec worst case, 107 chars",
         "PROXY UNKNOWN " + kV6Max + " " + kV6Max + " 65535 65535\r\n", "done v1 local at=107"},
        {"108 chars: no CRLF in the first 107",
         "PROXY UNKNOWN " + kV6Max + " " + kV6Max + " 65535 655350\r\n",
         "error v1_too_long at=107"},
        {"UNKNOWN: the rest of the line is ignored", "PROXY UNKNOWN whatever  it  says\r\nEHLO",
         "done v1 local at=34"},
        {"UNKNOWN glued to junk", "PROXY UNKNOWNX\r\n", "error v1_bad_protocol at=16"},
        {"swaks --proxy-version 1", "PROXY TCP4 192.0.2.10 198.51.100.2 40000 25\r\n",
         "done v1 tcp4 192.0.2.10 40000 198.51.100.2 25 at=45"},
        {"HAProxy send-proxy, then SMTP",
         "PROXY TCP4 127.0.0.1 127.0.0.1 50274 25875\r\nEHLO x\r\n",
         "done v1 tcp4 127.0.0.1 50274 127.0.0.1 25875 at=44"},
        {"ports 0 and zero address", "PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
         "done v1 tcp4 0.0.0.0 0 10.0.0.1 0 at=33"},
        {"IPv6 upper case and zero groups become RFC 5952 text",
         "PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 1 2\r\n", "done v1 tcp6 2001:db8::1 1 ::1 2 at=41"},
        {"IPv6 with 4-digit groups with leading zeros (spec: sets of 4 hex digits)",
         "PROXY TCP6 2001:0db8::0001 fe80::1 443 25\r\n",
         "done v1 tcp6 2001:db8::1 443 fe80::1 25 at=43"},
        {"IPv4-compatible IPv6 stays in hex (inet_ntop would write ::0.15.0.15)",
         "PROXY TCP6 ::fff ::f:f 655 35\r\n", "done v1 tcp6 ::fff 655 ::f:f 35 at=31"},
        {"RFC 5952: the first of two equal zero runs is compressed, one zero group is not",
         "PROXY TCP6 1:0:0:2:0:0:3:4 1:0:2:3:4:5:6:7 1 2\r\n",
         "done v1 tcp6 1::2:0:0:3:4 1 1:0:2:3:4:5:6:7 2 at=48"},

        // ---- v1: signature and version selection ----
        {"empty input", "", "need_more"},
        {"partial signature", "PROX", "need_more"},
        {"partial line", "PROXY TCP4 1.2.3.4", "need_more"},
        {"SMTP client talking first", "EHLO x\r\n", "error not_proxy at=1"},
        {"TLS ClientHello", bytes({0x16, 0x03, 0x01, 0x02, 0x00}), "error not_proxy at=1"},
        {"lower-case proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "error not_proxy at=1"},
        {"PROXZ", "PROXZ TCP4", "error not_proxy at=5"},
        {"HTTP", "GET / HTTP/1.1\r\n", "error not_proxy at=1"},
        {"v1 on a v2-only listener", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
         "error version_not_allowed at=5", Versions::v2},
        {"v1 on a v1-only listener", "PROXY UNKNOWN\r\n", "done v1 local at=15", Versions::v1},

        // ---- v1: line ending and characters ----
        {"LF without CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nEHLO", "error v1_bad_line_ending at=31"},
        {"CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rEHLO", "error v1_bad_line_ending at=32"},
        {"CR CR LF", "PROXY UNKNOWN\r\r\n", "error v1_bad_line_ending at=15"},
        {"bare LF right after PROXY", "PROXY\n", "error v1_bad_line_ending at=6"},
        {"tab instead of space", "PROXY TCP4\t1.2.3.4", "error v1_bad_character at=11"},
        {"NUL in line", std::string("PROXY UNKNOWN \0\r\n", 17), "error v1_bad_character at=15"},
        {"8-bit octet in UNKNOWN tail", "PROXY UNKNOWN \xff\r\n", "error v1_bad_character at=15"},
        {"never ending line", "PROXY " + std::string(200, 'a'), "error v1_too_long at=107"},

        // ---- v1: spacing and fields ----
        {"nothing after PROXY", "PROXY\r\n", "error v1_bad_syntax at=7"},
        {"no protocol", "PROXY \r\n", "error v1_bad_syntax at=8"},
        {"no space after PROXY", "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_syntax at=31"},
        {"double space after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
         "error v1_bad_syntax at=33"},
        {"double space between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
         "error v1_bad_syntax at=33"},
        {"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "error v1_bad_syntax at=33"},
        {"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "error v1_bad_syntax at=30"},
        {"extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "error v1_bad_syntax at=34"},
        {"protocol only", "PROXY TCP4\r\n", "error v1_bad_syntax at=12"},
        {"unknown protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_protocol at=32"},
        {"lower-case protocol", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
         "error v1_bad_protocol at=32"},
        {"UDP4 is not v1", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_protocol at=32"},

        // ---- v1: addresses ----
        {"IPv4 leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_address at=33"},
        {"IPv4 leading zero 0", "PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n",
         "error v1_bad_address at=33"},
        {"IPv4 octet 256", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "error v1_bad_address at=34"},
        {"IPv4 three parts", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "error v1_bad_address at=30"},
        {"IPv4 five parts", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "error v1_bad_address at=34"},
        {"IPv4 empty part", "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "error v1_bad_address at=31"},
        {"IPv4 trailing dot", "PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "error v1_bad_address at=33"},
        {"IPv4 sign", "PROXY TCP4 +1.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_address at=33"},
        {"IPv4 hex", "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n", "error v1_bad_address at=34"},
        {"IPv4 destination bad", "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
         "error v1_bad_address at=33"},
        {"TCP4 with IPv6 addresses", "PROXY TCP4 ::1 ::1 1 2\r\n", "error v1_bad_address at=24"},
        {"TCP6 with IPv4 addresses", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
         "error v1_bad_address at=32"},
        {"TCP6 with dotted-quad tail", "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n",
         "error v1_bad_address at=35"},
        {"TCP6 two double colons", "PROXY TCP6 1::2::3 ::1 1 2\r\n", "error v1_bad_address at=28"},
        {"TCP6 five-digit group", "PROXY TCP6 12345::1 ::1 1 2\r\n", "error v1_bad_address at=29"},
        {"TCP6 not hex", "PROXY TCP6 g::1 ::1 1 2\r\n", "error v1_bad_address at=25"},
        {"TCP6 zone id", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "error v1_bad_address at=33"},
        {"TCP6 too few groups", "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
         "error v1_bad_address at=34"},

        // ---- v1: ports ----
        {"port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "error v1_bad_port at=33"},
        {"port 00", "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "error v1_bad_port at=33"},
        {"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "error v1_bad_port at=36"},
        {"port 655350", "PROXY TCP4 1.2.3.4 5.6.7.8 1 655350\r\n", "error v1_bad_port at=37"},
        {"negative port", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "error v1_bad_port at=33"},
        {"port with letter", "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n", "error v1_bad_port at=33"},

        // ---- v2: captured and built headers ----
        {"swaks --proxy-version 2 AF_INET", v2(0x21, 0x11, kInet),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 at=28"},
        {"swaks --proxy-version 2 AF_INET6", v2(0x21, 0x21, kInet6),
         "done v2 tcp6 2001:db8::10 40000 2001:db8::2 25 at=52"},
        {"HAProxy send-proxy-v2 crc32c,unique-id over IPv4", kHaproxyV2Tcp4,
         "done v2 tcp4 127.0.0.1 48214 127.0.0.1 25872 tlv=03/4,05/46 at=84"},
        {"HAProxy send-proxy-v2 crc32c,unique-id over IPv6", kHaproxyV2Tcp6,
         "done v2 tcp6 ::1 40576 ::1 25874 tlv=03/4,05/46 at=108"},
        {"HAProxy health check (LOCAL)", kHaproxyLocal + "EHLO", "done v2 local at=16"},
        {"v2 then SMTP bytes", v2(0x21, 0x11, kInet) + "EHLO x\r\n",
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 at=28"},
        {"v2 on a v1-only listener", v2(0x21, 0x11, kInet), "error version_not_allowed at=12",
         Versions::v1},
        {"v2 on a v2-only listener", v2(0x21, 0x11, kInet),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 at=28", Versions::v2},
        {"partial signature", sig().substr(0, 7), "need_more"},
        {"partial fixed header", sig() + bytes({0x21, 0x11, 0x00}), "need_more"},
        {"partial address block", v2(0x21, 0x11, kInet).substr(0, 27), "need_more"},
        {"signature off in its last octet", sig().substr(0, 11) + "X", "error not_proxy at=12"},
        {"CRLF then QUIT is not the signature", "\r\nQUIT\r\n", "error not_proxy at=3"},

        // ---- v2: version and command (13th octet) ----
        {"version 1", v2(0x11, 0x11, kInet), "error v2_bad_version at=13"},
        {"version 0", v2(0x01, 0x11, kInet), "error v2_bad_version at=13"},
        {"version 3", v2(0x31, 0x11, kInet), "error v2_bad_version at=13"},
        {"version f", v2(0xF1, 0x11, kInet), "error v2_bad_version at=13"},
        {"command 2", v2(0x22, 0x11, kInet), "error v2_bad_command at=13"},
        {"command f", v2(0x2F, 0x11, kInet), "error v2_bad_command at=13"},

        // ---- v2: family and transport (14th octet) ----
        {"family 4", v2(0x21, 0x41, kInet), "error v2_bad_family at=14"},
        {"transport 3", v2(0x21, 0x13, kInet), "error v2_bad_family at=14"},
        {"LOCAL with undefined family still rejected", v2(0x20, 0x51, ""),
         "error v2_bad_family at=14"},
        {"PROXY over UNSPEC", v2(0x21, 0x00, ""), "error v2_unsupported_family at=14"},
        {"PROXY over UDP4", v2(0x21, 0x12, kInet), "error v2_unsupported_family at=14"},
        {"PROXY over UDP6", v2(0x21, 0x22, kInet6), "error v2_unsupported_family at=14"},
        {"PROXY over UNIX stream", v2(0x21, 0x31, std::string(216, 'u')),
         "error v2_unsupported_family at=14"},
        {"PROXY over INET, UNSPEC transport", v2(0x21, 0x10, kInet),
         "error v2_unsupported_family at=14"},
        {"LOCAL carrying a TCP4 block: block ignored", v2(0x20, 0x11, kInet) + "EHLO",
         "done v2 local at=28"},
        {"LOCAL carrying a UNIX block: block ignored", v2(0x20, 0x31, std::string(216, 'u')),
         "done v2 local at=232"},
        {"LOCAL with TLV-looking junk: skipped, not parsed", v2(0x20, 0x00, "\x01\xff\xff"),
         "done v2 local at=19"},

        // ---- v2: length ----
        {"TCP4 length 11", v2(0x21, 0x11, kInet.substr(0, 11)), "error v2_bad_length at=16"},
        {"TCP4 length 0", v2(0x21, 0x11, ""), "error v2_bad_length at=16"},
        {"TCP6 length of a TCP4 block", v2(0x21, 0x21, kInet), "error v2_bad_length at=16"},
        {"TCP6 length 35", v2(0x21, 0x21, kInet6.substr(0, 35)), "error v2_bad_length at=16"},
        {"length 537 over the default bound", v2(0x21, 0x11, kInet, 537),
         "error v2_too_long at=16"},
        {"LOCAL length 65535", v2(0x20, 0x00, "", 65535), "error v2_too_long at=16"},
        {"length 536 at the bound",
         v2(0x21, 0x11, kInet + tlv(0xE0, std::string(536 - 12 - 3, 'x'))),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=e0/521 at=552"},
        {"length covering SMTP bytes (too long by 8)", v2(0x21, 0x11, kInet, 20) + "EHLO x\r\n",
         "error v2_bad_tlv at=36"},

        // ---- v2: TLVs ----
        {"TLV filling the block exactly", v2(0x21, 0x11, kInet + tlv(0x02, "mx.example")),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=02/10 at=41"},
        {"empty TLV value", v2(0x21, 0x11, kInet + tlv(0xEA, "")),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=ea/0 at=31"},
        {"NOOP TLVs are dropped",
         v2(0x21, 0x11, kInet + tlv(kTlvNoop, "pad") + tlv(0x01, "smtp") + tlv(kTlvNoop, "")),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=01/4 at=44"},
        {"TLV value one past the end", v2(0x21, 0x11, kInet + tlv(0x02, "mx.example"), 12 + 12),
         "error v2_bad_tlv at=40"},
        {"TLV length 0xffff", v2(0x21, 0x11, kInet + bytes({0x02, 0xFF, 0xFF}) + "abc"),
         "error v2_bad_tlv at=34"},
        {"TLV header cut after 1 octet", v2(0x21, 0x11, kInet + bytes({0x02})),
         "error v2_bad_tlv at=29"},
        {"TLV header cut after 2 octets", v2(0x21, 0x11, kInet + bytes({0x02, 0x00})),
         "error v2_bad_tlv at=30"},
        {"second TLV truncated",
         v2(0x21, 0x11, kInet + tlv(0x01, "smtp") + bytes({0x02, 0x00, 0x05}) + "ab"),
         "error v2_bad_tlv at=40"},
        {"unique id of 128 octets",
         v2(0x21, 0x11, kInet + tlv(kTlvUniqueId, std::string(128, 'u'))),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=05/128 at=159"},
        {"unique id of 129 octets",
         v2(0x21, 0x11, kInet + tlv(kTlvUniqueId, std::string(129, 'u'))),
         "error v2_bad_tlv at=160"},
        {"CRC32C correct", v2_with_crc(tlv(0x01, "smtp")),
         "done v2 tcp4 192.0.2.10 40000 198.51.100.2 25 tlv=01/4,03/4 at=42"},
        {"CRC32C wrong", v2_with_crc(tlv(0x01, "smtp"), true), "error v2_bad_checksum at=42"},
        {"CRC32C of 3 octets", v2(0x21, 0x11, kInet + tlv(kTlvCrc32c, "abc")),
         "error v2_bad_tlv at=34"},
        {"two CRC32C TLVs",
         v2(0x21, 0x11, kInet + tlv(kTlvCrc32c, "abcd") + tlv(kTlvCrc32c, "abcd")),
         "error v2_bad_tlv at=42"},
        {"HAProxy header with a flipped address bit",
         [] {
             std::string h = kHaproxyV2Tcp4;
             h[19] ^= 0x01;
             return h;
         }(),
         "error v2_bad_checksum at=84"},
    };
    return g;
}

}  // namespace

TEST_CASE("golden inputs give the expected outcome, at every split") {
    for (const auto& g : goldens()) {
        CAPTURE(g.name);
        const Outcome whole = run_whole(g.in, g.allowed);
        CHECK(whole.summary == g.expect);
        // Whatever the parser did not take is exactly the input after the
        // header (or after the octet that showed the error).
        const auto at_pos = whole.summary.rfind(" at=");
        if (at_pos != std::string::npos) {
            const std::size_t at = std::stoul(whole.summary.substr(at_pos + 4));
            CHECK(whole.rest == g.in.substr(at));
        }
        for (auto& s : all_splits(g.in)) {
            CAPTURE(s.name);
            ProxyParser p(g.allowed);
            const Outcome o = run(p, s.pieces);
            CHECK(o.summary == whole.summary);
            CHECK(o.rest == whole.rest);
            CHECK(o.header == whole.header);
        }
    }
}

TEST_CASE("header contents: addresses, ports, TLV values") {
    auto o = run_whole("PROXY TCP6 2001:db8::10 2001:db8::2 40000 25\r\n");
    CHECK(o.header.version == 1);
    CHECK_FALSE(o.header.local);
    CHECK(o.header.family == Family::tcp6);
    CHECK(o.header.src_addr == "2001:db8::10");
    CHECK(o.header.dst_addr == "2001:db8::2");
    CHECK(o.header.src_port == 40000);
    CHECK(o.header.dst_port == 25);
    CHECK(o.header.tlvs.empty());
    CHECK(o.header.usable_for_identity());

    o = run_whole(kHaproxyV2Tcp4);
    CHECK(o.rest == "EHLO x\r\n");
    REQUIRE(o.header.tlvs.size() == 2);
    CHECK(o.header.tlvs[0] == Tlv{kTlvCrc32c, unhex("4e7753b1")});
    CHECK(o.header.tlvs[1] == Tlv{kTlvUniqueId, "relaygate-ed8a69ad-7131-4302-a0a5-ef83547a725d"});

    // Octets of every value 0-255 survive in a TLV value.
    std::string all;
    for (int i = 0; i < 256; ++i)
        all.push_back(static_cast<char>(i));
    o = run_whole(v2(0x21, 0x11, kInet + tlv(0xE1, all)));
    REQUIRE(o.header.tlvs.size() == 1);
    CHECK(o.header.tlvs[0].value == all);
}

TEST_CASE("UNKNOWN and LOCAL are never usable for identity") {
    for (const std::string& in : {std::string("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"),
                                  kHaproxyLocal, v2(0x20, 0x11, kInet)}) {
        const auto o = run_whole(in);
        CAPTURE(o.summary);
        CHECK(o.header.local);
        CHECK(o.header.family == Family::unspec);
        CHECK(o.header.src_addr.empty());
        CHECK_FALSE(o.header.usable_for_identity());
    }
    ProxyHeader h;  // a default header claims nothing either
    CHECK_FALSE(h.usable_for_identity());
}

TEST_CASE("the v2 length bound is configurable within [36, 65535]") {
    const std::string big = v2(0x21, 0x21, kInet6 + tlv(0xE0, std::string(65535 - 36 - 3, 'z')));
    CHECK(run_whole(big).summary == "error v2_too_long at=16");
    const auto o = run_whole(big + "QUIT", Versions::v2, kMaxV2Payload);
    CHECK(o.summary == "done v2 tcp6 2001:db8::10 40000 2001:db8::2 25 tlv=e0/65496 at=" +
                           std::to_string(16 + 65535));
    CHECK(o.rest == "QUIT");
    // One octet at a time too.
    ProxyParser bytewise(Versions::v2, kMaxV2Payload);
    for (std::size_t i = 0; i + 1 < big.size(); ++i)
        REQUIRE(bytewise.feed(std::string_view(big).substr(i, 1)).kind ==
                ProxyEvent::Kind::need_more);
    CHECK(bytewise.feed(big.substr(big.size() - 1) + "QUIT").consumed == 1);

    CHECK(ProxyParser(Versions::both, 0).max_v2_payload() == kMinV2Payload);
    CHECK(ProxyParser(Versions::both, 1 << 20).max_v2_payload() == kMaxV2Payload);
    CHECK(ProxyParser(Versions::both).max_v2_payload() == kDefaultMaxV2Payload);
    // At the minimum bound a TCP6 block with no TLVs still fits.
    CHECK(run_whole(v2(0x21, 0x21, kInet6), Versions::both, 0).summary ==
          "done v2 tcp6 2001:db8::10 40000 2001:db8::2 25 at=52");
    CHECK(run_whole(v2(0x21, 0x21, kInet6 + tlv(1, "")), Versions::both, 0).summary ==
          "error v2_too_long at=16");
}

TEST_CASE("consumed never goes past the header, in one call or many") {
    const std::string header = "PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n";
    ProxyParser p(Versions::v1);
    const std::string in = header + "EHLO a\r\nMAIL FROM:<>\r\n";
    const auto ev = p.feed(in);
    REQUIRE(ev.kind == ProxyEvent::Kind::done);
    CHECK(ev.consumed == header.size());
    CHECK(in.substr(ev.consumed) == "EHLO a\r\nMAIL FROM:<>\r\n");

    // Header split, SMTP pipelined in the same segment as the header's end.
    ProxyParser q(Versions::v2);
    const std::string h2 = v2(0x21, 0x11, kInet);
    CHECK(q.feed(h2.substr(0, 20)).consumed == 20);
    const std::string tail = h2.substr(20) + "EHLO";
    const auto ev2 = q.feed(tail);
    REQUIRE(ev2.kind == ProxyEvent::Kind::done);
    CHECK(ev2.consumed == h2.size() - 20);
}

TEST_CASE("memory stays bounded when a peer never finishes the line") {
    ProxyParser p(Versions::both);
    const auto ev = p.feed("PROXY " + std::string(1 << 20, 'a'));
    CHECK(ev.kind == ProxyEvent::Kind::error);
    CHECK(ev.error == ProxyError::v1_too_long);
    CHECK(ev.consumed == kV1MaxLine);
}

TEST_CASE("CRC-32C matches the RFC 3720 B.4 check value") {
    CHECK(crc32c("123456789") == 0xE3069283u);
    CHECK(crc32c("") == 0u);
    CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);  // RFC 3720 B.4: 32 zero octets
}

TEST_CASE("every error and family has a distinct description") {
    std::vector<std::string> seen;
    for (int i = 0; i <= static_cast<int>(ProxyError::finished); ++i) {
        const auto s = std::string(to_string(static_cast<ProxyError>(i)));
        CHECK_FALSE(s.empty());
        for (const auto& t : seen)
            CHECK(s != t);
        seen.push_back(s);
    }
    CHECK(to_string(Family::unspec) == "unknown");
    CHECK(to_string(Family::tcp4) == "tcp4");
    CHECK(to_string(Family::tcp6) == "tcp6");
}
