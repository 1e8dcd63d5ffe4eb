// The only file compiled with RELAYGATE_VERSION and RELAYGATE_REVISION.
#include "gateway/server/version.hpp"

namespace relaygate::server {

std::string_view version() {
    return RELAYGATE_VERSION;
}

std::string_view revision() {
    return RELAYGATE_REVISION;
}

}  // namespace relaygate::server
