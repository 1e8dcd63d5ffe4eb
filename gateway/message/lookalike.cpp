// Address look-alikes in display names and comments ("Composition Kills"
// 8(f): the reader shows the display name, the signer signs the address).
// Detection only: the message is rejected, never rewritten.
#include "gateway/message/lookalike.hpp"

#include <array>
#include <cstdint>

#include "gateway/common/ascii.hpp"
#include "gateway/common/base64.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/message/invisible.hpp"

namespace relaygate::message {
namespace {

struct EncodedWord {
    std::string_view charset, encoding, text;
    std::size_t length = 0;  // bytes of the whole =?...?= token
};

// Parses an encoded-word starting at s[0] (RFC 2047 2: no spaces, no '?' in
// the parts; the charset may carry an RFC 2231 "*language" suffix).
std::optional<EncodedWord> parse_encoded_word(std::string_view s) {
    if (!s.starts_with("=?")) return std::nullopt;
    auto token_end = [&](std::size_t from) {
        for (std::size_t i = from; i < s.size(); ++i) {
            auto c = static_cast<unsigned char>(s[i]);
            if (c == '?') return i;
            if (c <= ' ' || c >= 0x7f) return std::string_view::npos;
        }
        return std::string_view::npos;
    };
    std::size_t q1 = token_end(2);
    if (q1 == std::string_view::npos || q1 == 2) return std::nullopt;
    std::size_t q2 = token_end(q1 + 1);
    if (q2 != q1 + 2) return std::nullopt;
    std::size_t q3 = token_end(q2 + 1);
    if (q3 == std::string_view::npos || q3 + 1 >= s.size() || s[q3 + 1] != '=') return std::nullopt;
    EncodedWord w;
    w.charset = s.substr(2, q1 - 2);
    w.encoding = s.substr(q1 + 1, 1);
    w.text = s.substr(q2 + 1, q3 - q2 - 1);
    w.length = q3 + 2;
    if (!ascii::iequals(w.encoding, "b") && !ascii::iequals(w.encoding, "q")) return std::nullopt;
    return w;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = ascii::to_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Lenient decoders: a reader that shows *something* for a broken word is
// what the check must anticipate.
std::string decode_q(std::string_view t) {
    std::string out;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '_') {
            out += ' ';
        } else if (t[i] == '=' && i + 2 < t.size() && hex_value(t[i + 1]) >= 0 &&
                   hex_value(t[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(t[i + 1]) * 16 + hex_value(t[i + 2]));
            i += 2;
        } else {
            out += t[i];
        }
    }
    return out;
}

std::string decode_b(std::string_view t) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : t) {
        int v = base64_value(c);
        if (v < 0) continue;  // padding and garbage are skipped
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

bool opaque_charset(std::string_view charset) {
    std::string cs = ascii::lower(charset.substr(0, charset.find('*')));
    for (std::string_view p : {"utf-7", "utf7", "utf-16", "utf16", "utf-32", "utf32", "ucs-2",
                               "ucs2", "ucs-4", "ucs4", "unicode"})
        if (cs.starts_with(p)) return true;
    return false;
}

// Maps the look-alike forms of '@' and '.' to ASCII (UTS #46 maps the dots;
// readers render the at signs the same).
std::string fold_lookalikes(std::string_view s) {
    struct Map {
        std::string_view from;
        char to;
    };
    constexpr std::array kMaps{
        Map{"\xEF\xBC\xA0", '@'},  // U+FF20 FULLWIDTH COMMERCIAL AT
        Map{"\xEF\xB9\xAB", '@'},  // U+FE6B SMALL COMMERCIAL AT
        Map{"\xEF\xBC\x8E", '.'},  // U+FF0E FULLWIDTH FULL STOP
        Map{"\xE3\x80\x82", '.'},  // U+3002 IDEOGRAPHIC FULL STOP
        Map{"\xEF\xBD\xA1", '.'},  // U+FF61 HALFWIDTH IDEOGRAPHIC FULL STOP
    };
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        bool mapped = false;
        for (const auto& m : kMaps) {
            if (s.substr(i).starts_with(m.from)) {
                out += m.to;
                i += m.from.size();
                mapped = true;
                break;
            }
        }
        if (!mapped) out += s[i++];
    }
    return out;
}

bool domain_char(unsigned char c) {
    return ascii::is_alnum(c) || c == '-' || c == '.' || c >= 0x80;
}

}  // namespace

bool is_encoded_word(std::string_view word) {
    auto w = parse_encoded_word(word);
    return w && w->length == word.size();
}

bool contains_encoded_word(std::string_view s) {
    std::size_t open = s.find("=?");
    return open != std::string_view::npos && s.find("?=", open + 2) != std::string_view::npos;
}

DecodedText decode_encoded_words(std::string_view s) {
    DecodedText out;
    std::string pending_space;  // whitespace after an encoded-word, dropped if another follows
    bool last_encoded = false;
    for (std::size_t i = 0; i < s.size();) {
        if (auto w = parse_encoded_word(s.substr(i))) {
            if (!last_encoded) out.text += pending_space;
            pending_space.clear();
            if (opaque_charset(w->charset)) out.opaque_charset = true;
            out.text += ascii::iequals(w->encoding, "b") ? decode_b(w->text) : decode_q(w->text);
            i += w->length;
            last_encoded = true;
            continue;
        }
        if (ascii::is_wsp(static_cast<unsigned char>(s[i]))) {
            pending_space += s[i++];
            continue;
        }
        out.text += pending_space;
        pending_space.clear();
        out.text += s[i++];
        last_encoded = false;
    }
    out.text += pending_space;
    return out;
}

std::optional<std::string> foreign_address_domain(std::string_view display_text,
                                                  std::span<const std::string_view> own_domains) {
    std::string text = fold_lookalikes(strip_invisible(decode_encoded_words(display_text).text));
    for (std::size_t at = text.find('@'); at != std::string::npos; at = text.find('@', at + 1)) {
        std::size_t end = at + 1;
        while (end < text.size() && domain_char(static_cast<unsigned char>(text[end])))
            ++end;
        std::string candidate = text.substr(at + 1, end - at - 1);
        while (!candidate.empty() && candidate.back() == '.')
            candidate.pop_back();
        while (!candidate.empty() && candidate.front() == '.')
            candidate.erase(0, 1);
        // "Sales @ Acme" or "root@localhost" name no domain a reader would trust.
        if (candidate.empty() ||
            (candidate.find('.') == std::string::npos && ascii::is_all_ascii(candidate)))
            continue;
        std::string lowered = ascii::lower(candidate);
        auto normalized = normalize_domain(candidate, true);
        bool own = false;
        for (const auto& d : own_domains)
            if (d == lowered || (normalized.ok() && normalized.value() == d)) own = true;
        if (!own) return candidate;
    }
    return std::nullopt;
}

}  // namespace relaygate::message
