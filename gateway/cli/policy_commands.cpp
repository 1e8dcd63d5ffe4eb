// `relaygate check`, `relaygate explain`, `relaygate hash-password`.
// Exit codes: check 0 valid / 1 invalid; explain 0 accepted / 1 refused /
// 2 bad input; hash-password 0 / 1. Output formats are documented in
// policy/README.md; scripts rely on "policy OK:" and the --json fields.
#include "gateway/cli/policy_commands.hpp"

#include "gateway/cli/dns_command.hpp"
#include "gateway/config/config.hpp"
#include "gateway/dkim/verifier.hpp"
#include "gateway/server/descriptors.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/tls_context.hpp"
#include "gateway/session/session.hpp"

#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/common/domain.hpp"
#include "gateway/message/header_reader.hpp"
#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::cli {
namespace {

using policy::Decision;
using policy::Policy;

[[noreturn]] void exit_with(int code) {
    throw CLI::RuntimeError(code);
}

std::shared_ptr<const Policy> load_or_report(const std::string& file) {
    auto loaded = Policy::load_file(file);
    if (!loaded) {
        for (const auto& e : loaded.error())
            fmt::print(stderr, "error: {}\n", policy::format_diagnostic(e));
        fmt::print(stderr, "policy INVALID: {} error{} in {}\n", loaded.error().size(),
                   loaded.error().size() == 1 ? "" : "s", file);
        return nullptr;
    }
    for (const auto& w : (*loaded)->warnings())
        fmt::print(stderr, "warning: {}\n", policy::format_diagnostic(w));
    return *loaded;
}

// "user@domain", "<user@domain>", "<>" or "" -> envelope facts; the domain
// is normalized the way the SMTP layer does it (A-labels, lower case).
std::optional<policy::EnvelopeFacts> envelope_from(std::string addr, std::string& error) {
    if (addr.size() >= 2 && addr.front() == '<' && addr.back() == '>')
        addr = addr.substr(1, addr.size() - 2);
    policy::EnvelopeFacts env;
    if (addr.empty()) {
        env.null_sender = true;
        return env;
    }
    auto at = addr.rfind('@');
    if (at == std::string::npos) {
        error = fmt::format("\"{}\" is not an address (user@domain or <>)", addr);
        return std::nullopt;
    }
    auto domain = normalize_domain(addr.substr(at + 1), true);
    if (!domain) {
        error = fmt::format("\"{}\": {}", addr, to_string(domain.error()));
        return std::nullopt;
    }
    env.domain = *domain;
    return env;
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
    for (const auto& line : d.trace)
        fmt::print("  | {}\n", line);
}

struct ExplainOptions {
    std::string policy_file;
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

// The DNS and DKIM facts explain gathered, in the order it gathered them.
struct GatheredFacts {
    std::optional<CliResolver> resolver;
    nlohmann::json dns = nlohmann::json::array();
    nlohmann::json dkim = nlohmann::json::array();

    CliResolver& dns_client(const ExplainOptions& o) {
        if (!resolver) {
            try {
                resolver.emplace(o.dns_servers, o.dns_timeout);
            } catch (const std::exception& e) {
                fmt::print(stderr, "error: DNS: {}\n", e.what());
                exit_with(2);
            }
        }
        return *resolver;
    }
    dns::Answer txt(const ExplainOptions& o, const std::string& name) {
        auto answer = dns_client(o).resolve(name, dns::RrType::txt);
        dns.push_back({{"name", name},
                       {"status", dns::to_string(answer.status)},
                       {"records", answer.records},
                       {"cname_target", answer.cname_target},
                       {"detail", answer.detail}});
        return answer;
    }
};

// Evaluates, then looks up each _relaygate.<domain> record the decision
// asks for and evaluates again, as the gateway does.
template <class Evaluate>
Decision with_domain_proofs(const ExplainOptions& o, GatheredFacts& g, policy::EnvelopeFacts& env,
                            Evaluate&& evaluate) {
    Decision d = evaluate();
    for (int i = 0; i < 8 && !d.dns_needed.empty(); ++i) {
        const std::string& domain = d.dns_needed.front();
        env.domain_proofs.push_back(
            session::domain_proof(domain, g.txt(o, "_relaygate." + domain)));
        d = evaluate();
    }
    return d;
}

// Verifies every DKIM-Signature of the message, fetching keys over DNS.
std::vector<policy::DkimFact> verify_dkim(const ExplainOptions& o, GatheredFacts& g,
                                          std::string_view text,
                                          const message::HeaderFacts& facts) {
    dkim::Verifier verifier;
    verifier.on_header(text.substr(0, facts.header_size), facts.fields);
    verifier.on_body(text.substr(std::min(facts.header_size, text.size())));
    verifier.on_body_end();
    for (const auto& name : verifier.key_queries())
        verifier.on_key(name, session::key_lookup(g.txt(o, name)));
    std::uint64_t now =
        o.now != 0
            ? o.now
            : static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
    std::vector<policy::DkimFact> out;
    for (auto& r : verifier.results(now)) {
        g.dkim.push_back({{"domain", r.domain},
                          {"selector", r.selector},
                          {"status", dkim::to_string(r.status)},
                          {"key_name", r.key_name},
                          {"key_cname_target", r.key_cname_target},
                          {"length_limited", r.length_limited},
                          {"detail", r.detail}});
        out.push_back(session::dkim_fact(std::move(r)));
    }
    return out;
}

void run_explain(const ExplainOptions& o) {
    auto pol = load_or_report(o.policy_file);
    if (!pol) exit_with(2);

    policy::ConnectionFacts conn;
    if (!o.client_ip.empty()) {
        conn.client_ip = policy::IpAddress::parse(o.client_ip);
        if (!conn.client_ip) {
            fmt::print(stderr, "error: --client-ip \"{}\" is not an IP address\n", o.client_ip);
            exit_with(2);
        }
    }
    if (!o.auth_user.empty()) conn.sasl_user = o.auth_user;
    if (!o.cert_sha256.empty()) conn.client_cert_sha256 = o.cert_sha256;
    if (!o.spki_sha256.empty()) conn.client_spki_sha256 = o.spki_sha256;

    std::string err;
    auto env = envelope_from(o.mail_from, err);
    if (!env) {
        fmt::print(stderr, "error: --mail-from {}\n", err);
        exit_with(2);
    }

    // Header facts: from --message (read by the same header reader the
    // gateway uses), and/or --from/--sender/--tenant-header.
    std::optional<policy::HeaderFactsForPolicy> hdr;
    std::string text;                          // the message, if given
    std::optional<message::HeaderFacts> read;  // its header, as the gateway reads it
    if (!o.message_file.empty()) {
        std::ifstream in(o.message_file, std::ios::binary);
        if (!in) {
            fmt::print(stderr, "error: cannot open --message {}\n", o.message_file);
            exit_with(2);
        }
        std::ostringstream buf;
        buf << in.rdbuf();
        text = buf.str();
        message::HeaderOptions opts;
        opts.smtputf8 = true;  // explain cannot know; the SMTP layer decides this
        auto facts = message::read_header(text, opts);
        if (!facts) {
            const auto& r = info(facts.error().reason);
            fmt::print("message refused by the header reader: {} ({})\n  reply: {} {} {}\n",
                       r.label, facts.error().detail, r.smtp_code, r.enhanced, r.text);
            exit_with(1);
        }
        hdr.emplace();
        for (const auto& m : facts->originators)
            hdr->originators.push_back({m.field, m.domain});
        for (const auto& name : pol->provider_tenant_headers())
            for (auto v : facts->values(name))
                hdr->provider_header_values.emplace_back(v);
        read = std::move(facts).value();
    }
    auto add_originators = [&](const std::vector<std::string>& addrs,
                               message::OriginatorField field, std::string_view flag) {
        for (const auto& a : addrs) {
            std::string e;
            auto parsed = envelope_from(a, e);
            if (!parsed || parsed->null_sender) {
                fmt::print(stderr, "error: {} {}\n", flag, parsed ? "must not be empty" : e);
                exit_with(2);
            }
            if (!hdr) hdr.emplace();
            hdr->originators.push_back({field, parsed->domain});
        }
    };
    add_originators(o.from, message::OriginatorField::from, "--from");
    add_originators(o.sender, message::OriginatorField::sender, "--sender");
    if (!o.tenant_header.empty()) {
        if (!hdr) hdr.emplace();
        hdr->provider_header_values.insert(hdr->provider_header_values.end(),
                                           o.tenant_header.begin(), o.tenant_header.end());
    }

    GatheredFacts gathered;
    Decision mail =
        with_domain_proofs(o, gathered, *env, [&] { return pol->at_mail_from(conn, *env); });
    std::optional<Decision> header, eod;
    if (mail.accepted() && hdr) {
        header =
            with_domain_proofs(o, gathered, *env, [&] { return pol->at_header(conn, *env, *hdr); });
        if (header->accepted()) {
            // The gateway verifies DKIM only when the identity requires it;
            // explain shows the signatures of any message it is given.
            std::vector<policy::DkimFact> signatures;
            if (read) signatures = verify_dkim(o, gathered, text, *read);
            eod = pol->at_end_of_data(conn, *env, *hdr, signatures);
        }
    }
    const Decision& last = eod ? *eod : header ? *header : mail;
    bool accepted = last.accepted() && !(last.pending_header);

    const std::string_view final_word = accepted              ? "accept"
                                        : last.pending_header ? "pending_header"
                                        : last.verdict == policy::Verdict::tempfail ? "tempfail"
                                                                                    : "reject";
    if (o.json) {
        nlohmann::json out = {
            {"policy_hash", pol->hash()},
            {"mail_from", to_json(mail)},
            {"header", header ? to_json(*header) : nlohmann::json()},
            {"end_of_data", eod ? to_json(*eod) : nlohmann::json()},
            {"dns", gathered.dns},
            {"dkim", gathered.dkim},
            {"final", final_word},
        };
        fmt::print("{}\n", out.dump(2));
    } else {
        fmt::print("policy {} ({})\n", o.policy_file, pol->hash());
        for (const auto& q : gathered.dns)
            fmt::print("dns: TXT {} -> {}{}{}\n", q["name"].get<std::string>(),
                       q["status"].get<std::string>(),
                       q["cname_target"].get<std::string>().empty()
                           ? ""
                           : " via CNAME " + q["cname_target"].get<std::string>(),
                       q["records"].empty()
                           ? ""
                           : " " + q["records"].dump(-1, ' ', false,
                                                     nlohmann::json::error_handler_t::replace));
        for (const auto& s : gathered.dkim)
            fmt::print("dkim: {} d={} s={}{}{}\n", s["status"].get<std::string>(),
                       s["domain"].get<std::string>(), s["selector"].get<std::string>(),
                       s["length_limited"].get<bool>() ? " (l= set)" : "",
                       s["detail"].get<std::string>().empty()
                           ? ""
                           : " -- " + s["detail"].get<std::string>());
        print_decision("MAIL FROM", mail);
        if (header) {
            print_decision("end of header", *header);
        } else if (mail.accepted()) {
            fmt::print(
                "end of header: not evaluated (give --message or "
                "--from/--sender/--tenant-header)\n");
        }
        if (eod) print_decision("end of data", *eod);
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
    auto check_file = std::make_shared<std::string>();
    auto config_file = std::make_shared<std::string>();
    auto* policy_opt = check->add_option("--policy", *check_file, "Policy file (JSON)");
    auto* config_opt =
        check->add_option("--config", *config_file,
                          "Gateway config (JSON): checks it, its TLS files and its policy file");
    policy_opt->excludes(config_opt);
    check->callback([check_file, config_file] {
        if (check_file->empty() && config_file->empty()) {
            fmt::print(stderr, "error: give --policy FILE or --config FILE\n");
            exit_with(2);
        }
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
            *check_file = cfg->policy_file.string();
            fmt::print("config OK: {} listener{}, upstream {}:{}\n", cfg->listeners.size(),
                       cfg->listeners.size() == 1 ? "" : "s", cfg->upstream.host,
                       cfg->upstream.port);
            for (const auto& w : config::config_warnings(*cfg, server::hard_descriptor_limit()))
                fmt::print("warning: {}\n", w);
        }
        auto pol = load_or_report(*check_file);
        if (!pol) exit_with(1);
        fmt::print("policy OK: {} tenants, {} domains\n", pol->tenant_count(), pol->domain_count());
        fmt::print("policy hash: {}\n", pol->hash());
    });

    auto* explain = app.add_subcommand(
        "explain", "Show what would happen to a message from a client, with the decision trace");
    auto o = std::make_shared<ExplainOptions>();
    explain->add_option("--policy", o->policy_file, "Policy file (JSON)")->required();
    explain->add_option("--client-ip", o->client_ip, "Client address (after PROXY protocol)")
        ->required();
    explain->add_option("--mail-from", o->mail_from, "Envelope sender: user@domain, or <> for null")
        ->required();
    explain->add_option("--message", o->message_file,
                        "Message file (.eml, CRLF lines): originators, tenant header, and its "
                        "DKIM signatures (keys fetched over DNS)");
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
