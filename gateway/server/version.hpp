// The version and source revision of this binary (set by CMake).
#pragma once

#include <string_view>

namespace relaygate::server {

std::string_view version();   // the project version, e.g. "0.1.0"
std::string_view revision();  // the git revision (12 hex digits) or "unknown"

}  // namespace relaygate::server
