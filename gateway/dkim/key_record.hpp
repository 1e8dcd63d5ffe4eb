// The DKIM key record (RFC 6376 3.6.1, RFC 8463 4): one TXT record's text in,
// a usable public key or an error string out. Pure: no DNS, no I/O, no
// exceptions; the caller fetches the record.
#pragma once

#include <string>
#include <string_view>

#include "gateway/common/result.hpp"
#include "gateway/dkim/openssl.hpp"
#include "gateway/dkim/signature.hpp"

namespace relaygate::dkim {

struct PublicKey {
    Algorithm algorithm;
    EvpPkeyPtr key;
};

// `txt`: the record's strings already concatenated. `expected`: the a= of the
// signature the key is for; k= must fit it. RSA keys below 1024 bits (RFC 8301
// 3.2) and revoked keys (empty p=, error "key revoked") are errors.
Result<PublicKey, std::string> parse_key_record(std::string_view txt, Algorithm expected);

}  // namespace relaygate::dkim
