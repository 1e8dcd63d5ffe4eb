// The DKIM-Signature header field value (RFC 6376 3.5) and the tag-list syntax
// it shares with key records (RFC 6376 3.2). Strict and pure: untrusted bytes
// in, a Signature or an error string out; no I/O, no exceptions, no clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"

namespace relaygate::dkim {

enum class Algorithm : std::uint8_t { rsa_sha256, ed25519_sha256 };
enum class Canon : std::uint8_t { simple, relaxed };

std::string_view to_string(Algorithm);  // "rsa-sha256", "ed25519-sha256"
std::string_view to_string(Canon);      // "simple", "relaxed"

struct Signature {
    Algorithm algorithm;
    Canon header_canon = Canon::simple, body_canon = Canon::simple;
    std::string domain;    // d=, lower-case, LDH labels only (A-labels), no trailing dot
    std::string selector;  // s=, lower-case, LDH labels (dots allowed between labels)
    std::vector<std::string> signed_headers;  // h=, lower-case field names, must include "from"
    std::string body_hash;                    // bh=, decoded bytes
    std::string signature;                    // b=, decoded bytes
    std::optional<std::uint64_t> length;      // l=
    std::optional<std::uint64_t> timestamp;   // t=
    std::optional<std::uint64_t> expiration;  // x= (must be > t= when both present)
    std::string identity;  // i= (if present its domain must be d= or a subdomain)
};

// One tag-spec of a tag-list: the name as written (tag names are
// case-sensitive) and the value unfolded, with surrounding WSP removed.
struct Tag {
    std::string name;
    std::string value;
};

// RFC 6376 3.2 tag-list: tag-spec *(";" tag-spec) [";"]. Folding (CRLF WSP) is
// allowed wherever FWS is; duplicate names, NUL, 8-bit, bare CR/LF and
// characters outside VALCHAR are errors. Tags are returned in order.
Result<std::vector<Tag>, std::string> parse_tag_list(std::string_view text);

// `value`: the raw field value (everything after the colon, may contain folding CRLF WSP).
// Strict (RFC 6376 3.2, 3.5): tag-list syntax, v=1 required, duplicate tags (also names that
// differ only in case, d= and D=), unknown algorithms, missing required tags (v,a,b,bh,d,h,s),
// non-LDH d=/s=, NUL or 8-bit bytes, bad base64, q= other than dns/txt -> error string.
Result<Signature, std::string> parse_signature(std::string_view value);

// The part of parse_signature() that decides whether two programs could read
// the field differently: tag-list syntax, duplicate tags (also by case),
// non-LDH d=/s=. An unsupported algorithm or a missing tag is not ambiguous
// (every verifier fails it alike), so it passes here. nullopt = unambiguous.
std::optional<std::string> signature_ambiguity(std::string_view value);

std::string key_query_name(const Signature& s);  // "<s>._domainkey.<d>"

// True if `name` is one or more dot-separated LDH labels (RFC 5890 2.3.1:
// letters, digits, hyphen, not at either end of a label; 1-63 octets each,
// 253 in all), lower-case, with no trailing dot.
bool is_lower_ldh_name(std::string_view name);

}  // namespace relaygate::dkim
