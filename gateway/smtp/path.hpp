// Reverse-path and forward-path parsing (RFC 5321 4.1.2, RFC 6531 3.3).
// Owns the envelope address syntax and its limits; domains are normalized by
// relaygate::normalize_domain only. Pure: no I/O, no policy, no repair of
// anything ambiguous (it is rejected with a typed error instead).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/common/result.hpp"

namespace relaygate::smtp {

// RFC 5321 4.5.3.1.1-4.5.3.1.3 (the path limit includes the angle brackets).
inline constexpr std::size_t kMaxLocalPart = 64;
inline constexpr std::size_t kMaxDomain = 255;
inline constexpr std::size_t kMaxPath = 256;

enum class PathError : std::uint8_t {
    syntax,               // anything else that is not RFC 5321 path syntax
    missing_brackets,     // no "<...>", or unbalanced / extra angle brackets
    null_not_allowed,     // "<>" where a forward-path is required
    source_route,         // "<@a,@b:u@c>" (RFC 5321 4.1.2 obsolete route)
    quoted_at,            // quoted local-part containing "@"
    local_part_too_long,  // over 64 octets
    domain_too_long,      // over 255 octets
    path_too_long,        // over 256 octets including "<" and ">"
    bad_local_part,       // not a dot-string or quoted-string
    bad_domain,           // normalize_domain() refused the domain
    bad_address_literal,  // malformed [IPv4] or [IPv6:...], or a general literal
    control_character,    // NUL or another control character
    whitespace,           // SP or HTAB outside a quoted-string
    comment,              // "(" or ")" outside a quoted-string (RFC 5322 CFWS)
    utf8_not_allowed,     // non-ASCII without SMTPUTF8
    invalid_utf8,         // non-ASCII that is not well-formed UTF-8
};

std::string_view to_string(PathError e);

enum class LiteralKind : std::uint8_t { none, ipv4, ipv6 };

struct Path {
    bool null = false;        // "<>" (reverse-path only)
    bool postmaster = false;  // "<Postmaster>" without a domain (forward-path only)
    // The local-part exactly as sent (a quoted-string keeps its quotes and
    // backslashes); empty for null paths.
    std::string local_part;
    bool quoted_local_part = false;
    // Lower-case A-labels from normalize_domain(); for an address literal,
    // "[1.2.3.4]" or "[IPv6:...]" with lower-case hex (not otherwise rewritten).
    std::string domain;
    bool address_literal = false;
    LiteralKind literal_kind = LiteralKind::none;

    // local-part "@" domain as it should be re-emitted upstream.
    std::string mailbox() const;
    void append_mailbox(std::string& out) const;  // the same, appended
};

// `text` is the whole path, "<...>" included, nothing before or after it.
// `smtputf8`: the transaction carries SMTPUTF8 (RFC 6531 3.4), so the
// local-part may hold UTF-8 and the domain U-labels.
Result<Path, PathError> parse_reverse_path(std::string_view text, bool smtputf8);
Result<Path, PathError> parse_forward_path(std::string_view text, bool smtputf8);

struct AddressLiteral {
    LiteralKind kind = LiteralKind::none;
    std::string text;  // "[1.2.3.4]" or "[IPv6:...]" with lower-case hex
};

// RFC 5321 4.1.3 address literal, brackets included. Used for paths and for
// the EHLO argument. General-address-literals (unregistered tags) are refused.
Result<AddressLiteral, PathError> parse_address_literal(std::string_view text);

// The length of the path token at the start of `s` ("<" up to the matching
// ">" outside any quoted-string), or 0 if `s` does not start with one.
// Lets the command parser split "<\"a b\"@x> SIZE=1" correctly.
std::size_t path_token_length(std::string_view s);

}  // namespace relaygate::smtp
