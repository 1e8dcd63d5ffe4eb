// Reply formatting: the one place that turns a Reply into octets for the
// client, so that every reply is CRLF-terminated and code-consistent.
#include "gateway/smtp/reply.hpp"

#include <string_view>

#include "gateway/common/ascii.hpp"

namespace relaygate::smtp {

bool is_enhanced_code(std::string_view s) {
    if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
    s.remove_prefix(2);
    for (int part = 0; part < 2; ++part) {
        std::size_t n = 0;
        while (n < s.size() && ascii::is_digit(static_cast<unsigned char>(s[n])))
            ++n;
        if (n == 0 || n > 3) return false;
        s.remove_prefix(n);
        if (part == 0) {
            if (s.empty() || s.front() != '.') return false;
            s.remove_prefix(1);
        }
    }
    return s.empty();
}

std::string format_reply(const Reply& r) {
    std::string out;
    const std::string code = std::to_string(r.code);
    const std::size_t n = r.lines.empty() ? 1 : r.lines.size();
    // One allocation: each line is at most code, separator, enhanced code,
    // space, its text and CRLF.
    std::size_t size = 0;
    for (const auto& l : r.lines)
        size += l.size();
    out.reserve(size + n * (code.size() + r.enhanced.size() + 4));
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t start = out.size();
        out += code;
        out += (i + 1 == n) ? ' ' : '-';
        out += r.enhanced;
        std::string_view text = r.lines.empty() ? std::string_view{} : r.lines[i];
        if (!r.enhanced.empty() && !text.empty()) out += ' ';
        // RFC 5321 4.2: a last line may be the bare code ("250").
        if (r.enhanced.empty() && text.empty() && i + 1 == n) out.pop_back();
        for (unsigned char c : text) {
            if (out.size() - start + 2 >= kMaxReplyLine) break;
            out += (c == '\t' || (c >= 32 && c <= 126)) ? static_cast<char>(c) : '?';
        }
        out += "\r\n";
    }
    return out;
}

Reply make_reply(Reason r) {
    const auto& row = info(r);
    return Reply{row.smtp_code, std::string(row.enhanced), {std::string(row.text)}};
}

}  // namespace relaygate::smtp
