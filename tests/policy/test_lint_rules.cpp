// Tests for the lint rule table: ids are unique and stable in form, and the
// diagnostics the loader builds outside ErrorRule/WarningRule (I/O, JSON
// syntax, duplicate keys) name rules of the table too.
#include "policy/engine/lint_rules.hpp"

#include "policy/engine/policy.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace relaygate::policy;

namespace {
void check_in_table(const std::vector<Diagnostic>& diagnostics, Severity severity) {
    REQUIRE_FALSE(diagnostics.empty());
    for (const auto& d : diagnostics) {
        CAPTURE(d.rule);
        const LintRule* rule = find_lint_rule(d.rule);
        REQUIRE(rule != nullptr);
        CHECK(rule->severity == severity);
    }
}
}  // namespace

TEST_CASE("rule ids are unique, lower-case identifiers") {
    std::set<std::string_view> ids;
    for (const auto& r : kLintRules) {
        CAPTURE(r.id);
        CHECK(ids.insert(r.id).second);
        CHECK_FALSE(r.id.empty());
        for (char c : r.id)
            CHECK(((c >= 'a' && c <= 'z') || c == '_'));
    }
    CHECK(ErrorRule("schema").id == "schema");
    CHECK(WarningRule("report_mode").id == "report_mode");
}

TEST_CASE("every diagnostic of a refused file names a rule of the table") {
    check_in_table(Policy::load_text("{\"version\": 1,").error(), Severity::error);
    check_in_table(Policy::load_text("{\"version\": 1, \"version\": 1}").error(), Severity::error);
    check_in_table(Policy::load_file("/nonexistent/relaygate/policy.json").error(),
                   Severity::error);
    check_in_table(Policy::load_text(R"({"version": 1, "tenants": {"a": {"domains": ["a.example"],
                          "identities": [{"networks": ["10.0.0.1/8"]}]}}})")
                       .error(),
                   Severity::error);
}

TEST_CASE("every warning of a loaded file names a warning rule") {
    auto p = Policy::load_text(R"({"version": 1, "mode": "report", "tenants": {"a": {
        "domains": ["a.example"], "identities": [{"networks": ["10.0.0.0/7"]}]}}})");
    REQUIRE(p);
    check_in_table((*p)->warnings(), Severity::warning);
}
