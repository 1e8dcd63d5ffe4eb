// Header section splitting (RFC 5322 2.2, 3.2.2, 4.5.3), the originator
// invariants (RFC 5322 3.6 table, 3.6.2, 3.6.6), the RFC 2045 singletons and
// forged authentication results (RFC 8601 5). Anything two readers could
// read differently ("Composition Kills", USENIX Security 2020) is rejected.
#include "gateway/message/header_reader.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <span>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/message/address_parser.hpp"
#include "gateway/message/lookalike.hpp"

namespace relaygate::message {
namespace {

HeaderReject reject(Reason r, std::string detail) {
    return HeaderReject{r, std::move(detail)};
}

// RFC 5322 3.6: fields that may occur at most once. From has its own reason.
constexpr std::array<std::string_view, 10> kSingletons{
    "Date", "Sender",     "Reply-To",    "To",         "Cc",
    "Bcc",  "Message-ID", "In-Reply-To", "References", "Subject"};

// RFC 2045 3: MIME-message-headers = entity-headers fields version, and
// entity-headers = [content] [encoding] [id] [description] *MIME-extension-field:
// MIME-Version, Content-Type, Content-Transfer-Encoding, Content-ID and
// Content-Description at most once each in the top-level header (a missing
// MIME-Version is not ambiguous, so it is not required). Content-Disposition
// (RFC 2183 2) is a MIME-extension-field, which RFC 2045 lets repeat: not listed.
constexpr std::array<std::string_view, 5> kMimeSingletons{"MIME-Version", "Content-Type",
                                                          "Content-Transfer-Encoding", "Content-ID",
                                                          "Content-Description"};

std::optional<OriginatorField> originator_field(std::string_view name) {
    for (auto f : {OriginatorField::from, OriginatorField::sender, OriginatorField::resent_from,
                   OriginatorField::resent_sender})
        if (ascii::iequals(name, to_string(f))) return f;
    return std::nullopt;
}

// End of the header section: just past the first empty line, or the end of
// input. Same rule as HeaderCollector: only CRLF CRLF counts.
std::size_t header_end(std::string_view in) {
    if (in.starts_with("\r\n")) return 2;
    std::size_t hit = in.find("\r\n\r\n");
    return hit == std::string_view::npos ? in.size() : hit + 4;
}

// Splits lines and fields. Every line must end in CRLF; NUL, bare CR and bare
// LF are refused (RFC 5322 2.2, 2.3; they end lines for some readers only).
std::optional<HeaderReject> split_fields(std::string_view in, std::size_t end, bool smtputf8,
                                         std::vector<HeaderField>& fields) {
    auto bad = [](Reason r, std::string d) {
        return std::optional<HeaderReject>({r, std::move(d)});
    };
    std::size_t pos = 0;
    // Fields already in `fields` (an earlier message's) are overwritten in
    // place; the usual ones fit without growing (and copying) the vector.
    std::size_t count = 0;
    fields.reserve(16);
    while (pos < end) {
        std::size_t eol = pos;
        while (eol < end && in[eol] != '\r' && in[eol] != '\n' && in[eol] != '\0')
            ++eol;
        // Only for a refusal's text: not built for every line.
        const auto where = [pos] { return " in header line at byte " + std::to_string(pos); };
        if (eol == end)
            return bad(Reason::header_malformed, "last line does not end with CRLF" + where());
        if (in[eol] == '\0') return bad(Reason::header_malformed, "NUL" + where());
        if (in[eol] == '\n') return bad(Reason::header_malformed, "bare LF" + where());
        if (eol + 1 >= end || in[eol + 1] != '\n')
            return bad(Reason::header_malformed, "bare CR" + where());
        std::string_view line = in.substr(pos, eol - pos);
        std::size_t next = eol + 2;
        if (line.empty()) break;  // the empty line that ends the header section

        if (!ascii::is_all_ascii(line)) {
            if (!smtputf8)
                return bad(Reason::header_8bit_without_smtputf8, "8-bit octet" + where());
            if (!is_valid_utf8(line))
                return bad(Reason::header_malformed, "invalid UTF-8" + where());
        }

        if (ascii::is_wsp(static_cast<unsigned char>(line[0]))) {
            // Continuation (RFC 5322 2.2.3). A whitespace-only line is obs-FWS
            // (4.2) and some readers take it as the end of the header: refused.
            if (count == 0)
                return bad(Reason::header_malformed, "header section starts with whitespace");
            if (line.find_first_not_of(" \t") == std::string_view::npos)
                return bad(Reason::header_malformed, "whitespace-only continuation line" + where());
            HeaderField& f = fields[count - 1];
            f.value.append(line);
            f.length = next - f.offset;
        } else {
            // field-name = 1*ftext (RFC 5322 3.6.8), then obs *WSP (4.5.3), then ':'.
            std::size_t n = 0;
            while (n < line.size() && line[n] >= 33 && line[n] <= 126 && line[n] != ':')
                ++n;
            std::size_t colon = n;
            while (colon < line.size() && ascii::is_wsp(static_cast<unsigned char>(line[colon])))
                ++colon;
            if (n == 0 || colon >= line.size() || line[colon] != ':')
                return bad(Reason::header_malformed,
                           "line without a field name and colon (or folded field name)" + where());
            if (count == fields.size()) fields.emplace_back();
            HeaderField& f = fields[count++];  // its strings' memory reused
            f.name.assign(line.substr(0, n));
            f.value.assign(line.substr(colon + 1));
            f.offset = pos;
            f.length = next - pos;
        }
        pos = next;
    }
    fields.resize(count);
    for (HeaderField& f : fields) {
        std::size_t first = f.value.find_first_not_of(" \t");
        f.value.erase(0, first == std::string::npos ? f.value.size() : first);
    }
    return std::nullopt;
}

// --- Authentication-Results (RFC 8601 2.2), ARC-Authentication-Results (RFC 8617 4.1.1)

constexpr std::size_t kMaxCommentDepth = 32;  // as in address_parser.cpp

// Skips one comment starting at s[i] == '(' (RFC 5322 3.2.2: nested, with
// quoted-pairs). False for an unclosed comment or nesting over the bound.
bool skip_comment(std::string_view s, std::size_t& i) {
    std::size_t depth = 0;
    for (; i < s.size(); ++i) {
        if (s[i] == '\\') {
            if (++i == s.size()) return false;
        } else if (s[i] == '(') {
            if (++depth > kMaxCommentDepth) return false;
        } else if (s[i] == ')' && --depth == 0) {
            ++i;
            return true;
        }
    }
    return false;
}

// [CFWS] over an unfolded value: WSP and comments.
bool skip_cfws(std::string_view s, std::size_t& i) {
    while (i < s.size()) {
        if (ascii::is_wsp(static_cast<unsigned char>(s[i])))
            ++i;
        else if (s[i] != '(')
            return true;
        else if (!skip_comment(s, i))
            return false;
    }
    return true;
}

// RFC 2045 5.1 token: US-ASCII except SPACE, CTLs and tspecials. UTF-8 octets
// (only present under SMTPUTF8) are kept in the token so that a U-label is
// seen whole.
bool is_token_char(unsigned char c) {
    if (c >= 0x80) return true;
    return c > 0x20 && c < 0x7f &&
           std::string_view("()<>@,;:\\\"/[]?=").find(static_cast<char>(c)) ==
               std::string_view::npos;
}

// RFC 2045 5.1 value = token / quoted-string (RFC 5322 3.2.4), unquoted.
std::optional<std::string> read_value(std::string_view s, std::size_t& i) {
    if (i < s.size() && s[i] == '"') {
        std::string out;
        for (++i; i < s.size(); ++i) {
            if (s[i] == '"') {
                ++i;
                return out;
            }
            if (s[i] == '\\' && ++i == s.size()) break;
            out += s[i];
        }
        return std::nullopt;  // unclosed
    }
    std::size_t start = i;
    while (i < s.size() && is_token_char(static_cast<unsigned char>(s[i])))
        ++i;
    if (i == start) return std::nullopt;
    return std::string(s.substr(start, i - start));
}

// RFC 8601 2.2: authres-payload = [CFWS] authserv-id [CFWS authres-version]
// (no-result / 1*resinfo), authres-version = 1*DIGIT [CFWS], and both
// no-result and resinfo start with [CFWS] ";". Only the part up to that ";"
// is read: it alone names the authserv-id, and a field that claims ours is
// forged whatever its results say. nullopt when that part does not parse.
std::optional<std::string> authserv_id(std::string_view v, std::size_t i) {
    if (!skip_cfws(v, i)) return std::nullopt;
    auto id = read_value(v, i);
    if (!id) return std::nullopt;
    const std::size_t after_id = i;
    if (!skip_cfws(v, i)) return std::nullopt;
    if (i > after_id && i < v.size() && ascii::is_digit(static_cast<unsigned char>(v[i]))) {
        while (i < v.size() && ascii::is_digit(static_cast<unsigned char>(v[i])))
            ++i;
        if (!skip_cfws(v, i)) return std::nullopt;
    }
    if (i == v.size() || v[i] != ';') return std::nullopt;
    return id;
}

// RFC 8617 4.1.1: [CFWS] "i" [CFWS] "=" [CFWS] 1*DIGIT [CFWS] ";" authres-payload.
std::optional<std::string> arc_authserv_id(std::string_view v) {
    std::size_t i = 0;
    auto expect = [&](char c) {
        if (!skip_cfws(v, i) || i == v.size() || v[i] != c) return false;
        ++i;
        return true;
    };
    if (!expect('i') || !expect('=') || !skip_cfws(v, i)) return std::nullopt;
    const std::size_t digits = i;
    while (i < v.size() && ascii::is_digit(static_cast<unsigned char>(v[i])))
        ++i;
    if (i == digits || !expect(';')) return std::nullopt;
    return authserv_id(v, i);
}

// What a reader without the grammar (a regular expression for a host name, a
// split on ";") takes for the authserv-id: the first run of letters, digits,
// ".", "-", "_" or UTF-8, with comments skipped or not.
std::string_view first_word(std::string_view v, bool skip_comments) {
    auto word_char = [](unsigned char c) {
        return ascii::is_alnum(c) || c == '.' || c == '-' || c == '_' || c >= 0x80;
    };
    std::size_t i = 0;
    while (i < v.size()) {
        if (skip_comments && v[i] == '(') {
            std::size_t j = i;
            if (skip_comment(v, j)) {
                i = j;
                continue;
            }
        }
        if (word_char(static_cast<unsigned char>(v[i]))) {
            const std::size_t start = i;
            while (i < v.size() && word_char(static_cast<unsigned char>(v[i])))
                ++i;
            return v.substr(start, i - start);
        }
        ++i;
    }
    return {};
}

// The configured id that `claimed` names, if any. RFC 8601 2.5: authserv-ids
// compare case-insensitively; a trailing dot and a U-label spelling of an
// A-label id are taken as the same id too. The IDNA conversion (libidn2, the
// costly part) runs only for a non-ASCII claim against an id with an A-label.
std::optional<std::string> matching_id(std::string_view claimed,
                                       const std::vector<std::string>& ids) {
    auto strip = [](std::string_view s) {
        return s.ends_with('.') ? s.substr(0, s.size() - 1) : s;
    };
    auto has_alabel = [](std::string_view s) {
        for (std::size_t p = 0; p + 4 <= s.size(); ++p)
            if (ascii::istarts_with(s.substr(p), "xn--")) return true;
        return false;
    };
    claimed = strip(claimed);
    if (claimed.empty()) return std::nullopt;
    const bool unicode = !ascii::is_all_ascii(claimed);
    std::optional<std::string> alabel;
    for (const auto& id : ids) {
        const std::string_view want = strip(id);
        if (want.empty()) continue;
        if (ascii::iequals(claimed, want)) return id;
        if (!unicode || !has_alabel(want)) continue;
        if (!alabel) {
            auto a = normalize_domain(claimed, true);
            alabel = a.ok() ? std::move(a).value() : std::string();
        }
        if (!alabel->empty() && ascii::iequals(*alabel, want)) return id;
    }
    return std::nullopt;
}

// The configured authserv-id that an Authentication-Results or
// ARC-Authentication-Results field claims, if any. Fail-closed: the field
// claims an id when the strict reading or a careless one finds it; a field
// that does not parse strictly is not forged for that alone (another
// verifier's broken field names nobody's authserv-id that we would trust).
std::optional<std::string> claimed_authserv_id(const HeaderField& f,
                                               const std::vector<std::string>& ids) {
    const bool arc = ascii::iequals(f.name, "ARC-Authentication-Results");
    if (ids.empty() || (!arc && !ascii::iequals(f.name, "Authentication-Results")))
        return std::nullopt;
    std::string_view v = f.value;
    std::vector<std::string_view> candidates{first_word(v, true), first_word(v, false)};
    const auto strict = arc ? arc_authserv_id(v) : authserv_id(v, 0);
    if (strict) candidates.push_back(*strict);
    if (arc && v.find(';') != std::string_view::npos) {
        // An AAR names its authserv-id after "i=N;".
        std::string_view rest = v.substr(v.find(';') + 1);
        candidates.push_back(first_word(rest, true));
        candidates.push_back(first_word(rest, false));
    }
    for (auto c : candidates)
        if (auto id = matching_id(c, ids)) return id;
    return std::nullopt;
}

}  // namespace

std::string_view to_string(OriginatorField f) {
    switch (f) {
        case OriginatorField::from:
            return "From";
        case OriginatorField::sender:
            return "Sender";
        case OriginatorField::resent_from:
            return "Resent-From";
        case OriginatorField::resent_sender:
            return "Resent-Sender";
    }
    return "From";
}

std::size_t HeaderFacts::count(std::string_view name) const {
    std::size_t n = 0;
    for (const auto& f : fields)
        if (ascii::iequals(f.name, name)) ++n;
    return n;
}

std::vector<std::string_view> HeaderFacts::values(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& f : fields)
        if (ascii::iequals(f.name, name)) out.emplace_back(f.value);
    return out;
}

std::vector<const Mailbox*> HeaderFacts::mailboxes(OriginatorField field) const {
    std::vector<const Mailbox*> out;
    for (const auto& m : originators)
        if (m.field == field) out.push_back(&m);
    return out;
}

namespace {

std::optional<HeaderReject> read_into(std::string_view in, const HeaderOptions& options,
                                      HeaderFacts& facts) {
    facts.originators.clear();
    facts.header_size = header_end(in);
    if (facts.header_size > options.max_header_bytes)
        return reject(Reason::header_too_big,
                      "header section of " + std::to_string(facts.header_size) + " bytes exceeds " +
                          std::to_string(options.max_header_bytes));
    if (auto e = split_fields(in, facts.header_size, options.smtputf8, facts.fields)) return e;

    // Exactly one From (RFC 5322 3.6); "From :" was already named From above.
    std::size_t from_count = facts.count("From");
    if (from_count == 0) return reject(Reason::from_missing, "no From field");
    if (from_count > 1)
        return reject(Reason::from_multiple_fields, std::to_string(from_count) + " From fields");
    for (std::string_view name : kSingletons)
        if (std::size_t n = facts.count(name); n > 1)
            return reject(Reason::duplicate_singleton_field,
                          std::to_string(n) + " " + std::string(name) + " fields");
    for (std::string_view name : kMimeSingletons)
        if (std::size_t n = facts.count(name); n > 1)
            return reject(Reason::duplicate_mime_field,
                          std::to_string(n) + " " + std::string(name) + " fields");
    // RFC 8601 5: results claiming this gateway's or the signer's
    // authserv-id are refused, not removed (gateway/message/README.md).
    for (const auto& f : facts.fields)
        if (auto id = claimed_authserv_id(f, options.authserv_ids))
            return reject(Reason::authentication_results_forged,
                          f.name + " claims authserv-id " + *id);

    // Parse From first so that its reason wins, then the others in header
    // order; From's mailboxes then go back to their place in header order.
    std::size_t from_index = 0;
    while (originator_field(facts.fields[from_index].name) != OriginatorField::from)
        ++from_index;                // exactly one From, counted above
    std::size_t from_mailboxes = 0;  // parsed first
    std::size_t before_from = 0;     // mailboxes of originator fields above From
    for (std::size_t step = 0; step <= facts.fields.size(); ++step) {
        const std::size_t i = step == 0 ? from_index : step - 1;
        if (step > 0 && i == from_index) continue;
        const HeaderField& hf = facts.fields[i];
        const auto field = originator_field(hf.name);
        if (!field) continue;
        const OriginatorField kind = *field;
        const std::string field_name(to_string(kind));  // short: no allocation
        auto parsed = parse_address_list(hf.value, AddressOptions{options.smtputf8});
        if (!parsed)
            return reject(parsed.error().reason, field_name + ": " + parsed.error().detail);
        const AddressList& list = parsed.value();
        if (kind == OriginatorField::from) {
            // RFC 6854 allows an empty group ("undisclosed:;") in From: it names
            // no mailbox, so there is nothing to authorize.
            if (list.mailboxes.empty()) return reject(Reason::from_empty, "From names no mailbox");
            if (!list.groups.empty()) return reject(Reason::address_group, "From: group syntax");
            if (list.mailboxes.size() > 1) {
                if (!options.allow_multiple_from_mailboxes)
                    return reject(Reason::from_multiple_mailboxes,
                                  std::to_string(list.mailboxes.size()) + " mailboxes in From");
                // RFC 5322 3.6.2: with more than one From mailbox, Sender MUST appear.
                if (facts.count("Sender") == 0)
                    return reject(Reason::from_multiple_mailboxes,
                                  "several From mailboxes without a Sender field");
            }
        } else {
            if (!list.groups.empty())
                return reject(Reason::address_group, field_name + ": group syntax");
            if (list.mailboxes.empty())
                return reject(Reason::address_syntax, field_name + ": no mailbox");
            bool single = kind != OriginatorField::resent_from;
            if (single && list.mailboxes.size() > 1)
                return reject(Reason::address_syntax,
                              field_name + " takes exactly one mailbox (RFC 5322 3.6.2, 3.6.6)");
        }

        if (!options.allow_display_name_address) {
            boost::container::small_vector<std::string_view, 4> domains;
            for (const auto& m : list.mailboxes)
                domains.emplace_back(m.domain);
            const std::span<const std::string_view> own(domains.data(), domains.size());
            for (const auto& m : list.mailboxes) {
                if (decode_encoded_words(m.display_name).opaque_charset)
                    return reject(
                        Reason::address_encoded_word,
                        field_name + ": display name in a charset that cannot be checked");
                if (auto d = foreign_address_domain(m.display_name, own))
                    return reject(Reason::display_name_address,
                                  field_name + ": display name names domain " + *d);
            }
            for (const auto& c : list.comments) {
                if (decode_encoded_words(c).opaque_charset)
                    return reject(Reason::address_encoded_word,
                                  field_name + ": comment in a charset that cannot be checked");
                if (auto d = foreign_address_domain(c, own))
                    return reject(Reason::display_name_address,
                                  field_name + ": comment names domain " + *d);
            }
        }
        for (const auto& m : list.mailboxes)
            facts.originators.push_back(Mailbox{kind, m.display_name, m.local_part, m.domain});
        if (step == 0)
            from_mailboxes = list.mailboxes.size();
        else if (i < from_index)
            before_from += list.mailboxes.size();
    }
    auto first = facts.originators.begin();
    std::rotate(first, first + from_mailboxes, first + from_mailboxes + before_from);
    return std::nullopt;
}

}  // namespace

Result<HeaderFacts, HeaderReject> read_header(std::string_view in, const HeaderOptions& options) {
    HeaderFacts facts;
    if (auto e = read_into(in, options, facts)) return unexpected(std::move(*e));
    return facts;
}

std::optional<HeaderReject> read_header_into(std::string_view in, const HeaderOptions& options,
                                             HeaderFacts& facts) {
    auto e = read_into(in, options, facts);
    if (e) facts = {};  // nothing of a refused header is left to read
    return e;
}

std::string without_fields(std::string_view header_section, const HeaderFacts& facts,
                           std::string_view field_name) {
    std::string out;
    append_without_fields(out, header_section, facts, field_name);
    return out;
}

void append_without_fields(std::string& out, std::string_view header_section,
                           const HeaderFacts& facts, std::string_view field_name) {
    std::size_t end = std::min(facts.header_size, header_section.size());
    out.reserve(out.size() + end);
    std::size_t pos = 0;
    for (const auto& f : facts.fields) {
        if (!ascii::iequals(f.name, field_name)) continue;
        if (f.offset < pos || f.offset + f.length > end) continue;  // not from these bytes
        out.append(header_section.substr(pos, f.offset - pos));
        pos = f.offset + f.length;
    }
    out.append(header_section.substr(pos, end - pos));
}

}  // namespace relaygate::message
