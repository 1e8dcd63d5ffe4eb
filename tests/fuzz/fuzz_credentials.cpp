// libFuzzer target for the credentials file parser: arbitrary bytes give
// users with well-formed hashes or diagnostics with line numbers, never a
// crash; a parsed file then feeds a policy load, and a user the policy
// names gets exactly the parsed hash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/engine/credentials.hpp"
#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy.hpp"

using namespace relaygate::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto creds = parse_credentials(text, "fuzz");
    if (!creds) {
        for (const auto& e : creds.error()) {
            if (e.file != "fuzz" || e.line == 0) __builtin_trap();
            (void)format_diagnostic(e);
        }
        return 0;
    }
    for (const auto& [user, cred] : creds->users)
        if (!valid_sasl_user(user) || !parse_password_hash(cred.hash)) __builtin_trap();
    auto loaded = Policy::load_text(R"({"version": 1, "tenants": {"app": {
        "domains": ["app.example"], "identities": [{"sasl_user": "app"}]}}})",
                                    &*creds);
    const auto it = creds->users.find("app");
    if (loaded.ok() != (it != creds->users.end())) __builtin_trap();
    if (loaded && *(*loaded)->sasl_hash("app") != it->second.hash) __builtin_trap();
    return 0;
}
