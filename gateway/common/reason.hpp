// The reason table: every decision relaygate can take, with its SMTP reply,
// enhanced status code (RFC 3463, RFC 7372) and metric label, in one place.
// Protocol, message and policy code name a Reason; only this table turns it
// into words and numbers. Texts tell a legitimate sender what to fix and
// never reveal internal details.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace relaygate {

enum class Reason : std::uint8_t {
    accepted,

    // --- SMTP protocol (gateway/smtp) ---
    syntax_error,
    bad_arguments,
    command_not_implemented,
    parameter_not_implemented,
    bad_sequence,
    line_too_long,
    bare_line_ending_in_command,
    pipelining_violation,
    message_too_big,
    too_many_recipients,
    smtputf8_required,
    data_bare_line_ending,
    data_nul,
    data_line_too_long,
    too_many_errors,
    timeout,
    data_too_slow,
    shutting_down,
    tls_required,
    auth_failed,
    too_many_connections,
    bad_sender_syntax,
    bad_recipient_syntax,
    path_too_long,
    parameter_unrecognized,

    // --- message originators (gateway/message) ---
    header_malformed,
    header_too_big,
    header_8bit_without_smtputf8,
    from_missing,
    from_multiple_fields,
    from_multiple_mailboxes,
    from_empty,
    duplicate_singleton_field,
    address_syntax,
    address_route,
    address_quoted_at,
    address_domain_literal,
    address_encoded_word,
    address_trailing_text,
    address_invalid_domain,
    display_name_address,
    address_group,
    duplicate_mime_field,
    dkim_signature_malformed,
    authentication_results_forged,

    // --- policy decisions (policy/engine) ---
    tenant_unknown,
    tenant_ambiguous,
    envelope_domain_unauthorized,
    from_domain_unauthorized,
    sender_domain_unauthorized,
    resent_domain_unauthorized,
    null_sender_not_allowed,
    provider_attestation_failed,
    domain_not_verified,
    provider_dkim_unverified,

    // --- volume control (gateway/ratelimit): never 5xx, the sender retries ---
    rate_limited_messages,
    rate_limited_recipients,
    rate_limited_bytes,
    anomaly_hold,  // on_spike "hold": the tenant's unusual volume waits for an operator

    // --- infrastructure faults: always 4xx so the sender retries ---
    dns_tempfail,
    upstream_unavailable,
    upstream_failed,
    upstream_timeout,
    local_error,
    rate_limit_unavailable,  // the shared limit store failed (on_error fail_closed)

    // --- session outcomes (gateway/session) ---
    no_valid_recipients,
    upstream_rejected,  // the relay refused; its own reply is relayed
    auth_encryption_required,
    auth_mechanism_unsupported,
    auth_cancelled,
    auth_bad_encoding,
    untrusted_proxy,
    proxy_header_invalid,
    auth_throttled,        // 454: failures from this address/user, retry later
    auth_throttled_close,  // 421: this address keeps guessing
    auth_busy,             // 454: too many password checks queued, retry later
    client_disconnected,   // the client went away mid-transaction (never sent)
    session_lifetime_exceeded,
    too_many_transactions,
    transaction_reset,  // the client's RSET or EHLO ended it (audit and metrics only)
};

struct ReasonInfo {
    Reason reason;
    std::string_view label;     // metric label and audit-log reason code
    int smtp_code;              // e.g. 550
    std::string_view enhanced;  // e.g. "5.7.1"
    std::string_view text;      // reply text shown to the sender
};

const ReasonInfo& info(Reason r);
inline std::string_view label(Reason r) {
    return info(r).label;
}
std::span<const ReasonInfo> all_reasons();
std::optional<Reason> reason_from_label(std::string_view label);

// True for reasons whose reply is a temporary failure (4xx).
inline bool is_tempfail(Reason r) {
    return info(r).smtp_code / 100 == 4;
}

}  // namespace relaygate
