// SMTP command line parsing (RFC 5321 4.1.1, 4.1.2; RFC 1870, 6152, 6531,
// 4954, 3207). Owns the command grammar: verb, arguments, ESMTP parameters.
// It does not decide what a command means in the current state (that is the
// session's job) and never does I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/reason.hpp"
#include "gateway/common/result.hpp"
#include "gateway/smtp/path.hpp"

namespace relaygate::smtp {

enum class Verb : std::uint8_t {
    ehlo,
    helo,
    mail,
    rcpt,
    data,
    rset,
    noop,
    quit,
    starttls,
    auth,
    vrfy,
    expn,
    help,
};

std::string_view to_string(Verb v);

// One esmtp-param (RFC 5321 4.1.2): keyword [ "=" value ].
struct EsmtpParam {
    std::string keyword;  // upper-cased
    std::optional<std::string> value;
};

enum class Body : std::uint8_t { unspecified, seven_bit, eight_bit_mime };

// The MAIL parameters relaygate implements.
struct MailParams {
    std::optional<std::uint64_t> size;  // RFC 1870; saturates at UINT64_MAX
    Body body = Body::unspecified;      // RFC 6152
    bool smtputf8 = false;              // RFC 6531 3.4
    // RFC 4954 5: the xtext-decoded AUTH= mailbox, or "<>" for "unknown".
    std::optional<std::string> auth;
};

struct Command {
    Verb verb = Verb::noop;

    // EHLO/HELO: the client's name. `helo_domain` is lower-case A-labels, or
    // the address literal text (e.g. "[192.0.2.1]") when helo_literal is set.
    std::string helo_domain;
    bool helo_literal = false;

    // MAIL: reverse-path and parameters; RCPT: forward-path and parameters.
    Path path;
    MailParams mail;
    // RCPT parameters, parsed generically: relaygate implements none, so the
    // session answers 555 when this is not empty (RFC 5321 4.1.1.11).
    std::vector<EsmtpParam> rcpt_params;

    // AUTH: mechanism (upper-cased) and the optional initial response
    // (RFC 4954 4), still base64; "=" stands for an empty response.
    std::string auth_mechanism;
    std::optional<std::string> auth_initial_response;

    // VRFY/EXPN (required), HELP/NOOP (optional): the argument string as sent.
    std::string argument;
};

enum class CommandErrorKind : std::uint8_t {
    unknown_verb,         // 500 5.5.2
    not_implemented,      // a verb we know of but do not implement: 502 5.5.1
    bad_syntax,           // the verb is known, its arguments are not valid: 501
    bad_path,             // MAIL/RCPT path refused: see path_error
    bad_domain,           // EHLO/HELO argument is not a domain or address literal
    unknown_parameter,    // MAIL/RCPT parameter we do not implement: 555
    duplicate_parameter,  // the same parameter twice: 501
    bad_parameter_value,  // e.g. SIZE=abc, BODY=BINARYMIME: 501 / 555
};

struct CommandError {
    CommandErrorKind kind = CommandErrorKind::unknown_verb;
    std::optional<Verb> verb;                  // set when the verb was recognised
    PathError path_error = PathError::syntax;  // meaningful for bad_path
    std::string detail;  // offending parameter keyword or unimplemented verb, upper-cased
};

std::string_view to_string(CommandErrorKind k);

// The reply to send for a parse error, from the reason table.
Reason reason(const CommandError& e);

struct ParseOptions {
    // SMTPUTF8 is advertised (RFC 6531 3.1): if false, the MAIL SMTPUTF8
    // parameter is unknown (555) and every path must be ASCII.
    bool smtputf8_offered = false;
    // The current transaction's MAIL carried SMTPUTF8, so RCPT paths may be
    // UTF-8 (RFC 6531 3.4). MAIL itself uses its own SMTPUTF8 parameter.
    bool smtputf8_transaction = false;
};

// Parses one command line, without its CRLF (the LineFramer removed it).
//
// Strictness: exactly RFC 5321 syntax - single spaces, no trailing space, no
// TAB, paths always in angle brackets - with one tolerance: a single SP after
// "MAIL FROM:" / "RCPT TO:" is accepted. RFC 5321 4.1.2 has no space there,
// but many clients send one and Postfix accepts it; the path that follows is
// still delimited by "<" and ">", so the space cannot change which address is
// meant. Two spaces, or a space before the colon, are refused.
Result<Command, CommandError> parse_command(std::string_view line, const ParseOptions& opts = {});

}  // namespace relaygate::smtp
