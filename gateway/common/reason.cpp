// The reason table itself. Codes follow RFC 5321 4.2.2/4.2.3 and RFC 3463;
// the texts say what a legitimate sender should change.
#include "gateway/common/reason.hpp"

#include <array>

namespace relaygate {
namespace {

using R = Reason;
constexpr std::array kTable{
    ReasonInfo{R::accepted, "accepted", 250, "2.0.0", "OK"},

    ReasonInfo{R::syntax_error, "syntax_error", 500, "5.5.2", "Syntax error, command unrecognized"},
    ReasonInfo{R::bad_arguments, "bad_arguments", 501, "5.5.4",
               "Syntax error in parameters or arguments"},
    ReasonInfo{R::command_not_implemented, "command_not_implemented", 502, "5.5.1",
               "Command not implemented"},
    ReasonInfo{R::parameter_not_implemented, "parameter_not_implemented", 504, "5.5.4",
               "Command parameter not implemented"},
    ReasonInfo{R::bad_sequence, "bad_sequence", 503, "5.5.1", "Bad sequence of commands"},
    ReasonInfo{R::line_too_long, "line_too_long", 500, "5.5.2",
               "Line too long (RFC 5321 4.5.3.1.4 allows 512 octets per command line)"},
    ReasonInfo{R::bare_line_ending_in_command, "bare_line_ending", 500, "5.5.2",
               "Commands must end with CRLF; bare CR, bare LF and NUL are not accepted"},
    ReasonInfo{R::pipelining_violation, "pipelining_violation", 554, "5.5.0",
               "SMTP protocol synchronization error: do not send data before the 354 reply"},
    ReasonInfo{R::message_too_big, "message_too_big", 552, "5.3.4",
               "Message size exceeds the fixed limit"},
    ReasonInfo{R::too_many_recipients, "too_many_recipients", 452, "4.5.3",
               "Too many recipients; send the rest in another transaction"},
    ReasonInfo{R::smtputf8_required, "smtputf8_required", 553, "5.6.7",
               "Internationalized address requires the SMTPUTF8 parameter"},
    ReasonInfo{R::data_bare_line_ending, "data_bare_line_ending", 554, "5.6.0",
               "Message contains a bare CR or bare LF; lines must end with CRLF"},
    ReasonInfo{R::data_nul, "data_nul", 554, "5.6.0", "Message contains a NUL octet"},
    ReasonInfo{R::data_line_too_long, "data_line_too_long", 554, "5.6.0",
               "Message contains a line longer than 1000 octets (RFC 5321 4.5.3.1.6)"},
    ReasonInfo{R::too_many_errors, "too_many_errors", 421, "4.7.0",
               "Too many errors, closing connection"},
    ReasonInfo{R::timeout, "timeout", 421, "4.4.2", "Timeout, closing connection"},
    ReasonInfo{R::data_too_slow, "data_too_slow", 421, "4.4.2",
               "Data transfer too slow, closing connection"},
    ReasonInfo{R::shutting_down, "shutting_down", 421, "4.3.2",
               "Service shutting down, try again later"},
    ReasonInfo{R::tls_required, "tls_required", 530, "5.7.0",
               "Must issue a STARTTLS command first"},
    ReasonInfo{R::auth_failed, "auth_failed", 535, "5.7.8", "Authentication credentials invalid"},
    ReasonInfo{R::too_many_connections, "too_many_connections", 421, "4.7.0",
               "Too many connections, try again later"},
    ReasonInfo{R::bad_sender_syntax, "bad_sender_syntax", 501, "5.1.7",
               "Bad sender address syntax; use MAIL FROM:<local-part@domain>"},
    ReasonInfo{R::bad_recipient_syntax, "bad_recipient_syntax", 501, "5.1.3",
               "Bad recipient address syntax; use RCPT TO:<local-part@domain>"},
    ReasonInfo{R::path_too_long, "path_too_long", 501, "5.5.4",
               "Address too long (RFC 5321 4.5.3.1: local-part 64, domain 255, path 256 octets)"},
    ReasonInfo{R::parameter_unrecognized, "parameter_unrecognized", 555, "5.5.4",
               "MAIL FROM/RCPT TO parameter not recognized or not implemented"},

    ReasonInfo{R::header_malformed, "header_malformed", 550, "5.6.0",
               "Message header section is malformed (RFC 5322 2.2)"},
    ReasonInfo{R::header_too_big, "header_too_big", 552, "5.3.4",
               "Message header section is too large"},
    ReasonInfo{R::header_8bit_without_smtputf8, "header_8bit_without_smtputf8", 550, "5.6.7",
               "Non-ASCII header requires SMTPUTF8"},
    ReasonInfo{R::from_missing, "from_missing", 550, "5.6.0",
               "Message must have a From header field"},
    ReasonInfo{R::from_multiple_fields, "from_multiple_fields", 550, "5.6.0",
               "Message must have exactly one From header field"},
    ReasonInfo{R::from_multiple_mailboxes, "from_multiple_mailboxes", 550, "5.6.0",
               "From header field must contain exactly one mailbox"},
    ReasonInfo{R::from_empty, "from_empty", 550, "5.6.0", "From header field has no address"},
    ReasonInfo{R::duplicate_singleton_field, "duplicate_singleton_field", 550, "5.6.0",
               "Message has a header field more than once that may occur only once (RFC 5322 3.6)"},
    ReasonInfo{R::address_syntax, "address_syntax", 550, "5.1.7",
               "Originator address syntax is invalid"},
    ReasonInfo{R::address_route, "address_route", 550, "5.1.7",
               "Source routes are not accepted in originator addresses"},
    ReasonInfo{R::address_quoted_at, "address_quoted_at", 550, "5.1.7",
               "Quoted local-part containing @ is not accepted"},
    ReasonInfo{R::address_domain_literal, "address_domain_literal", 550, "5.1.7",
               "Address literals cannot be authorized; use a domain name"},
    ReasonInfo{R::address_encoded_word, "address_encoded_word", 550, "5.1.7",
               "Encoded-words are not allowed inside an address (RFC 2047 5)"},
    ReasonInfo{R::address_trailing_text, "address_trailing_text", 550, "5.1.7",
               "Unexpected text after the originator address"},
    ReasonInfo{R::address_invalid_domain, "address_invalid_domain", 550, "5.1.8",
               "Originator domain is invalid"},
    ReasonInfo{R::display_name_address, "display_name_address", 550, "5.7.1",
               "Display name looks like an address of another domain; use a plain name"},
    ReasonInfo{R::address_group, "address_group", 550, "5.1.7",
               "Group syntax is not accepted in originator fields; name one mailbox"},
    ReasonInfo{R::duplicate_mime_field, "duplicate_mime_field", 550, "5.6.0",
               "Message has more than one MIME-Version, Content-Type, Content-Transfer-Encoding, "
               "Content-ID or Content-Description field (RFC 2045); send at most one of each"},
    ReasonInfo{R::dkim_signature_malformed, "dkim_signature_malformed", 550, "5.7.7",
               "A DKIM-Signature field does not parse (RFC 6376 3.5); remove or fix it"},
    ReasonInfo{R::authentication_results_forged, "authentication_results_forged", 550, "5.7.1",
               "Authentication-Results or ARC fields claim this relay's authentication "
               "service; remove them before sending"},

    ReasonInfo{R::tenant_unknown, "tenant_unknown", 550, "5.7.1",
               "Relay access denied: the connection is not identified as any customer "
               "(use your client certificate, SMTP AUTH or your dedicated network)"},
    ReasonInfo{R::tenant_ambiguous, "tenant_ambiguous", 550, "5.7.1",
               "Relay access denied: the connection matches more than one customer"},
    ReasonInfo{R::envelope_domain_unauthorized, "envelope_domain_unauthorized", 550, "5.7.1",
               "Sender domain is not authorized for your account"},
    ReasonInfo{R::from_domain_unauthorized, "from_domain_unauthorized", 550, "5.7.1",
               "From header domain is not authorized for your account"},
    ReasonInfo{R::sender_domain_unauthorized, "sender_domain_unauthorized", 550, "5.7.1",
               "Sender header domain is not authorized for your account"},
    ReasonInfo{R::resent_domain_unauthorized, "resent_domain_unauthorized", 550, "5.7.1",
               "Resent-From/Resent-Sender domain is not authorized for your account"},
    ReasonInfo{R::null_sender_not_allowed, "null_sender_not_allowed", 550, "5.7.1",
               "Null reverse-path is not allowed for your account"},
    ReasonInfo{R::provider_attestation_failed, "provider_attestation_failed", 550, "5.7.1",
               "Provider tenant attestation missing or does not match your account"},
    ReasonInfo{R::domain_not_verified, "domain_not_verified", 550, "5.7.1",
               "Domain is not verified in DNS for your account"},
    ReasonInfo{R::provider_dkim_unverified, "provider_dkim_unverified", 550, "5.7.20",
               "No valid DKIM signature from your provider account's signing domain"},

    ReasonInfo{R::rate_limited_messages, "rate_limited_messages", 450, "4.7.1",
               "Message rate limit reached for your account; try again later"},
    ReasonInfo{R::rate_limited_recipients, "rate_limited_recipients", 452, "4.5.3",
               "Recipient rate limit reached for your account; send the rest later"},
    ReasonInfo{R::rate_limited_bytes, "rate_limited_bytes", 450, "4.7.1",
               "Data volume limit reached for your account; try again later"},
    ReasonInfo{R::anomaly_hold, "anomaly_hold", 450, "4.7.1",
               "Unusual sending volume for your account is held for review; try again later"},

    ReasonInfo{R::dns_tempfail, "dns_tempfail", 451, "4.4.3",
               "Temporary DNS failure, try again later"},
    ReasonInfo{R::upstream_unavailable, "upstream_unavailable", 451, "4.4.1",
               "Relay temporarily unavailable, try again later"},
    ReasonInfo{R::upstream_failed, "upstream_failed", 451, "4.4.2",
               "Relay connection failed, try again later"},
    ReasonInfo{R::upstream_timeout, "upstream_timeout", 451, "4.4.2",
               "Relay did not answer in time, try again later"},
    ReasonInfo{R::local_error, "local_error", 451, "4.3.0",
               "Local error in processing, try again later"},
    ReasonInfo{R::rate_limit_unavailable, "rate_limit_unavailable", 451, "4.3.0",
               "Rate limit service temporarily unavailable, try again later"},

    ReasonInfo{R::no_valid_recipients, "no_valid_recipients", 554, "5.5.1", "No valid recipients"},
    ReasonInfo{R::upstream_rejected, "upstream_rejected", 550, "5.0.0", "Rejected by the relay"},
    ReasonInfo{R::auth_encryption_required, "auth_encryption_required", 538, "5.7.11",
               "Encryption required for requested authentication mechanism; use STARTTLS first"},
    ReasonInfo{R::auth_mechanism_unsupported, "auth_mechanism_unsupported", 504, "5.5.4",
               "Unrecognized authentication type; use PLAIN or LOGIN"},
    ReasonInfo{R::auth_cancelled, "auth_cancelled", 501, "5.0.0", "Authentication cancelled"},
    ReasonInfo{R::auth_bad_encoding, "auth_bad_encoding", 501, "5.5.2",
               "Cannot decode the authentication response (base64)"},
    ReasonInfo{R::untrusted_proxy, "untrusted_proxy", 421, "4.7.0",
               "PROXY protocol header not accepted from this address"},
    ReasonInfo{R::proxy_header_invalid, "proxy_header_invalid", 421, "4.7.0",
               "Invalid PROXY protocol header"},
    ReasonInfo{R::auth_throttled, "auth_throttled", 454, "4.7.0",
               "Too many failed authentication attempts; wait and try again later"},
    ReasonInfo{R::auth_throttled_close, "auth_throttled_close", 421, "4.7.0",
               "Too many failed authentication attempts from your address, closing connection"},
    ReasonInfo{R::auth_busy, "auth_busy", 454, "4.7.0",
               "Too many authentication attempts in progress; try again in a few seconds"},
    ReasonInfo{R::client_disconnected, "client_disconnected", 421, "4.4.2",
               "Connection lost during the transaction"},
    ReasonInfo{R::session_lifetime_exceeded, "session_lifetime_exceeded", 421, "4.7.0",
               "Session open too long; reconnect to continue"},
    ReasonInfo{R::too_many_transactions, "too_many_transactions", 421, "4.7.0",
               "Too many transactions in one session; reconnect to continue"},
    ReasonInfo{R::transaction_reset, "transaction_reset", 250, "2.0.0", "OK"},
};

constexpr bool table_in_enum_order() {
    for (std::size_t i = 0; i < kTable.size(); ++i)
        if (static_cast<std::size_t>(kTable[i].reason) != i) return false;
    return true;
}
static_assert(table_in_enum_order(), "kTable rows must follow the Reason enum order");
static_assert(kTable.back().reason == Reason::transaction_reset, "every Reason needs a row");

}  // namespace

const ReasonInfo& info(Reason r) {
    return kTable[static_cast<std::size_t>(r)];
}

std::span<const ReasonInfo> all_reasons() {
    return kTable;
}

std::optional<Reason> reason_from_label(std::string_view label) {
    for (const auto& row : kTable)
        if (row.label == label) return row.reason;
    return std::nullopt;
}

}  // namespace relaygate
