// Header section splitting (RFC 5322 2.2, 3.2.2, 4.5.3) and the originator
// invariants (RFC 5322 3.6 table, 3.6.2, 3.6.6). Anything two readers could
// read differently ("Composition Kills", USENIX Security 2020) is rejected.
#include "gateway/message/header_reader.hpp"

#include <array>
#include <optional>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/message/address_parser.hpp"
#include "gateway/message/lookalike.hpp"

namespace relaygate::message {
namespace {

Result<HeaderFacts, HeaderReject> reject(Reason r, std::string detail) {
    return unexpected(HeaderReject{r, std::move(detail)});
}

// RFC 5322 3.6: fields that may occur at most once. From has its own reason.
constexpr std::array<std::string_view, 10> kSingletons{
    "Date", "Sender",     "Reply-To",    "To",         "Cc",
    "Bcc",  "Message-ID", "In-Reply-To", "References", "Subject"};

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
    while (pos < end) {
        std::size_t eol = pos;
        while (eol < end && in[eol] != '\r' && in[eol] != '\n' && in[eol] != '\0')
            ++eol;
        std::string where = " in header line at byte " + std::to_string(pos);
        if (eol == end)
            return bad(Reason::header_malformed, "last line does not end with CRLF" + where);
        if (in[eol] == '\0') return bad(Reason::header_malformed, "NUL" + where);
        if (in[eol] == '\n') return bad(Reason::header_malformed, "bare LF" + where);
        if (eol + 1 >= end || in[eol + 1] != '\n')
            return bad(Reason::header_malformed, "bare CR" + where);
        std::string_view line = in.substr(pos, eol - pos);
        std::size_t next = eol + 2;
        if (line.empty()) break;  // the empty line that ends the header section

        if (!ascii::is_all_ascii(line)) {
            if (!smtputf8) return bad(Reason::header_8bit_without_smtputf8, "8-bit octet" + where);
            if (!is_valid_utf8(line)) return bad(Reason::header_malformed, "invalid UTF-8" + where);
        }

        if (ascii::is_wsp(static_cast<unsigned char>(line[0]))) {
            // Continuation (RFC 5322 2.2.3). A whitespace-only line is obs-FWS
            // (4.2) and some readers take it as the end of the header: refused.
            if (fields.empty())
                return bad(Reason::header_malformed, "header section starts with whitespace");
            if (line.find_first_not_of(" \t") == std::string_view::npos)
                return bad(Reason::header_malformed, "whitespace-only continuation line" + where);
            HeaderField& f = fields.back();
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
                           "line without a field name and colon (or folded field name)" + where);
            fields.push_back(HeaderField{std::string(line.substr(0, n)),
                                         std::string(line.substr(colon + 1)), pos, next - pos});
        }
        pos = next;
    }
    for (HeaderField& f : fields) {
        std::size_t first = f.value.find_first_not_of(" \t");
        f.value.erase(0, first == std::string::npos ? f.value.size() : first);
    }
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

Result<HeaderFacts, HeaderReject> read_header(std::string_view in, const HeaderOptions& options) {
    HeaderFacts facts;
    facts.header_size = header_end(in);
    if (facts.header_size > options.max_header_bytes)
        return reject(Reason::header_too_big,
                      "header section of " + std::to_string(facts.header_size) + " bytes exceeds " +
                          std::to_string(options.max_header_bytes));
    if (auto e = split_fields(in, facts.header_size, options.smtputf8, facts.fields))
        return unexpected(std::move(*e));

    // Exactly one From (RFC 5322 3.6); "From :" was already named From above.
    std::size_t from_count = facts.count("From");
    if (from_count == 0) return reject(Reason::from_missing, "no From field");
    if (from_count > 1)
        return reject(Reason::from_multiple_fields, std::to_string(from_count) + " From fields");
    for (std::string_view name : kSingletons)
        if (std::size_t n = facts.count(name); n > 1)
            return reject(Reason::duplicate_singleton_field,
                          std::to_string(n) + " " + std::string(name) + " fields");

    // Parse From first so that its reason wins, then the others; the mailboxes
    // are reported in header order.
    std::vector<std::vector<Mailbox>> per_field(facts.fields.size());
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < facts.fields.size(); ++i)
        if (originator_field(facts.fields[i].name) == OriginatorField::from)
            order.insert(order.begin(), i);
        else if (originator_field(facts.fields[i].name))
            order.push_back(i);

    for (std::size_t i : order) {
        const HeaderField& hf = facts.fields[i];
        OriginatorField kind = *originator_field(hf.name);
        std::string field_name(to_string(kind));
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
            std::vector<std::string> own;
            for (const auto& m : list.mailboxes)
                own.push_back(m.domain);
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
            per_field[i].push_back(Mailbox{kind, m.display_name, m.local_part, m.domain});
    }
    for (auto& v : per_field)
        for (auto& m : v)
            facts.originators.push_back(std::move(m));
    return facts;
}

std::string without_fields(std::string_view header_section, const HeaderFacts& facts,
                           std::string_view field_name) {
    std::string out;
    std::size_t end = std::min(facts.header_size, header_section.size());
    out.reserve(end);
    std::size_t pos = 0;
    for (const auto& f : facts.fields) {
        if (!ascii::iequals(f.name, field_name)) continue;
        if (f.offset < pos || f.offset + f.length > end) continue;  // not from these bytes
        out.append(header_section.substr(pos, f.offset - pos));
        pos = f.offset + f.length;
    }
    out.append(header_section.substr(pos, end - pos));
    return out;
}

}  // namespace relaygate::message
