// Recursive-descent reader for RFC 5322 3.4 address-list over an unfolded
// field body, with the lexical tokens of RFC 5322 3.2 (CFWS, quoted-string,
// atom, dot-atom) and RFC 6532 3.2 UTF-8 extensions. Errors, not exceptions.
#include "gateway/message/address_parser.hpp"

#include <optional>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/message/invisible.hpp"
#include "gateway/message/lookalike.hpp"

namespace relaygate::message {
namespace {

// Nesting bound for comments (RFC 5322 3.2.2 allows any depth; nobody needs 32).
constexpr std::size_t kMaxCommentDepth = 32;

enum class TokenKind { atom, quoted, dot };

struct Token {
    TokenKind kind;
    std::string text;  // atom text, or quoted-string content unescaped
    bool cfws_before = false;
};
// An address's words fit inline: no allocation for the list.
using Tokens = boost::container::small_vector<Token, 8>;

class Parser {
  public:
    Parser(std::string_view s, const AddressOptions& o) : s_(s), opt_(o) {}

    Result<AddressList, AddressError> run() {
        if (!opt_.smtputf8 && !ascii::is_all_ascii(s_))
            fail(Reason::header_8bit_without_smtputf8, "non-ASCII address without SMTPUTF8");
        else if (!is_valid_utf8(s_))
            fail(Reason::address_syntax, "invalid UTF-8");
        else
            list();
        if (err_) return unexpected(std::move(*err_));
        return std::move(out_);
    }

  private:
    int peek() const { return p_ < s_.size() ? static_cast<unsigned char>(s_[p_]) : -1; }

    bool fail(Reason r, std::string_view detail) {
        if (!err_)
            err_ = AddressError{r, std::string(detail) + " (at offset " + std::to_string(p_) + ")"};
        return false;
    }

    bool utf8(int c) const { return c >= 0x80 && opt_.smtputf8; }

    // RFC 5322 3.2.3 atext, RFC 6532 3.2.
    bool is_atext(int c) const {
        if (c < 0) return false;
        if (ascii::is_alnum(static_cast<unsigned char>(c)) || utf8(c)) return true;
        return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
               std::string_view::npos;
    }

    // RFC 5322 3.2.1 quoted-pair = "\" (VCHAR / WSP); obs-qp (controls) refused.
    bool quoted_pair(std::string& out) {
        ++p_;
        int c = peek();
        if (c < 0) return fail(Reason::address_syntax, "backslash at end of field");
        if (!(c >= 0x21 && c <= 0x7e) && c != ' ' && c != '\t' && !utf8(c))
            return fail(Reason::address_syntax, "quoted-pair of a control character (obs-qp)");
        out += static_cast<char>(c);
        ++p_;
        return true;
    }

    // RFC 5322 3.2.2 comment, nested; its text is kept for the look-alike check.
    bool comment() {
        std::size_t depth = 0;
        std::string text;
        for (;;) {
            int c = peek();
            if (c < 0) return fail(Reason::address_syntax, "comment not closed");
            if (c == '(') {
                if (++depth > kMaxCommentDepth)
                    return fail(Reason::address_syntax, "comments nested too deeply");
                if (depth > 1) text += '(';
                ++p_;
            } else if (c == ')') {
                ++p_;
                if (--depth == 0) break;
                text += ')';
            } else if (c == '\\') {
                if (!quoted_pair(text)) return false;
            } else if (c == ' ' || c == '\t' || (c >= 33 && c <= 126) || utf8(c)) {
                text += static_cast<char>(c);  // ctext: '(' ')' '\' handled above
                ++p_;
            } else {
                return fail(Reason::address_syntax, "control character in comment");
            }
        }
        out_.comments.push_back(std::move(text));
        return true;
    }

    // RFC 5322 3.2.2 CFWS. `any` tells whether anything was skipped.
    bool skip_cfws(bool& any) {
        any = false;
        for (;;) {
            int c = peek();
            if (c == ' ' || c == '\t') {
                ++p_;
            } else if (c == '(') {
                if (!comment()) return false;
            } else {
                return true;
            }
            any = true;
        }
    }
    bool skip_cfws() {
        bool any;
        return skip_cfws(any);
    }

    // RFC 5322 3.2.4 quoted-string; obs-qtext (controls) refused.
    bool quoted_string(std::string& out) {
        ++p_;
        for (;;) {
            int c = peek();
            if (c < 0) return fail(Reason::address_syntax, "quoted string not closed");
            if (c == '"') {
                ++p_;
                return true;
            }
            if (c == '\\') {
                if (!quoted_pair(out)) return false;
            } else if (c == ' ' || c == '\t' || (c >= 33 && c <= 126) || utf8(c)) {
                out += static_cast<char>(c);
                ++p_;
            } else {
                return fail(Reason::address_syntax, "control character in quoted string");
            }
        }
    }

    // A run of atoms, quoted strings and dots with the CFWS between them:
    // the raw material of phrase (display-name), local-part and domain.
    bool words(Tokens& toks) {
        bool cfws = false;
        for (;;) {
            int c = peek();
            Token t{TokenKind::atom, {}, cfws};
            if (is_atext(c)) {
                std::size_t start = p_;
                while (is_atext(peek()))
                    ++p_;
                t.text = std::string(s_.substr(start, p_ - start));
            } else if (c == '"') {
                t.kind = TokenKind::quoted;
                if (!quoted_string(t.text)) return false;
            } else if (c == '.') {
                t.kind = TokenKind::dot;
                t.text = ".";
                ++p_;
            } else {
                return true;
            }
            toks.push_back(std::move(t));
            if (!skip_cfws(cfws)) return false;
        }
    }

    // dot-atom-text (RFC 5322 3.2.3) from tokens, refusing the obsolete forms
    // of 4.4 (CFWS around dots, quoted words joined by dots).
    bool dot_atom(const Tokens& toks, std::string& out, std::string_view what) {
        for (std::size_t i = 0; i < toks.size(); ++i) {
            const Token& t = toks[i];
            if (t.kind == TokenKind::quoted)
                return fail(Reason::address_syntax,
                            std::string("quoted string inside a dotted ") + std::string(what));
            bool want_atom = i % 2 == 0;
            // "a@b.example x": a second word after a complete domain is text
            // after the address, not part of it.
            if (what == "domain" && !want_atom && t.kind == TokenKind::atom)
                return fail(Reason::address_trailing_text, "unexpected text after the domain");
            if (i > 0 && t.cfws_before)
                return fail(Reason::address_syntax, std::string("whitespace or comment inside ") +
                                                        std::string(what) + " (obsolete syntax)");
            if ((t.kind == TokenKind::atom) != want_atom)
                return fail(Reason::address_syntax,
                            std::string("misplaced dot in ") + std::string(what));
            out += t.text;
        }
        if (toks.empty() || toks.back().kind == TokenKind::dot)
            return fail(Reason::address_syntax,
                        std::string("empty or dot-terminated ") + std::string(what));
        return true;
    }

    static std::string phrase_text(const Tokens& toks) {
        std::string out;
        for (const Token& t : toks) {
            // Words keep their separation as written: "John Q. Public", but
            // "=?utf-8?q?a.b?=" stays one piece for the encoded-word decoder.
            if (t.cfws_before && !out.empty()) out += ' ';
            out += t.text;
        }
        return out;
    }

    // addr-spec after its local-part tokens, at '@' (RFC 5322 3.4.1).
    bool addr_spec(const Tokens& local_toks, ParsedMailbox& m) {
        if (local_toks.empty()) return fail(Reason::address_syntax, "empty local-part");
        if (local_toks.size() == 1 && local_toks[0].kind == TokenKind::quoted) {
            m.quoted_local_part = true;
            m.local_part = local_toks[0].text;
            // "admin@brand.example"@attacker.example: readers disagree on which
            // @ separates the domain ("Composition Kills" 8).
            if (m.local_part.find('@') != std::string::npos)
                return fail(Reason::address_quoted_at, "quoted local-part contains @");
            if (contains_encoded_word(m.local_part))
                return fail(Reason::address_encoded_word,
                            "encoded-word in local-part (RFC 2047 5)");
            if (m.local_part.empty())
                return fail(Reason::address_syntax, "empty quoted local-part");
            for (unsigned char c : m.local_part)
                if (ascii::is_ctl(c) ||
                    std::string_view("<>,;:()[]\\\"").find(static_cast<char>(c)) !=
                        std::string_view::npos)
                    return fail(Reason::address_syntax,
                                "quoted local-part contains a delimiter or control character");
        } else {
            if (!dot_atom(local_toks, m.local_part, "local-part")) return false;
            if (contains_encoded_word(m.local_part))
                return fail(Reason::address_encoded_word,
                            "encoded-word in local-part (RFC 2047 5)");
        }
        if (first_invisible(m.local_part))
            return fail(Reason::address_syntax, "invisible or space character in local-part");

        ++p_;  // '@'
        if (!skip_cfws()) return false;
        if (peek() == '[')
            return fail(Reason::address_domain_literal, "domain literal (RFC 5322 3.4.1)");
        Tokens dtoks;
        if (!words(dtoks)) return false;
        if (dtoks.empty()) return fail(Reason::address_syntax, "missing domain after @");
        std::string domain;
        if (!dot_atom(dtoks, domain, "domain")) return false;
        if (peek() == '@') return fail(Reason::address_syntax, "more than one @ in address");
        if (contains_encoded_word(domain))
            return fail(Reason::address_encoded_word, "encoded-word in domain (RFC 2047 5)");
        if (first_invisible(domain))
            return fail(Reason::address_invalid_domain, "invisible or space character in domain");
        auto normalized = normalize_domain(domain, opt_.smtputf8);
        if (!normalized) return fail(Reason::address_invalid_domain, to_string(normalized.error()));
        m.domain = std::move(normalized.value());
        return true;
    }

    // angle-addr (RFC 5322 3.4) at '<'; obs-route refused (4.4).
    bool angle_addr(const Tokens& phrase, bool in_group) {
        ParsedMailbox m;
        m.in_group = in_group;
        if (!phrase.empty() && phrase.front().kind == TokenKind::dot)
            return fail(Reason::address_syntax, "display name starts with a dot");
        m.display_name = phrase_text(phrase);
        ++p_;  // '<'
        if (!skip_cfws()) return false;
        int c = peek();
        if (c == '@' || c == ',')
            return fail(Reason::address_route, "source route in angle address (RFC 5322 4.4)");
        if (c == '>') return fail(Reason::address_syntax, "empty address <>");
        Tokens local;
        if (!words(local)) return false;
        if (peek() != '@') {
            if (!local.empty() && peek() == ':')
                return fail(Reason::address_route, "source route or group inside angle brackets");
            return fail(Reason::address_syntax, "address without @ inside angle brackets");
        }
        if (!addr_spec(local, m)) return false;
        if (peek() != '>') return fail(Reason::address_syntax, "angle address not closed with >");
        ++p_;
        if (!skip_cfws()) return false;
        out_.mailboxes.push_back(std::move(m));
        return true;
    }

    bool group(const Tokens& phrase) {
        if (phrase.empty() || phrase.front().kind == TokenKind::dot)
            return fail(Reason::address_syntax, "group without a display name");
        ParsedGroup g{phrase_text(phrase), 0};
        ++p_;  // ':'
        for (;;) {
            if (!skip_cfws()) return false;
            int c = peek();
            if (c == ';') {
                ++p_;
                break;
            }
            if (c < 0) return fail(Reason::address_syntax, "group not closed with ;");
            if (!address(true)) return false;
            ++g.members;
            c = peek();
            if (c == ',') {
                ++p_;
                if (!skip_cfws()) return false;
                if (peek() == ',' || peek() == ';')
                    return fail(Reason::address_syntax, "empty element in group (obs-group-list)");
            } else if (c < 0) {
                return fail(Reason::address_syntax, "group not closed with ;");
            } else if (c != ';') {
                return fail(Reason::address_trailing_text, "unexpected text after the address");
            }
        }
        if (!skip_cfws()) return false;
        out_.groups.push_back(std::move(g));
        return true;
    }

    // address = mailbox / group (RFC 5322 3.4); inside a group only mailbox.
    bool address(bool in_group) {
        if (!skip_cfws()) return false;
        if (peek() == '<') return angle_addr({}, in_group);
        Tokens toks;
        if (!words(toks)) return false;
        int c = peek();
        if (c == '@') {
            ParsedMailbox m;
            m.in_group = in_group;
            if (!addr_spec(toks, m)) return false;
            out_.mailboxes.push_back(std::move(m));
            return true;
        }
        if (c == '<') return angle_addr(toks, in_group);
        if (c == ':') {
            if (in_group) return fail(Reason::address_syntax, "group inside a group");
            return group(toks);
        }
        for (const Token& t : toks)
            if (contains_encoded_word(t.text))
                return fail(Reason::address_encoded_word,
                            "encoded-word where an address is expected (RFC 2047 5)");
        if (toks.empty())
            return fail(Reason::address_syntax, c < 0 ? "missing address" : "unexpected character");
        return fail(Reason::address_syntax, "display name without <address>, or address without @");
    }

    // address-list (RFC 5322 3.4); empty elements (obs-addr-list) refused.
    void list() {
        if (!skip_cfws() || peek() < 0) return;
        for (;;) {
            if (!address(false)) return;
            int c = peek();
            if (c < 0) return;
            if (c != ',') {
                fail(Reason::address_trailing_text, "unexpected text after the address");
                return;
            }
            ++p_;
            if (!skip_cfws()) return;
            if (peek() < 0 || peek() == ',') {
                fail(Reason::address_syntax, "empty element in address list (obs-addr-list)");
                return;
            }
        }
    }

    std::string_view s_;
    std::size_t p_ = 0;
    const AddressOptions& opt_;
    AddressList out_;
    std::optional<AddressError> err_;
};

}  // namespace

Result<AddressList, AddressError> parse_address_list(std::string_view value,
                                                     const AddressOptions& options) {
    return Parser(value, options).run();
}

}  // namespace relaygate::message
