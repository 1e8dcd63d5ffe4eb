// Policy: the compiled, immutable policy file and the decision functions.
// Loading (policy_loader.cpp) may throw internally but reports every problem
// as a Diagnostic with its JSON path; evaluation (policy.cpp) never throws
// on any input and never performs I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/common/result.hpp"
#include "policy/engine/cidr_index.hpp"
#include "policy/engine/decision.hpp"
#include "policy/engine/domain_index.hpp"

namespace relaygate::policy {

// One load error or lint warning. `path` is an RFC 6901 JSON pointer into
// the policy file ("" for the whole file), `rule` a stable identifier.
struct Diagnostic {
    std::string path;
    std::string rule;
    std::string message;
};
using LoadError = Diagnostic;
using LintWarning = Diagnostic;
std::string format_diagnostic(const Diagnostic& d);  // "<path>: <message> [<rule>]"

class Policy;
using LoadResult = Result<std::shared_ptr<const Policy>, std::vector<LoadError>>;

class Policy {
public:
    // Compiles and lints; any error refuses the whole file.
    static LoadResult load(const nlohmann::json& doc);
    // Parses JSON text first; duplicate object keys are errors (nlohmann
    // would silently keep the last one, e.g. the second "acme" tenant).
    static LoadResult load_text(std::string_view text);
    static LoadResult load_file(const std::filesystem::path& file);

    std::string hash() const { return hash_; }  // "sha256:<hex>" of the canonical JSON
    std::size_t tenant_count() const { return tenants_.size(); }
    std::size_t domain_count() const { return domain_count_; }
    std::vector<std::string> tenant_ids() const;
    std::vector<LintWarning> warnings() const { return warnings_; }
    Mode default_mode() const { return default_mode_; }

    // Decision point 2 (MAIL FROM): identify the tenant and authorize the
    // envelope domain. Provider identities are only candidates here (their
    // proof is in the header): see Decision::pending_header.
    Decision at_mail_from(const ConnectionFacts& conn, const EnvelopeFacts& env) const;
    // Decision point 4 (end of header section): full re-evaluation with the
    // provider attestation and every originator domain.
    Decision at_header(const ConnectionFacts& conn, const EnvelopeFacts& env,
                       const HeaderFactsForPolicy& hdr) const;
    // Decision point 5 (end of data): re-asserts the header decision; the
    // place where DKIM facts will be checked once they are gathered.
    Decision at_end_of_data(const ConnectionFacts& conn, const EnvelopeFacts& env,
                            const HeaderFactsForPolicy& hdr) const;

    // Field names whose values the gateway must collect into
    // HeaderFactsForPolicy::provider_header_values (distinct, as written).
    std::vector<std::string> provider_tenant_headers() const;

    // The password hash for a SASL user (for AUTH), nullptr if unknown.
    const std::string* sasl_hash(std::string_view user) const;
    // The tenant a SASL user belongs to, empty if unknown.
    std::string sasl_tenant(std::string_view user) const;

private:
    friend class PolicyCompiler;
    struct Tenant {
        std::string id;
        Mode mode = Mode::enforce;
        bool allow_null_sender = false;
        std::vector<std::uint32_t> providers;  // providers it has identities with
    };
    struct Provider {
        std::string name;
        bool shared = true;
        std::string tenant_header;
        std::vector<Cidr> networks;
        std::size_t null_sender_tenants = 0;  // tenants of it with allow_null_sender
        std::size_t tenants = 0;
    };
    struct NetSlot {
        Cidr cidr;
        std::vector<std::uint32_t> tenants;
    };
    struct SaslEntry {
        std::uint32_t tenant;
        std::string password_hash;
    };
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    template <class V>
    using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

    enum class Stage { mail_from, header };
    struct Candidate {
        std::uint32_t tenant;
        IdentityKind kind;
        std::string detail;
    };
    Decision evaluate(Stage stage, const ConnectionFacts& conn, const EnvelopeFacts& env,
                      const HeaderFactsForPolicy* hdr) const;
    void identify_strong(const ConnectionFacts& conn, std::vector<Candidate>& out,
                         std::vector<std::string>& trace) const;
    Reason check_candidate(Stage stage, const Candidate& c, const EnvelopeFacts& env,
                           const HeaderFactsForPolicy* hdr, std::string& grant,
                           std::vector<std::string>& trace) const;
    void finish(Decision& d, Mode mode) const;

    std::string hash_;
    Mode default_mode_ = Mode::enforce;
    std::vector<Tenant> tenants_;
    std::vector<Provider> providers_;
    std::size_t domain_count_ = 0;
    DomainIndex domains_;
    CidrIndex network_index_;
    std::vector<NetSlot> network_slots_;
    CidrIndex provider_index_;
    std::vector<NetSlot> provider_slots_;  // `tenants` holds provider numbers here
    StringMap<std::vector<std::uint32_t>> cert_index_;
    StringMap<std::vector<std::uint32_t>> spki_index_;
    StringMap<SaslEntry> sasl_index_;
    // Key: provider number, '\0', lower-case tenant id.
    StringMap<std::vector<std::uint32_t>> provider_tenant_index_;
    std::vector<LintWarning> warnings_;
};

}  // namespace relaygate::policy
