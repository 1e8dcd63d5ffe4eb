// `relaygate check`, `relaygate explain`, `relaygate hash-password`.
// Exit codes: check 0 valid / 1 invalid; explain 0 accepted / 1 refused /
// 2 bad input; hash-password 0 / 1. Output formats are documented in
// policy/README.md; scripts rely on "policy OK:" and the --json fields.
#include "gateway/cli/policy_commands.hpp"

#include "gateway/cli/dns_command.hpp"
#include "gateway/cli/explain_session.hpp"
#include "gateway/common/file.hpp"
#include "gateway/config/config.hpp"
#include "gateway/dkim/verifier.hpp"
#include "gateway/server/descriptors.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/policy_poller.hpp"
#include "gateway/server/tls_context.hpp"
#include "gateway/session/session.hpp"

#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy.hpp"
#include "policy/engine/policy_source.hpp"

namespace relaygate::cli {
namespace {

using policy::Decision;
using policy::Policy;

[[noreturn]] void exit_with(int code) {
    throw CLI::RuntimeError(code);
}

std::shared_ptr<const Policy> load_or_report(const policy::PolicySource& source) {
    auto loaded = policy::load_policy(source);
    if (!loaded) {
        for (const auto& e : loaded.error())
            fmt::print(stderr, "error: {}\n", policy::format_diagnostic(e));
        fmt::print(stderr, "policy INVALID: {} error{} in {}\n", loaded.error().size(),
                   loaded.error().size() == 1 ? "" : "s", source.describe());
        return nullptr;
    }
    for (const auto& w : (*loaded)->warnings())
        fmt::print(stderr, "warning: {}\n", policy::format_diagnostic(w));
    return *loaded;
}

// Explain has no rate-limit store: every counter it shows is a fresh one.
constexpr std::string_view kFreshCounter =
    "a fresh counter; a running gateway's counters live in its store";

nlohmann::json limits_json(const Decision& d) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : d.limits)
        out.push_back({{"kind", policy::to_string(l.kind)},
                       {"count", l.rate.count},
                       {"per", policy::format_period(l.rate.per_seconds)},
                       {"per_seconds", l.rate.per_seconds},
                       {"burst", l.rate.burst},
                       {"scope", policy::to_string(l.scope)},
                       {"subject", l.subject},
                       {"key", l.key()},
                       {"describe", l.describe()},
                       {"left", l.rate.burst},
                       {"left_note", kFreshCounter}});
    return out;
}

nlohmann::json to_json(const Decision& d) {
    const auto& r = info(d.reason);
    return {
        {"verdict", policy::to_string(d.verdict)},
        {"reason", r.label},
        {"smtp_reply",
         fmt::format("{} {} {}", d.verdict == policy::Verdict::accept ? 250 : r.smtp_code,
                     d.verdict == policy::Verdict::accept ? "2.0.0" : r.enhanced,
                     d.verdict == policy::Verdict::accept ? "OK" : r.text)},
        {"tenant", d.tenant},
        {"identity", policy::to_string(d.identity)},
        {"identity_detail", d.identity_detail},
        {"grant", d.grant},
        {"report_only", d.report_only},
        {"pending_header", d.pending_header},
        {"candidates", d.candidates},
        {"dkim_required", d.dkim_required},
        {"reply_detail", d.reply_detail},
        {"limits", limits_json(d)},
        {"limits_mode", d.limits_mode == policy::LimitMode::report ? "report" : "enforce"},
        {"on_spike", d.on_spike == policy::SpikeAction::hold ? "hold" : "log"},
        {"trace", d.trace},
    };
}

void print_decision(std::string_view point, const Decision& d) {
    std::string extra;
    if (!d.tenant.empty()) extra += " tenant=" + d.tenant;
    if (d.identity != policy::IdentityKind::none)
        extra += fmt::format(" identity={}", policy::to_string(d.identity));
    if (!d.grant.empty()) extra += " grant=" + d.grant;
    if (d.pending_header) extra += " pending-header";
    if (d.report_only) extra += " report-only";
    if (!d.candidates.empty()) extra += fmt::format(" candidates={}", fmt::join(d.candidates, ","));
    fmt::print("{}: {} ({}){}\n", point, policy::to_string(d.verdict), label(d.reason), extra);
    if (d.dkim_required) extra += " dkim-required";
    if (d.verdict != policy::Verdict::accept) {
        const auto& r = info(d.reason);
        fmt::print("  reply: {} {} {}{}\n", r.smtp_code, r.enhanced, r.text,
                   d.reply_detail.empty() ? "" : ": " + d.reply_detail);
    }
    for (const auto& l : d.limits)
        fmt::print("  limit: {} {} per {}, burst {}, {} {}, key {}; left: {} of {} ({})\n",
                   policy::to_string(l.kind), policy::format_count(l.kind, l.rate.count),
                   policy::format_period(l.rate.per_seconds),
                   policy::format_count(l.kind, l.rate.burst), policy::to_string(l.scope),
                   l.subject, l.key(), policy::format_count(l.kind, l.rate.burst),
                   policy::format_count(l.kind, l.rate.burst), kFreshCounter);
    if (!d.limits.empty())
        fmt::print("  limits: mode {}, on_spike {}\n",
                   d.limits_mode == policy::LimitMode::report ? "report" : "enforce",
                   d.on_spike == policy::SpikeAction::hold ? "hold" : "log");
    for (const auto& line : d.trace)
        fmt::print("  | {}\n", line);
}

// --policy FILE | --policy-dir DIR, and --credentials PATH.
struct SourceOptions {
    std::string file, dir, credentials;
    policy::PolicySource source() const { return {file, dir, credentials, {}}; }
    bool given() const { return !file.empty() || !dir.empty(); }
    void add_to(CLI::App& cmd) {
        auto* f = cmd.add_option("--policy", file, "Policy file (JSON)");
        auto* d = cmd.add_option("--policy-dir", dir,
                                 "Directory whose *.json files form one policy (policy_dir)");
        f->excludes(d);
        cmd.add_option("--credentials", credentials,
                       "SASL credentials: a \"user:hash\" file or a directory of one file "
                       "per user (credentials_file)");
    }
};

struct ExplainOptions {
    SourceOptions policy;
    std::string client_ip;
    std::string mail_from;
    std::string message_file;
    std::string auth_user;
    std::string cert_sha256;
    std::string spki_sha256;
    std::vector<std::string> from;
    std::vector<std::string> sender;
    std::vector<std::string> tenant_header;
    std::vector<std::string> dns_servers;
    double dns_timeout = 2.0;
    std::uint64_t now = 0;  // Unix seconds for DKIM x=; 0 = the clock
    bool json = false;
};

// A value that becomes part of an SMTP command or a header line.
void require_one_line(std::string_view flag, const std::string& value) {
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        fmt::print(stderr, "error: {} must be one line without CR, LF or NUL\n", flag);
        exit_with(2);
    }
}

// "user@domain", "<user@domain>", "<>" or "" -> the reverse-path of MAIL FROM.
std::string reverse_path(const std::string& mail_from) {
    if (mail_from.size() >= 2 && mail_from.front() == '<' && mail_from.back() == '>')
        return mail_from;
    return "<" + mail_from + ">";
}

// The header section a client would send for --from/--sender/--tenant-header.
// Tenant header values go under the policy's provider tenant header (the
// only field the gateway reads them from; without one they cannot matter).
std::string synthesized_header(const ExplainOptions& o, const Policy& pol) {
    std::string h;
    if (!o.from.empty()) h += fmt::format("From: {}\r\n", fmt::join(o.from, ", "));
    if (!o.sender.empty()) h += fmt::format("Sender: {}\r\n", fmt::join(o.sender, ", "));
    if (const auto names = pol.provider_tenant_headers(); !names.empty())
        for (const auto& v : o.tenant_header)
            h += fmt::format("{}: {}\r\n", names.front(), v);
    return h + "\r\n";
}

std::uint64_t unix_now() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

nlohmann::json dns_json(const std::string& name, const dns::Answer& answer) {
    return {{"name", name},
            {"status", dns::to_string(answer.status)},
            {"records", answer.records},
            {"cname_target", answer.cname_target},
            {"detail", answer.detail}};
}

nlohmann::json dkim_json(const dkim::VerifyResult& r) {
    return {{"domain", r.domain},
            {"selector", r.selector},
            {"status", dkim::to_string(r.status)},
            {"key_name", r.key_name},
            {"key_cname_target", r.key_cname_target},
            {"length_limited", r.length_limited},
            {"detail", r.detail}};
}

// Runs the gateway's own session machine over the options (explain_session.hpp),
// so explain and `run` take the same facts the same way: the SMTP path
// parser, the header reader, the DNS proof loop and the DKIM verifier.
void run_explain(const ExplainOptions& o) {
    if (!o.policy.given()) {
        fmt::print(stderr, "error: give --policy FILE or --policy-dir DIR\n");
        exit_with(2);
    }
    auto pol = load_or_report(o.policy.source());
    if (!pol) exit_with(2);

    ExplainInput in;
    if (!o.client_ip.empty() && !policy::IpAddress::parse(o.client_ip)) {
        fmt::print(stderr, "error: --client-ip \"{}\" is not an IP address\n", o.client_ip);
        exit_with(2);
    }
    in.client_ip = o.client_ip;
    if (!o.auth_user.empty()) in.conn.sasl_user = o.auth_user;
    if (!o.cert_sha256.empty()) in.conn.client_cert_sha256 = o.cert_sha256;
    if (!o.spki_sha256.empty()) in.conn.client_spki_sha256 = o.spki_sha256;
    require_one_line("--mail-from", o.mail_from);
    for (const auto& v : o.from)
        require_one_line("--from", v);
    for (const auto& v : o.sender)
        require_one_line("--sender", v);
    for (const auto& v : o.tenant_header)
        require_one_line("--tenant-header", v);
    in.reverse_path = reverse_path(o.mail_from);

    // The message: the file's bytes exactly as given (a file with LF-only
    // line endings is refused, as the gateway refuses such DATA), or a
    // header made of --from/--sender/--tenant-header.
    const bool synthesized = o.message_file.empty() &&
                             (!o.from.empty() || !o.sender.empty() || !o.tenant_header.empty());
    if (!o.message_file.empty()) {
        auto text = read_file(o.message_file);
        if (!text) {
            fmt::print(stderr, "error: cannot read --message {}\n", o.message_file);
            exit_with(2);
        }
        in.message = std::move(*text);
    } else if (synthesized) {
        in.message = synthesized_header(o, *pol);
    }
    in.unix_time = o.now != 0 ? o.now : unix_now();

    session::Settings settings;
    settings.trace_decisions = true;
    // The gateway verifies DKIM only when the identity requires it;
    // explain shows the signatures of any message it is given.
    settings.verify_dkim_always = true;
    settings.volume.anomalies = false;  // explain observes nothing

    // Without --dns-server the resolver reads /etc/resolv.conf, on first use.
    std::optional<CliResolver> resolver;
    auto resolve = [&](const std::string& name) {
        if (!resolver) {
            try {
                resolver.emplace(o.dns_servers, o.dns_timeout);
            } catch (const std::exception& e) {
                fmt::print(stderr, "error: DNS: {}\n", e.what());
                exit_with(2);
            }
        }
        return resolver->resolve(name, dns::RrType::txt);
    };
    ExplainRun run;
    try {
        run = run_explain_session(settings, pol, in, resolve);
    } catch (const CLI::Error&) {
        throw;
    } catch (const std::runtime_error& e) {
        fmt::print(stderr, "error: explain: {}\n", e.what());
        exit_with(2);
    }

    auto decision = [&](std::string_view point) -> const Decision* {
        auto it = run.decisions.find(point);
        return it == run.decisions.end() ? nullptr : &it->second;
    };
    const Decision* mail = decision("mail_from");
    const Decision* header = decision("header");
    const Decision* eod = decision("end_of_data");
    if (mail == nullptr) {
        // The SMTP layer refused the command before the policy saw it.
        fmt::print(stderr, "error: --mail-from \"{}\": the gateway refuses MAIL FROM:{}: {}\n",
                   o.mail_from, in.reverse_path, run.mail_reply);
        exit_with(2);
    }
    const Decision& last = eod ? *eod : header ? *header : *mail;
    // Refused by the session after the policy accepted: the SMTP data
    // reader, the header reader, an ambiguous DKIM-Signature, a limit.
    const session::TransactionRecord* refused =
        last.accepted() && run.record && run.record->reason != Reason::accepted ? &*run.record
                                                                                : nullptr;
    if (refused && synthesized && header == nullptr) {
        fmt::print(stderr,
                   "error: --from/--sender/--tenant-header: the gateway refuses this header: {} "
                   "({})\n",
                   label(refused->reason), refused->reply);
        exit_with(2);
    }
    const bool accepted = !refused && last.accepted() && !last.pending_header;

    const std::string_view final_word = accepted ? "accept"
                                        : refused
                                            ? (is_tempfail(refused->reason) ? "tempfail" : "reject")
                                        : last.pending_header ? "pending_header"
                                        : last.verdict == policy::Verdict::tempfail ? "tempfail"
                                                                                    : "reject";
    nlohmann::json dns = nlohmann::json::array();
    for (const auto& [name, answer] : run.dns)
        dns.push_back(dns_json(name, answer));
    nlohmann::json dkim = nlohmann::json::array();
    for (const auto& r : run.dkim)
        dkim.push_back(dkim_json(r));
    if (o.json) {
        nlohmann::json out = {
            {"policy_hash", pol->hash()},
            {"mail_from", to_json(*mail)},
            {"header", header ? to_json(*header) : nlohmann::json()},
            {"end_of_data", eod ? to_json(*eod) : nlohmann::json()},
            {"refused", refused ? nlohmann::json{{"stage", refused->stage},
                                                 {"reason", label(refused->reason)},
                                                 {"smtp_reply", refused->reply}}
                                : nlohmann::json()},
            {"dns", dns},
            {"dkim", dkim},
            {"final", final_word},
        };
        fmt::print("{}\n", out.dump(2));
    } else {
        fmt::print("policy {} ({})\n", o.policy.source().describe(), pol->hash());
        for (const auto& q : dns)
            fmt::print("dns: TXT {} -> {}{}{}\n", q["name"].get<std::string>(),
                       q["status"].get<std::string>(),
                       q["cname_target"].get<std::string>().empty()
                           ? ""
                           : " via CNAME " + q["cname_target"].get<std::string>(),
                       q["records"].empty()
                           ? ""
                           : " " + q["records"].dump(-1, ' ', false,
                                                     nlohmann::json::error_handler_t::replace));
        for (const auto& s : dkim)
            fmt::print("dkim: {} d={} s={}{}{}\n", s["status"].get<std::string>(),
                       s["domain"].get<std::string>(), s["selector"].get<std::string>(),
                       s["length_limited"].get<bool>() ? " (l= set)" : "",
                       s["detail"].get<std::string>().empty()
                           ? ""
                           : " -- " + s["detail"].get<std::string>());
        print_decision("MAIL FROM", *mail);
        if (header) {
            print_decision("end of header", *header);
        } else if (mail->accepted() && !in.message) {
            fmt::print(
                "end of header: not evaluated (give --message or "
                "--from/--sender/--tenant-header)\n");
        }
        if (eod) print_decision("end of data", *eod);
        if (refused) {
            fmt::print("message refused at {}: {}\n  reply: {}\n", refused->stage,
                       label(refused->reason), refused->reply);
            if (refused->reason == Reason::data_bare_line_ending && !o.message_file.empty())
                fmt::print("  note: --message is sent byte for byte; its lines must end in CRLF\n");
        }
        fmt::print("final: {}\n", final_word);
    }
    if (!accepted) exit_with(1);
}

// Reads one line from stdin; with a terminal, without echo.
std::string read_password() {
    bool tty = isatty(STDIN_FILENO) == 1;
    termios old{};
    if (tty && tcgetattr(STDIN_FILENO, &old) == 0) {
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fmt::print(stderr, "Password: ");
    } else {
        tty = false;
    }
    std::string line;
    std::getline(std::cin, line);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fmt::print(stderr, "\n");
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

}  // namespace

void add_policy_commands(CLI::App& app) {
    auto* check = app.add_subcommand(
        "check", "Validate and lint a policy file (--policy) or a whole gateway config (--config)");
    auto sources = std::make_shared<SourceOptions>();
    auto config_file = std::make_shared<std::string>();
    sources->add_to(*check);
    check->add_option("--config", *config_file,
                      "Gateway config (JSON): checks it, its TLS files and its policy "
                      "(policy_file or policy_dir, credentials_file)");
    check->callback([sources, config_file] {
        if (sources->given() == !config_file->empty()) {
            fmt::print(stderr, "error: give --policy FILE, --policy-dir DIR or --config FILE\n");
            exit_with(2);
        }
        auto source = sources->source();
        if (!config_file->empty()) {
            auto cfg = config::load_config(*config_file);
            if (!cfg) {
                for (const auto& e : cfg.error())
                    fmt::print(stderr, "error: {}\n", config::format_error(e));
                fmt::print(stderr, "config INVALID: {}\n", *config_file);
                exit_with(1);
            }
            // What `run` opens at start: the audit log, then the TLS files.
            std::string error = server::audit_log_problem(cfg->audit_log);
            if (!error.empty() || !server::TlsContexts{}.load(*cfg, error)) {
                fmt::print(stderr, "error: {}\nconfig INVALID: {}\n", error, *config_file);
                exit_with(1);
            }
            if (!cfg->policy_url.empty()) {
                if (auto setup = server::policy_url_setup(*cfg); !setup) {
                    fmt::print(stderr, "error: {}\nconfig INVALID: {}\n", setup.error(),
                               *config_file);
                    exit_with(1);
                }
            }
            source = cfg->policy_source();
            fmt::print("config OK: {} listener{}, upstream {}:{}\n", cfg->listeners.size(),
                       cfg->listeners.size() == 1 ? "" : "s", cfg->upstream.host,
                       cfg->upstream.port);
            for (const auto& w : config::config_warnings(*cfg, server::hard_descriptor_limit()))
                fmt::print("warning: {}\n", w);
            // A fetched policy is checked by `run`; here only its cached copy.
            if (!cfg->policy_url.empty() && !std::filesystem::exists(source.file)) {
                fmt::print("policy: fetched from {} at start (no cached copy in {} yet)\n",
                           cfg->policy_url, source.file.string());
                return;
            }
        }
        auto pol = load_or_report(source);
        if (!pol) exit_with(1);
        fmt::print("policy OK: {} tenants, {} domains\n", pol->tenant_count(), pol->domain_count());
        fmt::print("policy hash: {}\n", pol->hash());
    });

    auto* explain = app.add_subcommand(
        "explain", "Show what would happen to a message from a client, with the decision trace");
    auto o = std::make_shared<ExplainOptions>();
    o->policy.add_to(*explain);
    explain->add_option("--client-ip", o->client_ip, "Client address (after PROXY protocol)")
        ->required();
    explain
        ->add_option("--mail-from", o->mail_from,
                     "Envelope sender: user@domain, or <> for null (judged by the gateway's "
                     "SMTP path parser; a path it refuses exits 2)")
        ->required();
    explain->add_option("--message", o->message_file,
                        "Message file (.eml) sent as DATA byte for byte: lines must end in CRLF "
                        "(LF-only files are refused, as the gateway refuses them; convert with "
                        "unix2dos); originators, tenant header, and its DKIM signatures (keys "
                        "fetched over DNS)");
    explain->add_option("--auth-user", o->auth_user, "Authenticated SMTP AUTH user");
    explain->add_option("--client-cert-sha256", o->cert_sha256,
                        "SHA-256 of the client certificate (hex)");
    explain->add_option("--client-spki-sha256", o->spki_sha256,
                        "SHA-256 of the client public key (SPKI, hex)");
    explain->add_option("--from", o->from, "Header From address (repeatable)");
    explain->add_option("--sender", o->sender, "Header Sender address (repeatable)");
    explain->add_option("--tenant-header", o->tenant_header,
                        "Value of the provider tenant header (repeatable)");
    explain->add_option("--dns-server", o->dns_servers,
                        "DNS server for _relaygate records and DKIM keys: ADDR, ADDR:PORT or "
                        "[V6]:PORT (repeatable; default /etc/resolv.conf)");
    explain->add_option("--dns-timeout", o->dns_timeout, "Seconds per DNS attempt (default 2)");
    explain->add_option("--now", o->now,
                        "Unix time to check DKIM expiry (x=) against (default: the clock)");
    explain->add_flag("--json", o->json, "Print the decisions and the DNS/DKIM facts as JSON");
    explain->footer(
        "explain runs the gateway's own session (EHLO, MAIL FROM, RCPT TO, DATA, the message,\n"
        "QUIT) against a relay that accepts everything and sends nothing. Without --message,\n"
        "--from/--sender/--tenant-header make the header (From is required, as by the\n"
        "gateway); without either, it stops after MAIL FROM. Exit 0 accepted, 1 refused or\n"
        "pending the header, 2 bad input.");
    explain->callback([o] { run_explain(*o); });

    auto* hash = app.add_subcommand("hash-password",
                                    "Read a password from stdin and print its PBKDF2-SHA256 hash");
    auto iterations = std::make_shared<std::uint32_t>(policy::kDefaultPbkdf2Iterations);
    hash->add_option("--iterations", *iterations, "PBKDF2 iterations")
        ->check(CLI::Range(policy::kMinPbkdf2Iterations, policy::kMaxPbkdf2Iterations));
    hash->callback([iterations] {
        std::string password = read_password();
        if (password.empty()) {
            fmt::print(stderr, "error: empty password\n");
            exit_with(1);
        }
        auto h = policy::hash_password(password, *iterations);
        if (!h) {
            fmt::print(stderr, "error: {}\n", h.error());
            exit_with(1);
        }
        fmt::print("{}\n", *h);
    });
}

}  // namespace relaygate::cli
