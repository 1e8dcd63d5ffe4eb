// DNS query building and response checking (RFC 1035), sans-I/O: bytes in,
// facts out. Owns the wire format only: it never opens a socket, never reads
// a clock and never decides policy; the resolver (gateway/server) sends the
// bytes and the cache (cache.hpp) keeps the answers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"

namespace relaygate::dns {

enum class RrType : std::uint16_t { a = 1, cname = 5, ptr = 12, txt = 16, aaaa = 28 };
// "A", "CNAME", "PTR", "TXT", "AAAA" (also the metric label).
std::string_view to_string(RrType);
// Case-insensitive.
std::optional<RrType> rr_type_from_string(std::string_view);

enum class Status : std::uint8_t { ok, nxdomain, nodata, servfail, error, timeout };
// "ok", "nxdomain", "nodata", "servfail", "error", "timeout" (metric label).
std::string_view to_string(Status);

struct Query {
    std::string name;
    RrType type = RrType::txt;
    std::uint16_t id = 0;
};

struct Answer {
    Status status = Status::error;
    bool truncated = false;  // TC bit: retry over TCP
    // TXT: each record's character-strings concatenated, as raw bytes;
    // A/AAAA: textual address; PTR/CNAME: lower-case name without trailing dot.
    std::vector<std::string> records;
    // The final name after following CNAMEs (lower-case, no trailing dot); empty if none.
    std::string cname_target;
    // The chain ended in a name with no records of the type (NOERROR):
    // query cname_target again.
    bool follow = false;
    // Min TTL of the RRs used; negative answers: min(SOA TTL, SOA minimum)
    // (RFC 2308 5), or 0 without a SOA.
    std::uint32_t ttl = 0;
    std::string detail;  // for logs, e.g. "rcode REFUSED", "malformed"
};

// Longest CNAME chain followed, inside one answer and across queries.
inline constexpr int kMaxCnameHops = 8;
// EDNS0 UDP payload size advertised (DNS flag day 2020, RFC 9210 guidance).
inline constexpr std::uint16_t kEdnsUdpSize = 1232;

// The query for `q` with RD=1 and an EDNS0 OPT record. `q.name` is in
// presentation form, with or without the trailing dot, taken literally (no
// backslash escapes); invalid names (empty label, label > 63 or name > 255
// octets, bytes outside printable ASCII) are rejected. With `tcp` the
// message carries the 2-octet length prefix of RFC 1035 4.2.2.
Result<std::vector<std::uint8_t>, std::string> build_query(const Query& q, bool tcp = false);

// Checks and decodes a response to `q` (without a TCP length prefix). Never
// throws, never crashes on any bytes. An error means "not the answer to this
// query" (malformed, or id, QR, opcode or question mismatch): the caller
// ignores that datagram and keeps waiting. Otherwise the rcode maps to
// Answer::status (NOERROR with records -> ok, without -> nodata, or follow
// when a CNAME chain ended without records; NXDOMAIN -> nxdomain; SERVFAIL ->
// servfail; anything else -> error), following CNAMEs inside the answer.
Result<Answer, std::string> parse_response(std::span<const std::uint8_t> wire, const Query& q);

// Lower-case ASCII, without the trailing dot.
std::string normalize_name(std::string_view name);

}  // namespace relaygate::dns
