// EHLO keyword extraction: strict ehlo-line syntax, keywords upper-cased so
// lookups are case-insensitive as RFC 5321 4.1.1.1 requires.
#include "gateway/smtp/ehlo_capabilities.hpp"

#include "gateway/common/ascii.hpp"

namespace relaygate::smtp {
namespace {

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = ascii::to_upper(c);
    return out;
}

// ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool is_keyword(std::string_view s) {
    if (s.empty() || !ascii::is_alnum(static_cast<unsigned char>(s[0]))) return false;
    for (unsigned char c : s)
        if (!ascii::is_alnum(c) && c != '-') return false;
    return true;
}

// ehlo-param = 1*(%d33-126)
bool is_param(std::string_view s) {
    if (s.empty()) return false;
    for (unsigned char c : s)
        if (c < 33 || c > 126) return false;
    return true;
}

}  // namespace

bool EhloCapabilities::has(std::string_view keyword) const {
    return keywords.find(upper(keyword)) != keywords.end();
}

const std::vector<std::string>* EhloCapabilities::params(std::string_view keyword) const {
    auto it = keywords.find(upper(keyword));
    return it == keywords.end() ? nullptr : &it->second;
}

std::optional<std::uint64_t> EhloCapabilities::size_limit() const {
    const auto* p = params("SIZE");
    if (!p || p->size() != 1) return std::nullopt;
    const std::string& v = p->front();
    if (v.empty() || v.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (unsigned char c : v) {
        if (!ascii::is_digit(c)) return std::nullopt;
        n = n * 10 + (c - '0');
    }
    if (n == 0) return std::nullopt;
    return n;
}

EhloCapabilities parse_ehlo_capabilities(const Reply& reply) {
    EhloCapabilities caps;
    if (reply.code != 250 || reply.lines.empty()) return caps;
    caps.greeting = reply.lines.front();
    for (std::size_t i = 1; i < reply.lines.size(); ++i) {
        std::string_view line = reply.lines[i];
        const auto sp = line.find(' ');
        std::string_view kw = line.substr(0, sp);
        if (!is_keyword(kw)) continue;
        std::vector<std::string> params;
        bool ok = true;
        if (sp != std::string_view::npos) {
            std::string_view rest = line.substr(sp + 1);
            for (;;) {
                const auto next = rest.find(' ');
                std::string_view p = rest.substr(0, next);
                if (!is_param(p)) {
                    ok = false;
                    break;
                }
                params.emplace_back(p);
                if (next == std::string_view::npos) break;
                rest.remove_prefix(next + 1);
            }
        }
        if (ok) caps.keywords.emplace(upper(kw), std::move(params));
    }
    return caps;
}

}  // namespace relaygate::smtp
