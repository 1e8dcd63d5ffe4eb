// Path parsing: a single left-to-right pass per part, with the checks ordered
// so that the most specific error is reported (a source route is reported as
// such, not as "bad character"). Domains go through normalize_domain() only.
#include "gateway/smtp/path.hpp"

#include <optional>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"

namespace relaygate::smtp {
namespace {

using PathResult = Result<Path, PathError>;

PathResult fail(PathError e) {
    return unexpected(e);
}

bool is_hex(unsigned char c) {
    return ascii::is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

// RFC 5322 3.2.3 atext, extended by RFC 6531 3.3 with UTF8-non-ascii (the
// caller has already checked that non-ASCII is allowed and well-formed).
bool is_atext(unsigned char c) {
    if (ascii::is_alnum(c) || c >= 0x80) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '/':
        case '=':
        case '?':
        case '^':
        case '_':
        case '`':
        case '{':
        case '|':
        case '}':
        case '~':
            return true;
        default:
            return false;
    }
}

// RFC 5321 4.1.2 qtextSMTP (%d32-33 / %d35-91 / %d93-126), plus UTF-8.
bool is_qtext(unsigned char c) {
    return (c >= 32 && c <= 126 && c != '"' && c != '\\') || c >= 0x80;
}

// Dot-string = Atom *("." Atom).
bool is_dot_string(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '.') {
            if (s[i - 1] == '.') return false;
        } else if (!is_atext(c)) {
            return false;
        }
    }
    return true;
}

// RFC 5321 4.1.3 Snum: 1*3DIGIT with a value of 0-255. Leading zeros are
// refused: some parsers read "010" as octal, so it would be ambiguous.
bool parse_snum(std::string_view s) {
    if (s.empty() || s.size() > 3) return false;
    for (unsigned char c : s)
        if (!ascii::is_digit(c)) return false;
    if (s.size() > 1 && s[0] == '0') return false;
    int v = 0;
    for (char c : s)
        v = v * 10 + (c - '0');
    return v <= 255;
}

bool is_ipv4(std::string_view s) {
    for (int i = 0; i < 3; ++i) {
        const auto dot = s.find('.');
        if (dot == std::string_view::npos || !parse_snum(s.substr(0, dot))) return false;
        s.remove_prefix(dot + 1);
    }
    return parse_snum(s);
}

// Splits a colon-separated run of IPv6-hex groups; the last element may be an
// IPv4 address when `allow_v4_tail`. Returns the number of hex groups or -1.
int count_hex_groups(std::string_view s, bool allow_v4_tail, bool& v4_tail) {
    int groups = 0;
    if (s.empty()) return 0;
    for (;;) {
        const auto colon = s.find(':');
        std::string_view part = s.substr(0, colon);
        const bool last = colon == std::string_view::npos;
        if (last && allow_v4_tail && part.find('.') != std::string_view::npos) {
            if (!is_ipv4(part)) return -1;
            v4_tail = true;
            return groups;
        }
        if (part.empty() || part.size() > 4) return -1;
        for (unsigned char c : part)
            if (!is_hex(c)) return -1;
        ++groups;
        if (last) return groups;
        s.remove_prefix(colon + 1);
    }
}

// RFC 5321 4.1.3 IPv6-addr: full, compressed, and both with an IPv4 tail.
// "::" stands for at least two zero groups, so at most 6 (or 4 before an
// IPv4 tail) explicit groups may accompany it.
bool is_ipv6(std::string_view s) {
    const auto dc = s.find("::");
    bool v4 = false;
    if (dc == std::string_view::npos) {
        const int n = count_hex_groups(s, true, v4);
        return v4 ? n == 6 : n == 8;
    }
    std::string_view left = s.substr(0, dc);
    std::string_view right = s.substr(dc + 2);
    if (right.find("::") != std::string_view::npos) return false;
    bool left_v4 = false;
    const int nl = count_hex_groups(left, false, left_v4);
    const int nr = count_hex_groups(right, true, v4);
    if (nl < 0 || nr < 0) return false;
    return nl + nr <= (v4 ? 4 : 6);
}

PathError domain_error(DomainError e) {
    switch (e) {
        case DomainError::too_long:
            return PathError::domain_too_long;
        case DomainError::utf8_not_allowed:
            return PathError::utf8_not_allowed;
        case DomainError::invalid_utf8:
            return PathError::invalid_utf8;
        default:
            return PathError::bad_domain;
    }
}

// Checks outside quoted-strings: whitespace, comments and stray brackets are
// where other parsers disagree ("<a@b (c)>", "<a@b> <c@d>"), so they get
// their own errors instead of a generic one.
std::optional<PathError> scan_unquoted(std::string_view inner) {
    bool quoted = false;
    for (std::size_t i = 0; i < inner.size(); ++i) {
        const char c = inner[i];
        if (quoted) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (ascii::is_wsp(static_cast<unsigned char>(c)))
            return PathError::whitespace;
        else if (c == '(' || c == ')')
            return PathError::comment;
        else if (c == '<' || c == '>')
            return PathError::missing_brackets;
    }
    return std::nullopt;
}

PathResult parse_path(std::string_view text, bool smtputf8, bool reverse) {
    if (text.size() < 2 || text.front() != '<' || text.back() != '>')
        return fail(PathError::missing_brackets);
    bool non_ascii = false;
    for (unsigned char c : text) {
        if (ascii::is_ctl(c)) return fail(PathError::control_character);
        if (c >= 0x80) non_ascii = true;
    }
    if (non_ascii) {
        // RFC 6531 3.3: UTF-8 in an envelope only with SMTPUTF8.
        if (!smtputf8) return fail(PathError::utf8_not_allowed);
        if (!is_valid_utf8(text)) return fail(PathError::invalid_utf8);
    }

    Path p;
    std::string_view inner = text.substr(1, text.size() - 2);
    if (inner.empty()) {
        // RFC 5321 4.5.5: the null reverse-path is for notifications only,
        // and is never a valid recipient.
        if (!reverse) return fail(PathError::null_not_allowed);
        p.null = true;
        return p;
    }
    // RFC 5321 4.1.2: A-d-l source routes are obsolete; accepting them
    // would mean choosing between route and mailbox. Refused.
    if (inner.front() == '@') return fail(PathError::source_route);
    if (auto e = scan_unquoted(inner)) return fail(*e);

    // Local-part.
    std::size_t at;
    if (inner.front() == '"') {
        bool saw_at = false;
        std::size_t i = 1;
        for (; i < inner.size(); ++i) {
            const auto c = static_cast<unsigned char>(inner[i]);
            if (c == '"') break;
            if (c == '\\') {
                // quoted-pairSMTP = %d92 %d32-126
                if (i + 1 >= inner.size()) return fail(PathError::bad_local_part);
                const auto q = static_cast<unsigned char>(inner[++i]);
                if (q < 32 || q > 126) return fail(PathError::bad_local_part);
                if (q == '@') saw_at = true;
            } else if (!is_qtext(c)) {
                return fail(PathError::bad_local_part);
            } else if (c == '@') {
                saw_at = true;
            }
        }
        if (i >= inner.size()) return fail(PathError::bad_local_part);  // unterminated
        // An empty quoted local-part is legal syntax but names no mailbox
        // anyone can mean; refused rather than guessed at.
        if (i == 1) return fail(PathError::bad_local_part);
        // '"a@b"@c': two readings of one address (DESIGN.md): refused.
        if (saw_at) return fail(PathError::quoted_at);
        at = i + 1;
        if (at >= inner.size() || inner[at] != '@') {
            return fail(at >= inner.size() ? PathError::syntax : PathError::bad_local_part);
        }
        p.quoted_local_part = true;
    } else {
        at = inner.find('@');
        if (at == std::string_view::npos) {
            // RFC 5321 4.5.1: "<Postmaster>" (any case) must be accepted as
            // a recipient without a domain.
            if (!reverse && ascii::iequals(inner, "postmaster")) {
                p.postmaster = true;
                p.local_part = std::string(inner);
                return p;
            }
            return fail(is_dot_string(inner) ? PathError::syntax : PathError::bad_local_part);
        }
        if (!is_dot_string(inner.substr(0, at))) return fail(PathError::bad_local_part);
    }
    if (at > kMaxLocalPart) return fail(PathError::local_part_too_long);
    p.local_part = std::string(inner.substr(0, at));

    // Domain or address literal.
    std::string_view domain = inner.substr(at + 1);
    if (domain.empty()) return fail(PathError::syntax);
    if (domain.size() > kMaxDomain) return fail(PathError::domain_too_long);
    // Checked after its parts so that the most specific limit is reported.
    if (text.size() > kMaxPath) return fail(PathError::path_too_long);
    if (domain.front() == '[') {
        auto lit = parse_address_literal(domain);
        if (!lit) return fail(lit.error());
        p.address_literal = true;
        p.literal_kind = lit->kind;
        p.domain = std::move(lit->text);
        return p;
    }
    auto d = normalize_domain(domain, smtputf8);
    if (!d) return fail(domain_error(d.error()));
    p.domain = std::move(d.value());
    // The A-label form is what goes upstream: it must fit the same limit, or
    // the path we re-emit would not be one we accept.
    if (p.local_part.size() + p.domain.size() + 3 > kMaxPath) return fail(PathError::path_too_long);
    return p;
}

}  // namespace

std::string_view to_string(PathError e) {
    switch (e) {
        case PathError::syntax:
            return "path syntax error";
        case PathError::missing_brackets:
            return "path must be enclosed in a single <...>";
        case PathError::null_not_allowed:
            return "null path not allowed here";
        case PathError::source_route:
            return "source routes are not accepted";
        case PathError::quoted_at:
            return "quoted local-part containing @";
        case PathError::local_part_too_long:
            return "local-part longer than 64 octets";
        case PathError::domain_too_long:
            return "domain longer than 255 octets";
        case PathError::path_too_long:
            return "path longer than 256 octets";
        case PathError::bad_local_part:
            return "invalid local-part";
        case PathError::bad_domain:
            return "invalid domain";
        case PathError::bad_address_literal:
            return "invalid address literal";
        case PathError::control_character:
            return "control character in path";
        case PathError::whitespace:
            return "whitespace in path";
        case PathError::comment:
            return "comment in path";
        case PathError::utf8_not_allowed:
            return "non-ASCII address without SMTPUTF8";
        case PathError::invalid_utf8:
            return "invalid UTF-8 in path";
    }
    return "invalid path";
}

std::string Path::mailbox() const {
    std::string out;
    append_mailbox(out);
    return out;
}

void Path::append_mailbox(std::string& out) const {
    if (null) return;
    out += local_part;
    if (postmaster) return;
    out += '@';
    out += domain;
}

Result<Path, PathError> parse_reverse_path(std::string_view text, bool smtputf8) {
    return parse_path(text, smtputf8, true);
}

Result<Path, PathError> parse_forward_path(std::string_view text, bool smtputf8) {
    return parse_path(text, smtputf8, false);
}

Result<AddressLiteral, PathError> parse_address_literal(std::string_view lit) {
    if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']')
        return unexpected(PathError::bad_address_literal);
    std::string_view body = lit.substr(1, lit.size() - 2);
    if (is_ipv4(body)) return AddressLiteral{LiteralKind::ipv4, std::string(lit)};
    if (ascii::istarts_with(body, "IPv6:") && is_ipv6(body.substr(5)))
        return AddressLiteral{LiteralKind::ipv6, "[IPv6:" + ascii::lower(body.substr(5)) + "]"};
    // General-address-literal tags must be registered (RFC 5321 4.1.3);
    // none is, so anything else is malformed.
    return unexpected(PathError::bad_address_literal);
}

std::size_t path_token_length(std::string_view s) {
    if (s.empty() || s.front() != '<') return 0;
    bool quoted = false;
    for (std::size_t i = 1; i < s.size(); ++i) {
        const char c = s[i];
        if (quoted) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                quoted = false;
        } else if (c == '"') {
            quoted = true;
        } else if (c == '>') {
            return i + 1;
        }
    }
    return 0;
}

}  // namespace relaygate::smtp
