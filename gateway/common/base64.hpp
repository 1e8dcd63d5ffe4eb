// Strict base64 (RFC 4648 4) for SMTP AUTH (RFC 4954): canonical padding,
// no whitespace, no characters outside the alphabet. Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relaygate {

std::string base64_encode(std::string_view in);
// nullopt for anything that is not canonical base64.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace relaygate
