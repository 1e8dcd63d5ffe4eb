// DKIM-Signature parsing: the RFC 6376 3.2 tag-list grammar, then the 3.5 tag
// semantics. Every deviation is an error string (a permerror for the caller);
// nothing is repaired. Pure: no I/O, no clock, no exceptions.
#include "gateway/dkim/signature.hpp"

#include <algorithm>
#include <limits>

#include "gateway/common/ascii.hpp"
#include "gateway/common/base64.hpp"

namespace relaygate::dkim {

namespace {

using SigResult = Result<Signature, std::string>;

Unexpected<std::string> fail(std::string why) {
    return unexpected(std::move(why));
}

// RFC 6376 3.2: tag-name = ALPHA *ALNUMPUNC; ALNUMPUNC = ALPHA / DIGIT / "_".
bool is_tag_name(std::string_view s) {
    if (s.empty() || !ascii::is_alpha(static_cast<unsigned char>(s[0]))) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return ascii::is_alnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

// VALCHAR = %x21-3A / %x3C-7E (everything visible but ";").
bool is_valchar(unsigned char c) {
    return c >= 0x21 && c <= 0x7e && c != ';';
}

// RFC 5322 FWS: a CRLF is only allowed when a WSP follows. Returns the text
// with those CRLFs removed, or nullopt for a bare CR or LF, NUL or 8-bit.
std::optional<std::string> unfold(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const auto c = static_cast<unsigned char>(in[i]);
        if (c == 0 || c >= 0x80) return std::nullopt;
        if (c == '\r') {
            if (i + 2 >= in.size() || in[i + 1] != '\n' ||
                !ascii::is_wsp(static_cast<unsigned char>(in[i + 2])))
                return std::nullopt;
            ++i;  // drop CRLF, keep the WSP
            continue;
        }
        if (c == '\n') return std::nullopt;
        out += static_cast<char>(c);
    }
    return out;
}

// Base64 with FWS allowed between characters (RFC 6376 3.5 b= and bh=).
std::optional<std::string> decode_base64_fws(std::string_view v) {
    std::string compact;
    compact.reserve(v.size());
    for (char c : v)
        if (!ascii::is_wsp(static_cast<unsigned char>(c))) compact += c;
    if (compact.empty()) return std::nullopt;
    return base64_decode(compact);
}

std::optional<std::uint64_t> parse_number(std::string_view v, std::size_t max_digits) {
    if (v.empty() || v.size() > max_digits) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : v) {
        if (!ascii::is_digit(static_cast<unsigned char>(c))) return std::nullopt;
        const auto d = static_cast<std::uint64_t>(c - '0');
        if (n > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return std::nullopt;
        n = n * 10 + d;
    }
    return n;
}

// Splits a colon-separated list (h=, q=, c=) with optional WSP around items.
std::vector<std::string_view> split_colons(std::string_view v) {
    std::vector<std::string_view> out;
    while (true) {
        const auto colon = v.find(':');
        out.push_back(ascii::trim_wsp(v.substr(0, colon)));
        if (colon == std::string_view::npos) break;
        v.remove_prefix(colon + 1);
    }
    return out;
}

// RFC 5322 ftext: printable US-ASCII except ":".
bool is_field_name(std::string_view s) {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 33 && u <= 126 && u != ':';
    });
}

std::optional<Canon> parse_canon(std::string_view s) {
    if (s == "simple") return Canon::simple;
    if (s == "relaxed") return Canon::relaxed;
    return std::nullopt;
}

}  // namespace

std::string_view to_string(Algorithm a) {
    switch (a) {
        case Algorithm::rsa_sha256:
            return "rsa-sha256";
        case Algorithm::ed25519_sha256:
            return "ed25519-sha256";
    }
    return "?";
}

std::string_view to_string(Canon c) {
    return c == Canon::relaxed ? "relaxed" : "simple";
}

bool is_lower_ldh_name(std::string_view name) {
    if (name.empty() || name.size() > 253) return false;
    while (true) {
        const auto dot = name.find('.');
        const std::string_view label = name.substr(0, dot);
        if (label.empty() || label.size() > 63) return false;
        if (label.front() == '-' || label.back() == '-') return false;
        for (char c : label) {
            const bool ok = (c >= 'a' && c <= 'z') ||
                            ascii::is_digit(static_cast<unsigned char>(c)) || c == '-';
            if (!ok) return false;
        }
        if (dot == std::string_view::npos) return true;
        name.remove_prefix(dot + 1);
    }
}

Result<std::vector<Tag>, std::string> parse_tag_list(std::string_view text) {
    const auto unfolded = unfold(text);
    if (!unfolded) return fail("bad octet or line break in tag-list");
    std::vector<Tag> tags;
    std::string_view rest = *unfolded;
    while (true) {
        const auto semi = rest.find(';');
        const std::string_view spec = ascii::trim_wsp(rest.substr(0, semi));
        const bool last = semi == std::string_view::npos;
        if (spec.empty()) {
            // Only a trailing ";" may leave an empty spec, and not as the sole content.
            if (last && !tags.empty()) break;
            return fail("empty tag-spec");
        }
        const auto eq = spec.find('=');
        if (eq == std::string_view::npos) return fail("tag-spec without '='");
        const std::string_view name = ascii::trim_wsp(spec.substr(0, eq));
        const std::string_view value = ascii::trim_wsp(spec.substr(eq + 1));
        if (!is_tag_name(name)) return fail("bad tag name");
        for (char c : value) {
            const auto u = static_cast<unsigned char>(c);
            if (!is_valchar(u) && !ascii::is_wsp(u)) return fail("bad character in tag value");
        }
        tags.push_back({std::string(name), std::string(value)});
        if (last) break;
        rest.remove_prefix(semi + 1);
    }
    // RFC 6376 3.2: a duplicated tag name makes the entire tag-list invalid.
    // Sorted, not pairwise: a header-sized list has tens of thousands of tags.
    std::vector<std::string_view> names;
    names.reserve(tags.size());
    for (const auto& t : tags)
        names.push_back(t.name);
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) return fail("duplicate tag " + std::string(*dup) + "=");
    return tags;
}

namespace {
// The ambiguity checks on an already parsed tag-list.
std::optional<std::string> ambiguity(const std::vector<Tag>& tags) {
    // Tag names are case-sensitive (RFC 6376 3.2), so "d=" and "D=" are two
    // tags; a verifier that folds case would see a duplicate d= and may pick
    // either. Refused, like an exact duplicate.
    std::vector<std::string> folded;
    folded.reserve(tags.size());
    for (const auto& t : tags)
        folded.push_back(ascii::lower(t.name));
    std::sort(folded.begin(), folded.end());
    if (auto dup = std::adjacent_find(folded.begin(), folded.end()); dup != folded.end())
        return "tags differing only in case: " + *dup + "=";
    // The signing domain and selector name the key: one spelling only.
    for (const auto& [name, v] : tags) {
        if (name == "d" && !is_lower_ldh_name(ascii::lower(v)))
            return "d= is not an LDH domain name";
        if (name == "s" && !is_lower_ldh_name(ascii::lower(v))) return "s= is not an LDH selector";
    }
    return std::nullopt;
}
}  // namespace

std::optional<std::string> signature_ambiguity(std::string_view value) {
    auto parsed = parse_tag_list(value);
    if (!parsed) return parsed.error();
    return ambiguity(parsed.value());
}

Result<Signature, std::string> parse_signature(std::string_view value) {
    auto parsed = parse_tag_list(value);
    if (!parsed) return fail(parsed.error());
    if (auto why = ambiguity(parsed.value())) return fail(std::move(*why));

    Signature sig{};
    bool have_v = false, have_a = false, have_b = false, have_bh = false, have_d = false,
         have_h = false, have_s = false;
    for (const auto& [name, v] : parsed.value()) {
        if (name == "v") {
            // RFC 6376 3.5: "This tag MUST have the value "1"".
            if (v != "1") return fail("unsupported version v=" + v);
            have_v = true;
        } else if (name == "a") {
            if (v == "rsa-sha256") {
                sig.algorithm = Algorithm::rsa_sha256;
            } else if (v == "ed25519-sha256") {  // RFC 8463 3
                sig.algorithm = Algorithm::ed25519_sha256;
            } else {
                // rsa-sha1 included: RFC 8301 3.1 forbids treating it as valid.
                return fail("unsupported algorithm a=" + v);
            }
            have_a = true;
        } else if (name == "b") {
            auto d = decode_base64_fws(v);
            if (!d) return fail("bad base64 in b=");
            sig.signature = std::move(*d);
            have_b = true;
        } else if (name == "bh") {
            auto d = decode_base64_fws(v);
            if (!d) return fail("bad base64 in bh=");
            sig.body_hash = std::move(*d);
            have_bh = true;
        } else if (name == "c") {
            // RFC 6376 3.5: "header/body"; a lone header algorithm leaves body "simple".
            const auto slash = v.find('/');
            const auto h = parse_canon(std::string_view(v).substr(0, slash));
            const auto b = slash == std::string::npos
                               ? std::optional<Canon>(Canon::simple)
                               : parse_canon(std::string_view(v).substr(slash + 1));
            if (!h || !b) return fail("unsupported canonicalization c=" + v);
            sig.header_canon = *h;
            sig.body_canon = *b;
        } else if (name == "d") {
            sig.domain = ascii::lower(v);
            if (!is_lower_ldh_name(sig.domain)) return fail("d= is not an LDH domain name");
            have_d = true;
        } else if (name == "h") {
            for (auto item : split_colons(v)) {
                if (!is_field_name(item)) return fail("bad field name in h=");
                sig.signed_headers.push_back(ascii::lower(item));
            }
            have_h = true;
        } else if (name == "i") {
            sig.identity = v;
        } else if (name == "l") {
            sig.length = parse_number(v, 76);
            if (!sig.length) return fail("bad l=");
        } else if (name == "q") {
            for (auto item : split_colons(v))
                if (item != "dns/txt") return fail("unsupported query method q=" + v);
        } else if (name == "s") {
            sig.selector = ascii::lower(v);
            if (!is_lower_ldh_name(sig.selector)) return fail("s= is not an LDH selector");
            have_s = true;
        } else if (name == "t") {
            sig.timestamp = parse_number(v, 20);
            if (!sig.timestamp) return fail("bad t=");
        } else if (name == "x") {
            sig.expiration = parse_number(v, 20);
            if (!sig.expiration) return fail("bad x=");
        }
        // RFC 6376 3.2: unrecognized tags (z=, ...) MUST be ignored.
    }
    if (!have_v) return fail("missing v=");
    if (!have_a) return fail("missing a=");
    if (!have_b) return fail("missing b=");
    if (!have_bh) return fail("missing bh=");
    if (!have_d) return fail("missing d=");
    if (!have_h) return fail("missing h=");
    if (!have_s) return fail("missing s=");

    // RFC 6376 5.4: the From field MUST be signed.
    if (std::find(sig.signed_headers.begin(), sig.signed_headers.end(), "from") ==
        sig.signed_headers.end())
        return fail("h= does not include from");
    // RFC 6376 3.5 x=: "MUST be greater than the value of the "t=" tag".
    if (sig.timestamp && sig.expiration && *sig.expiration <= *sig.timestamp)
        return fail("x= is not after t=");
    // RFC 6376 6.1.1: the i= domain must be d= or one of its subdomains.
    if (!sig.identity.empty()) {
        const auto at = sig.identity.rfind('@');
        if (at == std::string::npos) return fail("i= has no '@'");
        const std::string idomain = ascii::lower(std::string_view(sig.identity).substr(at + 1));
        const bool same = idomain == sig.domain;
        const bool sub = idomain.size() > sig.domain.size() && idomain.ends_with(sig.domain) &&
                         idomain[idomain.size() - sig.domain.size() - 1] == '.';
        if (!same && !sub) return fail("i= domain is not d= or a subdomain of it");
    }
    return sig;
}

std::string key_query_name(const Signature& s) {
    return s.selector + "._domainkey." + s.domain;
}

}  // namespace relaygate::dkim
