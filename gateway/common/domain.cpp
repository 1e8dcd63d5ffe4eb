// Domain normalization: LDH checks on A-labels, libidn2 for U-labels, with a
// round-trip check so that no two different inputs normalize to one domain
// unless they differ only in ASCII case.
#include "gateway/common/domain.hpp"

#include <idn2.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "gateway/common/ascii.hpp"

namespace relaygate {
namespace {

struct IdnFree {
    void operator()(void* p) const { idn2_free(p); }
};
template <class T>
using IdnPtr = std::unique_ptr<T, IdnFree>;

Result<std::string, DomainError> fail(DomainError e) {
    return unexpected(e);
}

// Checks an all-ASCII, already lower-cased domain label by label.
std::optional<DomainError> check_ldh(std::string_view domain) {
    if (domain.empty()) return DomainError::empty;
    if (domain.size() > 255) return DomainError::too_long;
    std::size_t start = 0;
    while (start <= domain.size()) {
        std::size_t dot = domain.find('.', start);
        if (dot == std::string_view::npos) dot = domain.size();
        std::string_view label = domain.substr(start, dot - start);
        if (label.empty()) return DomainError::empty_label;
        if (label.size() > 63) return DomainError::label_too_long;
        for (unsigned char c : label)
            if (!ascii::is_alnum(c) && c != '-') return DomainError::bad_character;
        if (label.front() == '-' || label.back() == '-') return DomainError::bad_hyphen;
        if (label.starts_with("xn--")) {
            // An A-label must decode, and re-encode to itself (RFC 5891 5.4).
            char* u = nullptr;
            std::string l(label);
            if (idn2_to_unicode_8z8z(l.c_str(), &u, 0) != IDN2_OK) return DomainError::invalid_idna;
            IdnPtr<char> uptr(u);
            std::uint8_t* back = nullptr;
            if (idn2_lookup_u8(reinterpret_cast<const std::uint8_t*>(u), &back,
                               IDN2_NONTRANSITIONAL) != IDN2_OK)
                return DomainError::invalid_idna;
            IdnPtr<std::uint8_t> bptr(back);
            if (l != reinterpret_cast<const char*>(back)) return DomainError::invalid_idna;
        }
        start = dot + 1;
        if (dot == domain.size()) break;
    }
    return std::nullopt;
}

}  // namespace

std::string_view to_string(DomainError e) {
    switch (e) {
        case DomainError::empty:
            return "empty domain";
        case DomainError::too_long:
            return "domain longer than 255 octets";
        case DomainError::empty_label:
            return "empty label (leading, trailing or double dot)";
        case DomainError::label_too_long:
            return "label longer than 63 octets";
        case DomainError::bad_character:
            return "character not allowed in a domain label";
        case DomainError::bad_hyphen:
            return "label starts or ends with a hyphen";
        case DomainError::utf8_not_allowed:
            return "internationalized domain without SMTPUTF8";
        case DomainError::invalid_utf8:
            return "invalid UTF-8";
        case DomainError::invalid_idna:
            return "invalid internationalized domain name";
        case DomainError::not_canonical:
            return "internationalized domain not in canonical form";
    }
    return "invalid domain";
}

bool is_valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n;
        std::uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) return false;  // truncated sequence
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

Result<std::string, DomainError> normalize_domain(std::string_view domain, bool allow_utf8) {
    if (domain.empty()) return fail(DomainError::empty);
    std::string lowered = ascii::lower(domain);
    if (ascii::is_all_ascii(lowered)) {
        if (auto e = check_ldh(lowered)) return fail(*e);
        return lowered;
    }
    if (!allow_utf8) return fail(DomainError::utf8_not_allowed);
    if (!is_valid_utf8(lowered)) return fail(DomainError::invalid_utf8);
    if (lowered.find('\0') != std::string::npos) return fail(DomainError::bad_character);

    std::uint8_t* out = nullptr;
    if (idn2_lookup_u8(reinterpret_cast<const std::uint8_t*>(lowered.c_str()), &out,
                       IDN2_NONTRANSITIONAL) != IDN2_OK)
        return fail(DomainError::invalid_idna);
    IdnPtr<std::uint8_t> optr(out);
    std::string alabels(reinterpret_cast<const char*>(out));
    if (auto e = check_ldh(alabels)) return fail(*e);

    // Round trip: the U-labels must be exactly what the A-labels decode to.
    // This refuses input that UTS #46 had to map (upper case, full-width
    // dots, soft hyphens, zero-width characters, non-NFC forms).
    char* back = nullptr;
    if (idn2_to_unicode_8z8z(alabels.c_str(), &back, 0) != IDN2_OK)
        return fail(DomainError::invalid_idna);
    IdnPtr<char> bptr(back);
    if (lowered != back) return fail(DomainError::not_canonical);
    return alabels;
}

}  // namespace relaygate
