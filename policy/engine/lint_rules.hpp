// The linter's rules: every rule id a policy diagnostic can carry, with its
// severity, in one table. The loader names a rule only through ErrorRule /
// WarningRule, which do not compile for an id missing here (or listed with
// the other severity); policy/README.md's table is checked against this one
// by tests/docs/check_docs.py.
#pragma once

#include <array>
#include <string_view>

namespace relaygate::policy {

enum class Severity { error, warning };

struct LintRule {
    std::string_view id;  // stable: scripts match "[<id>]" in `relaygate check` output
    Severity severity;
};

inline constexpr std::array kLintRules{
    // Structure: the file cannot be read as a policy at all.
    LintRule{"io", Severity::error},
    LintRule{"json_syntax", Severity::error},
    LintRule{"duplicate_key", Severity::error},
    LintRule{"schema", Severity::error},
    LintRule{"version", Severity::error},
    LintRule{"invalid_name", Severity::error},
    LintRule{"duplicate_tenant", Severity::error},
    LintRule{"invalid_credential", Severity::error},
    // Errors: the whole file is refused.
    LintRule{"shared_network_overlap", Severity::error},
    LintRule{"domain_granted_twice", Severity::error},
    LintRule{"wildcard_public_suffix", Severity::error},
    LintRule{"duplicate_domain", Severity::error},
    LintRule{"invalid_domain", Severity::error},
    LintRule{"invalid_wildcard", Severity::error},
    LintRule{"network_host_bits", Severity::error},
    LintRule{"invalid_network", Severity::error},
    LintRule{"unknown_provider", Severity::error},
    LintRule{"empty_tenant", Severity::error},
    LintRule{"invalid_fingerprint", Severity::error},
    LintRule{"invalid_password_hash", Severity::error},
    LintRule{"duplicate_sasl_user", Severity::error},
    LintRule{"missing_password_hash", Severity::error},
    LintRule{"duplicate_password_hash", Severity::error},
    LintRule{"duplicate_identity", Severity::error},
    LintRule{"dkim_domain_suffix", Severity::error},
    LintRule{"dkim_domains_missing", Severity::error},
    LintRule{"invalid_rate", Severity::error},
    // Warnings: printed by `check`, the policy loads.
    LintRule{"report_mode", Severity::warning},
    LintRule{"network_overlap", Severity::warning},
    LintRule{"identity_shared", Severity::warning},
    LintRule{"weak_password_hash", Severity::warning},
    LintRule{"unused_credential", Severity::warning},
    LintRule{"domain_public_suffix", Severity::warning},
    LintRule{"network_too_broad", Severity::warning},
    LintRule{"unused_provider", Severity::warning},
    LintRule{"dkim_domains_unused", Severity::warning},
    LintRule{"rate_shadowed", Severity::warning},
    LintRule{"duplicate_rate", Severity::warning},
    LintRule{"burst_unusable", Severity::warning},
    LintRule{"bytes_burst_small", Severity::warning},
};

constexpr const LintRule* find_lint_rule(std::string_view id) {
    for (const auto& r : kLintRules)
        if (r.id == id) return &r;
    return nullptr;
}

// A rule id checked at compile time: a literal that is not a rule of
// severity S in kLintRules makes the call not a constant expression.
// g++ 12 cannot constant-evaluate the lookup in a sanitizer build (its
// instrumented pointer checks are not constant expressions), so there the
// check runs when the call does; every other build checks at compile time.
#if defined(__SANITIZE_ADDRESS__)
#define RELAYGATE_RULE_CHECK constexpr
#else
#define RELAYGATE_RULE_CHECK consteval
#endif
template <Severity S>
struct RuleId {
    RELAYGATE_RULE_CHECK RuleId(const char* literal) : id(literal) {
        const LintRule* r = find_lint_rule(id);
        if (r == nullptr || r->severity != S) throw "not in kLintRules with this severity";
    }
    std::string_view id;
};
#undef RELAYGATE_RULE_CHECK
using ErrorRule = RuleId<Severity::error>;
using WarningRule = RuleId<Severity::warning>;

}  // namespace relaygate::policy
