// libFuzzer target for gateway/dkim/signature (and the header canonicalizer):
// parse_signature on arbitrary bytes, with invariants checked on every
// accepted value. Test code only; aborts on a broken invariant.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/dkim/canon.hpp"
#include "gateway/dkim/signature.hpp"

using namespace relaygate::dkim;

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool is_lower_field_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 33 && u <= 126 && u != ':' && !(u >= 'A' && u <= 'Z');
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view value(reinterpret_cast<const char*>(data), size);

    // The header canonicalizer must cope with anything and stay deterministic.
    const std::string field = "DKIM-Signature:" + std::string(value);
    const std::string relaxed = canonicalize_header(Canon::relaxed, field);
    check(relaxed == canonicalize_header(Canon::relaxed, field));
    check(relaxed.starts_with("dkim-signature:"));
    check(canonicalize_header(Canon::simple, field) == field);
    (void)without_b_value(field);

    auto r = parse_signature(value);
    if (!r) {
        check(!r.error().empty());
        return 0;
    }
    const Signature& s = r.value();
    check(is_lower_ldh_name(s.domain));
    check(is_lower_ldh_name(s.selector));
    check(key_query_name(s) == s.selector + "._domainkey." + s.domain);
    check(std::find(s.signed_headers.begin(), s.signed_headers.end(), "from") !=
          s.signed_headers.end());
    for (const auto& h : s.signed_headers)
        check(is_lower_field_name(h));
    check(!s.body_hash.empty() && !s.signature.empty());
    if (s.timestamp && s.expiration) check(*s.expiration > *s.timestamp);
    if (!s.identity.empty()) {
        const auto at = s.identity.rfind('@');
        check(at != std::string::npos);
    }
    // Parsing is a function of the bytes: a second parse agrees.
    auto again = parse_signature(value);
    check(again.ok() && again->domain == s.domain && again->signature == s.signature);
    return 0;
}
