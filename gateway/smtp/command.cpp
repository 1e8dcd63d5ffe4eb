// Command parsing: a verb table, then one small parser per argument shape.
// Everything is checked against RFC 5321 syntax; the only tolerance (one SP
// after "FROM:"/"TO:") is documented in command.hpp.
#include "gateway/smtp/command.hpp"

#include <array>
#include <limits>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"

namespace relaygate::smtp {
namespace {

using CommandResult = Result<Command, CommandError>;

// Parameters per MAIL/RCPT: far more than any real client sends, and a bound
// independent of the line length.
constexpr std::size_t kMaxParams = 16;

struct VerbRow {
    std::string_view name;
    Verb verb;
};
constexpr std::array kVerbs{
    VerbRow{"EHLO", Verb::ehlo}, VerbRow{"HELO", Verb::helo}, VerbRow{"MAIL", Verb::mail},
    VerbRow{"RCPT", Verb::rcpt}, VerbRow{"DATA", Verb::data}, VerbRow{"RSET", Verb::rset},
    VerbRow{"NOOP", Verb::noop}, VerbRow{"QUIT", Verb::quit}, VerbRow{"STARTTLS", Verb::starttls},
    VerbRow{"AUTH", Verb::auth}, VerbRow{"VRFY", Verb::vrfy}, VerbRow{"EXPN", Verb::expn},
    VerbRow{"HELP", Verb::help},
};

// Verbs that exist in some SMTP dialect but that relaygate does not
// implement: RFC 5321 4.2.4 wants 502 for them rather than 500.
constexpr std::array<std::string_view, 10> kNotImplemented{
    "SEND", "SOML",    "SAML",     "TURN",  // RFC 821, removed by RFC 5321 F.6
    "ETRN",                                 // RFC 1985
    "ATRN",                                 // RFC 2645
    "BDAT",                                 // RFC 3030 (CHUNKING is not offered)
    "VERB", "XCLIENT", "XFORWARD",          // Sendmail / Postfix extensions
};

CommandError error(CommandErrorKind kind, std::optional<Verb> verb, std::string detail = {}) {
    CommandError e;
    e.kind = kind;
    e.verb = verb;
    e.detail = std::move(detail);
    return e;
}

CommandResult fail(CommandErrorKind kind, Verb verb, std::string detail = {}) {
    return unexpected(error(kind, verb, std::move(detail)));
}

bool is_keyword_char(unsigned char c) {
    return ascii::is_alnum(c) || c == '-';
}

// RFC 5321 4.1.2 esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under
// RFC 6531 3.3 (well-formedness is checked by the caller).
bool is_value_char(unsigned char c) {
    return (c >= 33 && c <= 126 && c != '=') || c >= 0x80;
}

// Splits "KEY[=VALUE] KEY[=VALUE] ..." (single spaces) into params, with the
// keyword upper-cased. Rejects empty params, bad characters and duplicates.
std::optional<CommandError> split_params(std::string_view s, Verb verb, bool utf8,
                                         std::vector<EsmtpParam>& out) {
    for (;;) {
        const auto sp = s.find(' ');
        std::string_view tok = s.substr(0, sp);
        if (tok.empty()) return error(CommandErrorKind::bad_syntax, verb);
        const auto eq = tok.find('=');
        std::string_view key = tok.substr(0, eq);
        if (key.empty() || !ascii::is_alnum(static_cast<unsigned char>(key[0])))
            return error(CommandErrorKind::bad_syntax, verb);
        for (unsigned char c : key)
            if (!is_keyword_char(c)) return error(CommandErrorKind::bad_syntax, verb);
        EsmtpParam p;
        p.keyword = std::string(key);
        for (char& c : p.keyword)
            c = ascii::to_upper(c);
        if (eq != std::string_view::npos) {
            std::string_view val = tok.substr(eq + 1);
            if (val.empty()) return error(CommandErrorKind::bad_syntax, verb);
            for (unsigned char c : val)
                if (!is_value_char(c)) return error(CommandErrorKind::bad_syntax, verb);
            if (!ascii::is_all_ascii(val) && (!utf8 || !is_valid_utf8(val)))
                return error(CommandErrorKind::bad_syntax, verb);
            p.value = std::string(val);
        }
        for (const auto& seen : out)
            if (seen.keyword == p.keyword)
                return error(CommandErrorKind::duplicate_parameter, verb, p.keyword);
        if (out.size() == kMaxParams) return error(CommandErrorKind::bad_syntax, verb);
        out.push_back(std::move(p));
        if (sp == std::string_view::npos) return std::nullopt;
        s.remove_prefix(sp + 1);
    }
}

// RFC 1870 size-value ::= 1*20DIGIT. Values past UINT64_MAX saturate: they are
// over any configured limit either way, and the session answers 552.
std::optional<std::uint64_t> parse_size(std::string_view v) {
    if (v.empty() || v.size() > 20) return std::nullopt;
    std::uint64_t n = 0;
    constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
    for (unsigned char c : v) {
        if (!ascii::is_digit(c)) return std::nullopt;
        const std::uint64_t d = c - '0';
        n = (n > (kMax - d) / 10) ? kMax : n * 10 + d;
    }
    return n;
}

int hex_value(unsigned char c) {
    if (ascii::is_digit(c)) return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;  // RFC 3461 4: hexchar uses upper-case digits only
}

// RFC 3461 4 xtext: "+" HEX HEX encodes an octet; "+" and "=" must be encoded.
// Decoded controls and non-ASCII are refused (an AUTH= mailbox is ASCII).
std::optional<std::string> decode_xtext(std::string_view v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        const auto c = static_cast<unsigned char>(v[i]);
        if (c == '+') {
            if (i + 2 >= v.size()) return std::nullopt;
            const int hi = hex_value(static_cast<unsigned char>(v[i + 1]));
            const int lo = hex_value(static_cast<unsigned char>(v[i + 2]));
            if (hi < 0 || lo < 0) return std::nullopt;
            const auto d = static_cast<unsigned char>(hi * 16 + lo);
            if (ascii::is_ctl(d) || d >= 0x80) return std::nullopt;
            out.push_back(static_cast<char>(d));
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return std::nullopt;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    if (out.empty()) return std::nullopt;
    return out;
}

// "FROM:" / "TO:" then an optional single SP, then the path, then params.
// Returns the path token and leaves the parameter string in `params`.
std::optional<CommandError> split_path_args(std::string_view args, std::string_view keyword,
                                            Verb verb, std::string_view& path,
                                            std::string_view& params, bool& has_params) {
    if (args.empty() || args.front() != ' ') return error(CommandErrorKind::bad_syntax, verb);
    args.remove_prefix(1);
    if (!ascii::istarts_with(args, keyword)) return error(CommandErrorKind::bad_syntax, verb);
    args.remove_prefix(keyword.size());
    if (!args.empty() && args.front() == ' ') args.remove_prefix(1);  // see command.hpp
    const std::size_t n = path_token_length(args);
    if (n == 0) {
        CommandError e = error(CommandErrorKind::bad_path, verb);
        e.path_error =
            args.empty() || args.front() == ' ' ? PathError::syntax : PathError::missing_brackets;
        return e;
    }
    path = args.substr(0, n);
    args.remove_prefix(n);
    has_params = !args.empty();
    if (has_params) {
        if (args.front() != ' ') {
            // "<a@b>x" or "<a@b>>": the path did not end where it seemed to.
            CommandError e = error(CommandErrorKind::bad_path, verb);
            e.path_error = PathError::missing_brackets;
            return e;
        }
        params = args.substr(1);
    }
    return std::nullopt;
}

CommandResult bad_path(Verb verb, PathError pe) {
    CommandError e = error(CommandErrorKind::bad_path, verb);
    e.path_error = pe;
    return unexpected(std::move(e));
}

CommandResult parse_mail(std::string_view args, const ParseOptions& opts) {
    std::string_view path_text, param_text;
    bool has_params = false;
    if (auto e = split_path_args(args, "FROM:", Verb::mail, path_text, param_text, has_params))
        return unexpected(std::move(*e));
    Command cmd;
    cmd.verb = Verb::mail;
    std::vector<EsmtpParam> params;
    if (has_params) {
        if (auto e = split_params(param_text, Verb::mail, opts.smtputf8_offered, params))
            return unexpected(std::move(*e));
    }
    // The path is checked before the parameters' meaning, so that a bad
    // address is reported as such; it may be UTF-8 only with SMTPUTF8.
    bool utf8 = false;
    for (const auto& p : params)
        utf8 = utf8 || (p.keyword == "SMTPUTF8" && opts.smtputf8_offered);
    auto path = parse_reverse_path(path_text, utf8);
    if (!path) return bad_path(Verb::mail, path.error());
    cmd.path = std::move(path.value());
    for (const auto& p : params) {
        if (p.keyword == "SIZE") {
            auto n = p.value ? parse_size(*p.value) : std::nullopt;
            if (!n) return fail(CommandErrorKind::bad_parameter_value, Verb::mail, p.keyword);
            cmd.mail.size = n;
        } else if (p.keyword == "BODY") {
            // RFC 6152 2 (8BITMIME); BINARYMIME needs CHUNKING, not offered.
            if (p.value && ascii::iequals(*p.value, "7BIT")) {
                cmd.mail.body = Body::seven_bit;
            } else if (p.value && ascii::iequals(*p.value, "8BITMIME")) {
                cmd.mail.body = Body::eight_bit_mime;
            } else {
                return fail(CommandErrorKind::bad_parameter_value, Verb::mail, p.keyword);
            }
        } else if (p.keyword == "SMTPUTF8" && opts.smtputf8_offered) {
            // RFC 6531 3.4: SMTPUTF8 takes no value.
            if (p.value) return fail(CommandErrorKind::bad_parameter_value, Verb::mail, p.keyword);
            cmd.mail.smtputf8 = true;
        } else if (p.keyword == "AUTH") {
            // RFC 4954 5: AUTH=<> or AUTH=xtext(addr-spec).
            if (!p.value) return fail(CommandErrorKind::bad_parameter_value, Verb::mail, p.keyword);
            if (*p.value == "<>") {
                cmd.mail.auth = "<>";
            } else {
                auto d = decode_xtext(*p.value);
                if (!d) return fail(CommandErrorKind::bad_parameter_value, Verb::mail, p.keyword);
                cmd.mail.auth = std::move(*d);
            }
        } else {
            return fail(CommandErrorKind::unknown_parameter, Verb::mail, p.keyword);
        }
    }
    return cmd;
}

CommandResult parse_rcpt(std::string_view args, const ParseOptions& opts) {
    std::string_view path_text, param_text;
    bool has_params = false;
    if (auto e = split_path_args(args, "TO:", Verb::rcpt, path_text, param_text, has_params))
        return unexpected(std::move(*e));
    Command cmd;
    cmd.verb = Verb::rcpt;
    const bool utf8 = opts.smtputf8_offered && opts.smtputf8_transaction;
    auto path = parse_forward_path(path_text, utf8);
    if (!path) return bad_path(Verb::rcpt, path.error());
    cmd.path = std::move(path.value());
    if (has_params) {
        if (auto e = split_params(param_text, Verb::rcpt, utf8, cmd.rcpt_params))
            return unexpected(std::move(*e));
    }
    return cmd;
}

CommandResult parse_helo(Verb verb, std::string_view args) {
    // RFC 5321 4.1.1.1: "EHLO" SP ( Domain / address-literal ); HELO takes a
    // Domain only. The argument is one token.
    if (args.size() < 2 || args.front() != ' ') return fail(CommandErrorKind::bad_syntax, verb);
    args.remove_prefix(1);
    if (args.find(' ') != std::string_view::npos) return fail(CommandErrorKind::bad_syntax, verb);
    Command cmd;
    cmd.verb = verb;
    if (args.front() == '[') {
        if (verb == Verb::helo) return fail(CommandErrorKind::bad_domain, verb);
        auto lit = parse_address_literal(args);
        if (!lit) return fail(CommandErrorKind::bad_domain, verb);
        cmd.helo_domain = std::move(lit->text);
        cmd.helo_literal = true;
        return cmd;
    }
    // RFC 6531 3.7.1 leaves EHLO in A-labels; U-labels are not accepted here.
    auto d = normalize_domain(args, false);
    if (!d) return fail(CommandErrorKind::bad_domain, verb);
    cmd.helo_domain = std::move(d.value());
    return cmd;
}

bool is_base64(std::string_view s) {
    if (s.empty() || s.size() % 4 != 0) return false;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '=') {
            ++pad;
        } else if (pad > 0 || !(ascii::is_alnum(c) || c == '+' || c == '/')) {
            return false;
        }
    }
    return pad <= 2;
}

CommandResult parse_auth(std::string_view args) {
    // RFC 4954 4: "AUTH" SP sasl-mech [SP initial-response];
    // sasl-mech = 1*20 (UPPER-ALPHA / DIGIT / "-" / "_") (RFC 4422 3.1),
    // matched case-insensitively as clients do send "auth plain".
    if (args.size() < 2 || args.front() != ' ')
        return fail(CommandErrorKind::bad_syntax, Verb::auth);
    args.remove_prefix(1);
    const auto sp = args.find(' ');
    std::string_view mech = args.substr(0, sp);
    if (mech.empty() || mech.size() > 20) return fail(CommandErrorKind::bad_syntax, Verb::auth);
    Command cmd;
    cmd.verb = Verb::auth;
    for (unsigned char c : mech) {
        if (!(ascii::is_alnum(c) || c == '-' || c == '_'))
            return fail(CommandErrorKind::bad_syntax, Verb::auth);
        cmd.auth_mechanism.push_back(ascii::to_upper(static_cast<char>(c)));
    }
    if (sp != std::string_view::npos) {
        std::string_view ir = args.substr(sp + 1);
        if (ir != "=" && !is_base64(ir)) return fail(CommandErrorKind::bad_syntax, Verb::auth);
        cmd.auth_initial_response = std::string(ir);
    }
    return cmd;
}

// NOOP/HELP take an optional string, VRFY/EXPN a required one (RFC 5321
// 4.1.1.6-4.1.1.10). Its content is not interpreted, only bounded to
// printable ASCII (UTF-8 would need SMTPUTF8 context we do not track here).
CommandResult parse_string_arg(Verb verb, std::string_view args, bool required) {
    Command cmd;
    cmd.verb = verb;
    if (args.empty()) {
        if (required) return fail(CommandErrorKind::bad_syntax, verb);
        return cmd;
    }
    if (args.size() < 2 || args.front() != ' ') return fail(CommandErrorKind::bad_syntax, verb);
    args.remove_prefix(1);
    for (unsigned char c : args)
        if (c < 32 || c > 126) return fail(CommandErrorKind::bad_syntax, verb);
    cmd.argument = std::string(args);
    return cmd;
}

}  // namespace

std::string_view to_string(Verb v) {
    for (const auto& row : kVerbs)
        if (row.verb == v) return row.name;
    return "?";
}

std::string_view to_string(CommandErrorKind k) {
    switch (k) {
        case CommandErrorKind::unknown_verb:
            return "unknown command";
        case CommandErrorKind::not_implemented:
            return "command not implemented";
        case CommandErrorKind::bad_syntax:
            return "syntax error in arguments";
        case CommandErrorKind::bad_path:
            return "bad path";
        case CommandErrorKind::bad_domain:
            return "bad EHLO/HELO domain";
        case CommandErrorKind::unknown_parameter:
            return "unknown parameter";
        case CommandErrorKind::duplicate_parameter:
            return "duplicate parameter";
        case CommandErrorKind::bad_parameter_value:
            return "bad parameter value";
    }
    return "bad command";
}

Reason reason(const CommandError& e) {
    switch (e.kind) {
        case CommandErrorKind::unknown_verb:
            return Reason::syntax_error;
        case CommandErrorKind::not_implemented:
            return Reason::command_not_implemented;
        case CommandErrorKind::bad_syntax:
        case CommandErrorKind::bad_domain:
        case CommandErrorKind::duplicate_parameter:
        case CommandErrorKind::bad_parameter_value:
            return Reason::bad_arguments;
        case CommandErrorKind::unknown_parameter:
            return Reason::parameter_unrecognized;
        case CommandErrorKind::bad_path:
            switch (e.path_error) {
                case PathError::utf8_not_allowed:
                    return Reason::smtputf8_required;
                case PathError::local_part_too_long:
                case PathError::domain_too_long:
                case PathError::path_too_long:
                    return Reason::path_too_long;
                default:
                    return e.verb == Verb::rcpt ? Reason::bad_recipient_syntax
                                                : Reason::bad_sender_syntax;
            }
    }
    return Reason::syntax_error;
}

Result<Command, CommandError> parse_command(std::string_view line, const ParseOptions& opts) {
    const auto sp = line.find(' ');
    std::string_view word = line.substr(0, sp);
    std::optional<Verb> verb;
    for (const auto& row : kVerbs)
        if (ascii::iequals(word, row.name)) verb = row.verb;
    if (!verb) {
        for (auto name : kNotImplemented)
            if (ascii::iequals(word, name))
                return unexpected(
                    error(CommandErrorKind::not_implemented, std::nullopt, std::string(name)));
        return unexpected(error(CommandErrorKind::unknown_verb, std::nullopt));
    }
    // RFC 5321 4.1.1: arguments are separated by SP only; a TAB or another
    // control character anywhere is a syntax error, not a separator.
    for (unsigned char c : line)
        if (ascii::is_ctl(c)) return fail(CommandErrorKind::bad_syntax, *verb);
    std::string_view args = sp == std::string_view::npos ? std::string_view{} : line.substr(sp);

    switch (*verb) {
        case Verb::ehlo:
        case Verb::helo:
            return parse_helo(*verb, args);
        case Verb::mail:
            return parse_mail(args, opts);
        case Verb::rcpt:
            return parse_rcpt(args, opts);
        case Verb::auth:
            return parse_auth(args);
        case Verb::noop:
        case Verb::help:
            return parse_string_arg(*verb, args, false);
        case Verb::vrfy:
        case Verb::expn:
            return parse_string_arg(*verb, args, true);
        case Verb::data:
        case Verb::rset:
        case Verb::quit:
        case Verb::starttls:
            // RFC 5321 4.1.1.4/4.1.1.5/4.1.1.10, RFC 3207 4: no arguments.
            if (!args.empty()) return fail(CommandErrorKind::bad_syntax, *verb);
            {
                Command cmd;
                cmd.verb = *verb;
                return cmd;
            }
    }
    return unexpected(error(CommandErrorKind::unknown_verb, std::nullopt));
}

}  // namespace relaygate::smtp
