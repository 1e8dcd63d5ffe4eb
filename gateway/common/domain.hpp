// Domain name validation and normalization to lower-case A-labels.
// One function decides what a domain is for the protocol core, the header
// reader and the policy engine, so that all three compare the same strings.
// Pure: no I/O, no global state besides libidn2's tables.
#pragma once

#include <string>
#include <string_view>

#include "gateway/common/result.hpp"

namespace relaygate {

enum class DomainError {
    empty,
    too_long,          // over 255 octets as A-labels (RFC 5321 4.5.3.1.2)
    empty_label,       // leading, trailing or doubled dot
    label_too_long,    // over 63 octets (RFC 1035 2.3.4)
    bad_character,     // not letter, digit or hyphen in an ASCII label
    bad_hyphen,        // label starts or ends with a hyphen
    utf8_not_allowed,  // non-ASCII without SMTPUTF8
    invalid_utf8,
    invalid_idna,   // libidn2 refused it, or a malformed xn-- label
    not_canonical,  // U-label that only maps to an A-label after UTS #46
                    // mapping (case, width, invisible characters): ambiguous
};

std::string_view to_string(DomainError e);

// Validates `domain` and returns it as lower-case A-labels.
// ASCII labels are case-folded (DNS is case-insensitive, RFC 4343).
// U-labels are accepted only when allow_utf8 is set and only when already in
// canonical form: lower-case, NFC, nothing that UTS #46 would map away.
// Anything needing repair is rejected, never repaired.
Result<std::string, DomainError> normalize_domain(std::string_view domain, bool allow_utf8);

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace relaygate
