// Strict base64 (RFC 4648 4), the one codec of the project: padded for SMTP
// AUTH (RFC 4954 4) and DKIM (RFC 6376 3.5), unpadded for password hashes.
// Decoding takes only the canonical form: no whitespace, nothing outside the
// alphabet, zero bits under the padding, so one byte string has one
// encoding. Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relaygate {

enum class Base64Padding { padded, unpadded };

std::string base64_encode(std::string_view in, Base64Padding padding = Base64Padding::padded);
// nullopt for anything that is not canonical base64 of the given flavour.
std::optional<std::string> base64_decode(std::string_view in,
                                         Base64Padding padding = Base64Padding::padded);

// The 6-bit value of a base64 alphabet character, -1 for any other octet
// (for lenient readers such as RFC 2047 "B" decoding).
int base64_value(char c);

}  // namespace relaygate
