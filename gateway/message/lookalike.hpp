// Display text as a mail reader shows it: RFC 2047 encoded-words decoded and
// invisible characters dropped, then searched for something that looks like
// an address of another domain. Pure; never used to repair what is forwarded.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace relaygate::message {

// True if `word` is one RFC 2047 2 encoded-word: =?charset?B|Q?text?=
bool is_encoded_word(std::string_view word);

// True if `s` contains "=?" followed later by "?=": anything a lenient decoder
// might turn into other text. Used for addr-spec parts, where RFC 2047 5 (3)
// forbids encoded-words outright.
bool contains_encoded_word(std::string_view s);

struct DecodedText {
    std::string text;
    bool opaque_charset = false;  // an encoded-word in UTF-7/16/32: cannot be inspected
};

// Decodes every encoded-word found in `s` (also inside words and quotes, as
// lenient readers do), dropping whitespace between adjacent encoded-words
// (RFC 2047 6.2). Decoded bytes are kept as they are (charset not converted).
DecodedText decode_encoded_words(std::string_view s);

// Looks in display text (a display name or a comment) for "x@domain" whose
// domain is none of `own_domains` (lower-case A-labels). Full-width and small
// commercial at signs and full-width dots count as their ASCII forms; the
// text is decoded and stripped of invisible characters first. Returns the
// foreign domain as written.
std::optional<std::string> foreign_address_domain(std::string_view display_text,
                                                  std::span<const std::string_view> own_domains);

}  // namespace relaygate::message
