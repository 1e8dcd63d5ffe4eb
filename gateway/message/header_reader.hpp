// The header reader: splits an RFC 5322 header section into fields and
// decides which originator mailboxes the message claims, or rejects it.
// Pure: takes bytes, returns facts or a Reason; no I/O, no exceptions, never
// repairs or truncates the input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/reason.hpp"
#include "gateway/common/result.hpp"

namespace relaygate::message {

// The originator fields of RFC 5322 3.6.2 and 3.6.6.
enum class OriginatorField { from, sender, resent_from, resent_sender };
std::string_view to_string(OriginatorField);  // "From", "Sender", "Resent-From", "Resent-Sender"

struct Mailbox {
    OriginatorField field;
    std::string display_name;  // phrase, unquoted; encoded-words as written
    std::string local_part;    // dot-atom text, or quoted-string content unescaped
    std::string domain;        // lower-case A-labels
    friend bool operator==(const Mailbox&, const Mailbox&) = default;
};

struct HeaderField {
    std::string name;    // as written, without the obsolete WSP before the colon
    std::string value;   // unfolded (CRLF removed), leading WSP trimmed
    std::size_t offset;  // byte range of the whole field, including its final CRLF,
    std::size_t length;  // within the header section
    friend bool operator==(const HeaderField&, const HeaderField&) = default;
};

struct HeaderFacts {
    std::vector<Mailbox> originators;  // every mailbox of From, Sender, Resent-From,
                                       // Resent-Sender, in header order
    std::vector<HeaderField> fields;   // all fields in order
    std::size_t header_size = 0;       // bytes including the empty line that ends it (if present)

    std::size_t count(std::string_view name) const;                     // case-insensitive
    std::vector<std::string_view> values(std::string_view name) const;  // case-insensitive
    // The mailboxes of one originator field kind, in header order.
    std::vector<const Mailbox*> mailboxes(OriginatorField field) const;
    friend bool operator==(const HeaderFacts&, const HeaderFacts&) = default;
};

struct HeaderReject {
    Reason reason;
    std::string detail;  // for logs, not for the SMTP reply
};

struct HeaderOptions {
    bool smtputf8 = false;  // RFC 6531/6532: UTF-8 allowed in header fields
    std::size_t max_header_bytes = 256 * 1024;
    bool allow_multiple_from_mailboxes = false;  // RFC 5322 allows it with a Sender field
    bool allow_display_name_address = false;     // "admin@brand" <x@other>: rejected by default
    // RFC 8601 5: authserv-ids of this gateway and of the signer behind it.
    // An Authentication-Results or ARC-Authentication-Results field that
    // claims one of them (case-insensitive) is refused as forged. The session
    // always includes its own hostname.
    std::vector<std::string> authserv_ids;
};

// Reads the header section at the start of `header_section`: up to and
// including the first empty line, or all of it when there is none. Bytes after
// the empty line (a body) are not looked at.
Result<HeaderFacts, HeaderReject> read_header(std::string_view header_section,
                                              const HeaderOptions& options);
// The same into `facts`, whose content it replaces and whose memory it
// reuses (a session reads one header after another). On a refusal `facts`
// is left empty.
std::optional<HeaderReject> read_header_into(std::string_view header_section,
                                             const HeaderOptions& options, HeaderFacts& facts);

// The header section with every field named `field_name` (case-insensitive)
// removed and every other byte unchanged. `facts` must come from read_header
// on the same bytes. Bytes after facts.header_size are not included.
std::string without_fields(std::string_view header_section, const HeaderFacts& facts,
                           std::string_view field_name);
// The same, appended to `out`.
void append_without_fields(std::string& out, std::string_view header_section,
                           const HeaderFacts& facts, std::string_view field_name);

}  // namespace relaygate::message
