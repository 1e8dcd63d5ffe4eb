// Unicode whitespace and invisible code points in header text (RFC 6532 lets
// UTF-8 into addresses; these are the characters a reader cannot see).
// Pure functions on already-validated UTF-8; no I/O, no allocation on the check.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relaygate::message {

// True for code points that render as nothing or as blank space: Unicode
// White_Space, Default_Ignorable_Code_Point, bidi controls, variation
// selectors, tag characters, filler characters.
bool is_invisible(char32_t cp);

// The first invisible code point in `utf8`, if any. Malformed sequences are
// skipped one byte at a time (callers validate UTF-8 first).
std::optional<char32_t> first_invisible(std::string_view utf8);

// `utf8` without its invisible code points (used to see a display name as a
// reader sees it, never to repair an address).
std::string strip_invisible(std::string_view utf8);

}  // namespace relaygate::message
