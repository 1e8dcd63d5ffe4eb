// Invisible-character table. Ranges come from Unicode White_Space and
// Default_Ignorable_Code_Point (Unicode 15 PropList/DerivedCoreProperties),
// written out by hand; the check must not depend on the process locale.
#include "gateway/message/invisible.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

namespace relaygate::message {
namespace {

struct Range {
    char32_t lo, hi;
};

constexpr std::array kInvisible{
    Range{0x0085, 0x0085},    // NEXT LINE
    Range{0x00A0, 0x00A0},    // NO-BREAK SPACE
    Range{0x00AD, 0x00AD},    // SOFT HYPHEN
    Range{0x034F, 0x034F},    // COMBINING GRAPHEME JOINER
    Range{0x061C, 0x061C},    // ARABIC LETTER MARK
    Range{0x115F, 0x1160},    // HANGUL CHOSEONG/JUNGSEONG FILLER
    Range{0x1680, 0x1680},    // OGHAM SPACE MARK
    Range{0x17B4, 0x17B5},    // KHMER VOWEL INHERENT
    Range{0x180B, 0x180F},    // MONGOLIAN selectors and VOWEL SEPARATOR
    Range{0x2000, 0x200F},    // EN QUAD .. RIGHT-TO-LEFT MARK (incl. ZWSP, ZWNJ, ZWJ)
    Range{0x2028, 0x202F},    // LINE/PARAGRAPH SEPARATOR, bidi embeddings, NNBSP
    Range{0x205F, 0x206F},    // MEDIUM MATHEMATICAL SPACE .. invisible operators, bidi isolates
    Range{0x2800, 0x2800},    // BRAILLE PATTERN BLANK
    Range{0x3000, 0x3000},    // IDEOGRAPHIC SPACE
    Range{0x3164, 0x3164},    // HANGUL FILLER
    Range{0xFE00, 0xFE0F},    // VARIATION SELECTORS
    Range{0xFEFF, 0xFEFF},    // ZERO WIDTH NO-BREAK SPACE (BOM)
    Range{0xFFA0, 0xFFA0},    // HALFWIDTH HANGUL FILLER
    Range{0xFFF0, 0xFFFB},    // unassigned specials, interlinear annotation
    Range{0x1BCA0, 0x1BCA3},  // SHORTHAND FORMAT controls
    Range{0x1D173, 0x1D17A},  // MUSICAL SYMBOL formatting
    Range{0xE0000, 0xE0FFF},  // TAG characters, VARIATION SELECTORS SUPPLEMENT
};

// Decodes one UTF-8 sequence at s[i]; returns its length (1 for a malformed
// byte, reported as U+FFFD which is visible).
std::size_t decode(std::string_view s, std::size_t i, char32_t& cp) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80           ? 0
                    : (c >> 5) == 0x6  ? 1
                    : (c >> 4) == 0xe  ? 2
                    : (c >> 3) == 0x1e ? 3
                                       : 4;
    if (n == 0) {
        cp = c;
        return 1;
    }
    if (n == 4 || i + n >= s.size()) {  // invalid lead byte or truncated
        cp = 0xFFFD;
        return 1;
    }
    std::uint32_t v = c & (0x3f >> n);
    for (std::size_t k = 1; k <= n; ++k) {
        auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) {
            cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (cc & 0x3f);
    }
    cp = static_cast<char32_t>(v);
    return n + 1;
}

}  // namespace

bool is_invisible(char32_t cp) {
    // ASCII, the common case, is below every range: no walk of the table.
    static_assert(std::all_of(kInvisible.begin(), kInvisible.end(),
                              [](Range r) { return r.lo >= kInvisible.front().lo; }));
    if (cp < kInvisible.front().lo) return false;
    for (const auto& r : kInvisible)
        if (cp >= r.lo && cp <= r.hi) return true;
    return false;
}

std::optional<char32_t> first_invisible(std::string_view utf8) {
    for (std::size_t i = 0; i < utf8.size();) {
        char32_t cp;
        i += decode(utf8, i, cp);
        if (is_invisible(cp)) return cp;
    }
    return std::nullopt;
}

std::string strip_invisible(std::string_view utf8) {
    std::string out;
    out.reserve(utf8.size());
    for (std::size_t i = 0; i < utf8.size();) {
        char32_t cp;
        std::size_t n = decode(utf8, i, cp);
        if (!is_invisible(cp)) out.append(utf8.substr(i, n));
        i += n;
    }
    return out;
}

}  // namespace relaygate::message
