// Policy: the compiled, immutable policy file and the decision functions.
// Loading (policy_loader.cpp) may throw internally but reports every problem
// as a Diagnostic with its JSON path; evaluation (policy.cpp) never throws
// on any input and never performs I/O.
#pragma once

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"
#include "policy/engine/cidr_index.hpp"
#include "policy/engine/decision.hpp"
#include "policy/engine/domain_index.hpp"
#include "policy/engine/flat_table.hpp"
#include "policy/engine/slot_map.hpp"
#include "policy/engine/table_memory.hpp"

namespace relaygate::policy {

// One load error or lint warning. `path` is an RFC 6901 JSON pointer into
// the policy file ("" for the whole file), `rule` a stable identifier;
// `line` and `column` (1-based) locate the path's value in the text, 0 when
// there is no text (load() of a document, a file that cannot be read).
// `file` names the file when the policy came from several (a policy_dir,
// a credentials file); empty for a single policy file.
struct Diagnostic {
    std::string path;
    std::string rule;
    std::string message;
    std::size_t line = 0;
    std::size_t column = 0;
    std::string file{};
};
using LoadError = Diagnostic;
using LintWarning = Diagnostic;
// "[<file>: ]<path> (line L, column C): <message> [<rule>]"
std::string format_diagnostic(const Diagnostic& d);

// Whether a decision carries its human-readable trace. The trace costs
// string formatting on every decision; the gateway's hot path can skip it
// and `explain` (or a debug log) asks for it.
enum class Trace { on, off };

// The tenant id named by one TXT record at _relaygate.<domain>:
// "v=relaygate1; tenant=<id>" (tags separated by ';', optional spaces, v=
// first, unknown tags ignored). nullopt for any other record.
std::optional<std::string> parse_domain_proof(std::string_view txt);

// Tenant and provider names: 1-64 of [A-Za-z0-9._-]. They become metric
// label values, verdict header fields and Redis hash tags, so they are
// restricted to a safe, unambiguous alphabet.
bool valid_name(std::string_view s);
// SASL user names: 1-255 octets of UTF-8 without control characters.
bool valid_sasl_user(std::string_view s);
// The tenant label of a transaction no tenant sent; reserved as a tenant id.
inline constexpr std::string_view kNoTenantLabel = "none";

class Policy;
class PolicyText;  // policy_loader.cpp
struct Credentials;
using LoadResult = Result<std::shared_ptr<const Policy>, std::vector<LoadError>>;
// Fills in where each diagnostic is (file, line, column), for a document
// that was not parsed from one text (policy_source.cpp's merged directory).
using DiagnosticLocator = std::function<void(std::vector<Diagnostic>&)>;

class Policy {
  public:
    // Compiles and lints; any error refuses the whole file. A sasl_user
    // without "password_hash" takes its hash from `credentials`.
    static LoadResult load(const nlohmann::json& doc, const Credentials* credentials = nullptr,
                           const DiagnosticLocator& locator = {});
    // Parses JSON text first; duplicate object keys are errors (nlohmann
    // would silently keep the last one, e.g. the second "acme" tenant).
    //
    // `previous`, when given, is the policy this one replaces (a reload):
    // the domain index shares every shard that no changed, added or
    // removed tenant has a name in (an incremental load; see
    // load_streaming). The result decides as a full load's does.
    static LoadResult load_text(std::string_view text, const Credentials* credentials = nullptr,
                                const Policy* previous = nullptr);
    static LoadResult load_file(const std::filesystem::path& file,
                                const Credentials* credentials = nullptr,
                                const Policy* previous = nullptr);
    // Files read in ranges, never whole (load_file; and a policy_dir's
    // files merged when `dir`: "tenants" split over them, any other key in
    // one). nullopt when they are not plain enough for it, or do not merge
    // cleanly: the caller then parses them whole, which reports the problem.
    static std::optional<LoadResult> load_files(const std::vector<std::filesystem::path>& files,
                                                bool dir, const Credentials* credentials,
                                                const Policy* previous = nullptr);
    // An open file (a fetched policy the gateway wrote itself), read in
    // ranges through `fd` (not its name, which could be replaced meanwhile);
    // `name` only names it in errors. `fd` stays open.
    static LoadResult load_descriptor(int fd, const std::filesystem::path& name,
                                      const Credentials* credentials = nullptr,
                                      const Policy* previous = nullptr);

    const std::string& hash() const { return hash_; }  // "sha256:<hex>" of the canonical JSON
    std::size_t tenant_count() const { return tenants_.size(); }
    std::size_t domain_count() const { return domain_count_; }
    std::vector<std::string> tenant_ids() const;  // sorted
    // Whether some tenant has this id (no copy of the ids: a binary
    // search, tenants are numbered in the ids' order).
    bool has_tenant(std::string_view id) const;
    std::vector<LintWarning> warnings() const { return warnings_; }
    // The domain index (read-only; tests compare incremental and full loads).
    const DomainIndex& domain_index() const { return domains_; }
    // The id of the tenant a grant of domain_index() names (its `tenant`
    // is a slot, not a tenant number: see slots_).
    std::string_view grant_tenant(const DomainIndex::Grant& g) const {
        return tenant_id(tenant_of_slot(g.tenant));
    }
    // Slots of the domain index, held or free (tenant_count() after a
    // full load; see slots_).
    std::size_t slot_count() const { return slots_.slot_count(tenants_.size()); }
    // Runs of tenants whose slots follow their numbers (0 after a full load).
    std::size_t slot_runs() const { return slots_.run_count(); }
    // Chunks of tenant records (1024 each) this policy shares with `other`.
    std::size_t tenant_chunks_shared_with(const Policy& other) const {
        return tenants_.chunks_shared_with(other.tenants_);
    }
    Mode default_mode() const { return default_mode_; }

    // Decision point 2 (MAIL FROM): identify the tenant and authorize the
    // envelope domain. Provider identities are only candidates here (their
    // proof is in the header): see Decision::pending_header.
    Decision at_mail_from(const ConnectionFacts& conn, const EnvelopeFacts& env,
                          Trace trace = Trace::on) const;
    // Decision point 4 (end of header section): full re-evaluation with the
    // provider attestation and every originator domain.
    Decision at_header(const ConnectionFacts& conn, const EnvelopeFacts& env,
                       const HeaderFactsForPolicy& hdr, Trace trace = Trace::on) const;
    // Decision point 5 (end of data, the commit point): the header decision
    // again, plus DKIM corroboration for provider identities that require
    // it (`dkim`: every signature the gateway verified).
    Decision at_end_of_data(const ConnectionFacts& conn, const EnvelopeFacts& env,
                            const HeaderFactsForPolicy& hdr, const std::vector<DkimFact>& dkim,
                            Trace trace = Trace::on) const;

    // True when some "limits" block sets a rate: the session needs a store.
    bool uses_limits() const { return uses_limits_; }

    // True when some identity requires DKIM / some grant requires DNS.
    bool uses_dkim() const { return !dkim_.empty(); }
    bool uses_dns_verification() const { return dns_verified_grants_ > 0; }

    // Field names whose values the gateway must collect into
    // HeaderFactsForPolicy::provider_header_values (distinct, as written).
    std::vector<std::string> provider_tenant_headers() const;

    // The password hash for a SASL user (for AUTH), nullptr if unknown.
    const std::string* sasl_hash(std::string_view user) const;
    // A hash no password matches, with the highest PBKDF2 cost of the
    // policy's users: what an unknown user's AUTH is checked against.
    const std::string& sasl_decoy_hash() const { return sasl_decoy_hash_; }
    // The tenant a SASL user belongs to, empty if unknown.
    std::string sasl_tenant(std::string_view user) const;

  private:
    friend class PolicyCompiler;
    // load() and load_text(): `text`, when given, locates the diagnostics.
    static LoadResult build(const nlohmann::json& doc, const DiagnosticLocator& locator,
                            const Credentials* credentials);
    // A policy without a tree of the whole file: the tenants are found by
    // a scan, then read, parsed, compiled and hashed one at a time in the
    // order of their ids (memory: one tenant, not 10x the file; no copy of
    // the canonical text to sort for the hash; from a file, not even the
    // file's text). nullopt when the text is not plain enough for it (see
    // json_reader::MemberScanner, or any syntax error): the caller then
    // parses it whole (load_whole), which reports the problem precisely.
    // `dir`: the directory of the files, named by diagnostics not about one.
    //
    // With a `previous` policy, each tenant's text is digested first and
    // the tenants are matched by id; the domain index starts as the
    // previous one without the grants of the tenants whose text changed or
    // that are gone (DomainIndex::without), and only the changed and new
    // tenants' domains are inserted (under their slots), and linted
    // against every other grant. Every other table is compiled as in a full
    // load. Any error repeats the load in full, so that the diagnostics
    // are those of `check`.
    static std::optional<LoadResult> load_streaming(PolicyText& text,
                                                    const Credentials* credentials,
                                                    const std::filesystem::path& dir = {},
                                                    const Policy* previous = nullptr);
    static LoadResult load_whole(std::string_view text, const Credentials* credentials);
    // 24 octets: the id is in ids_ (as a std::string here it took 32 of
    // 48, 2.4 MB at 100k tenants in every policy a reload holds).
    struct Tenant {
        std::uint32_t id_at = 0;  // ids_[id_at, +id_size)
        std::uint32_t id_size = 0;
        // Providers it has identities with: tenant_providers_[begin, +count).
        std::uint32_t providers_begin = 0;
        std::uint32_t providers_count = 0;
        std::uint32_t limits = 0;  // index into tenant_limits_ (0: the top-level block)
        Mode mode = Mode::enforce;
        bool allow_null_sender = false;
        friend bool operator==(const Tenant&, const Tenant&) = default;
    };
    std::string_view id_of(const Tenant& t) const { return {ids_.data() + t.id_at, t.id_size}; }
    std::string_view tenant_id(std::size_t t) const { return id_of(tenants_[t]); }
    // The tenants by number, in chunks of 1024 records. In an incremental
    // load, a chunk that compiled exactly as the previous policy's chunk of
    // the same number is that chunk, shared: a reload that changes one of
    // 100k tenants allocates one chunk (48 KB), not 4.8 MB of records. A
    // full load of 2 MiB of records and more carves the chunks from one
    // mapping of huge pages (decisions read a random tenant's record).
    class TenantTable {
      public:
        std::size_t size() const { return size_; }
        const Tenant& operator[](std::size_t i) const {
            return (*chunks_[i >> kShift])[i & (kChunk - 1)];
        }
        void reserve(std::size_t n, bool huge_pages);
        // Appends; a chunk that just filled is compared with `previous`'s.
        void push_back(Tenant t, const TenantTable* previous);
        // The last tenant, while it is compiled.
        Tenant& last() { return open_->back(); }
        // After the last push_back: compares the last chunk.
        void seal(const TenantTable* previous);
        std::size_t chunks_shared_with(const TenantTable& other) const;

      private:
        void close(const TenantTable* previous);  // the open chunk, full or last

        static constexpr unsigned kShift = 10;
        static constexpr std::size_t kChunk = std::size_t(1) << kShift;
        using Chunk = std::vector<Tenant, TableAllocator<Tenant>>;
        std::vector<std::shared_ptr<const Chunk>> chunks_;
        std::shared_ptr<TableRegion> region_;  // while loading
        std::shared_ptr<Chunk> open_;          // the last chunk, while it fills
        std::shared_ptr<Chunk> spare_;         // an open chunk that was shared instead
        std::size_t size_ = 0;
    };
    // A tenant's effective limits: the top-level block with the tenant's
    // overrides applied. Only tenants with their own "limits" have an entry
    // of their own; every other tenant shares entry 0, so 100k tenants
    // without overrides cost nothing.
    struct TenantLimits {
        LimitSet set;
        LimitMode mode = LimitMode::enforce;
        SpikeAction on_spike = SpikeAction::log;
    };
    // Limits of one identity or one domain grant, added to the tenant's.
    struct ScopedLimits {
        LimitScope scope = LimitScope::identity;
        std::string subject;  // AppliedLimit::subject
        LimitSet set;
    };
    // scoped_index_ key: a tag ('n' network, 'c' certificate, 's' SPKI,
    // 'u' SASL user, 'p' provider tenant id, 'd' domain grant), the tenant
    // number (4 bytes, native order), then the identity or the pattern.
    static std::string scoped_key(char tag, std::uint32_t tenant, std::string_view id) {
        std::string k(1 + sizeof tenant, tag);
        std::memcpy(k.data() + 1, &tenant, sizeof tenant);
        k += id;
        return k;
    }
    // The network part of a 'n' key: address bytes, prefix length, family.
    static std::string network_id(const Cidr& c) {
        std::string id(c.address.bytes().begin(), c.address.bytes().end());
        id += static_cast<char>(c.prefix_len);
        id += c.address.is_v4() ? '4' : '6';
        return id;
    }
    struct Provider {
        std::string name;
        bool shared = true;
        std::string tenant_header;
        std::string dkim_domain_suffix;  // ".onmicrosoft.com", or empty
        std::vector<Cidr> networks;
        std::size_t null_sender_tenants = 0;  // tenants of it with allow_null_sender
        std::size_t tenants = 0;
    };
    // The owners of a network, certificate pin or provider tenant id: one
    // tenant (or provider) number inline, or with kOwnerList set an index
    // into owner_lists_, so the usual single owner costs no extra cache
    // miss. Tenant numbers stay below 2^31 (a policy with more could not be
    // held in memory).
    using OwnerRef = std::uint32_t;
    static constexpr OwnerRef kOwnerList = 0x8000'0000U;
    struct SaslEntry {
        std::uint32_t tenant;
        std::string password_hash;
    };

    // A provider identity's DKIM corroboration: a passing signature whose
    // d= (or key record CNAME target) is one of these domains.
    struct DkimRequirement {
        std::vector<std::string> domains;
    };
    // dkim_index_ key: tenant number (4 bytes) + provider_tenant_index_ key.
    static std::string dkim_key(std::uint32_t tenant, std::string_view provider_key) {
        std::string k(sizeof tenant, '\0');
        std::memcpy(k.data(), &tenant, sizeof tenant);
        k += provider_key;
        return k;
    }

    enum class Stage { mail_from, header, end_of_data };
    struct Candidate;
    struct Needs;
    struct Facts;
    // Appends trace lines only when tracing is on.
    struct Tracer {
        std::vector<std::string>* lines;  // null when tracing is off
        template <class... A>
        void operator()(fmt::format_string<A...> f, A&&... args) const {
            if (lines) lines->push_back(fmt::format(f, std::forward<A>(args)...));
        }
        explicit operator bool() const { return lines != nullptr; }
    };
    Decision evaluate(Stage stage, const ConnectionFacts& conn, const EnvelopeFacts& env,
                      const HeaderFactsForPolicy* hdr, const std::vector<DkimFact>* dkim,
                      Trace trace) const;
    template <class Out>
    void identify_strong(const Facts& facts, Out& out, const Tracer& note) const;
    Reason check_candidate(Stage stage, const Candidate& c, const EnvelopeFacts& env,
                           const HeaderFactsForPolicy* hdr, const std::vector<DkimFact>* dkim,
                           DomainIndex::Match& grant, Needs& needs, const Tracer& note) const;
    Reason check_proof(const Tenant& t, const DomainIndex::Match& g, const EnvelopeFacts& env,
                       Needs& needs, const Tracer& note) const;
    Reason check_dkim(const Candidate& c, const std::vector<DkimFact>& dkim,
                      const Tracer& note) const;
    std::string detail_of(const Candidate& c, const Facts& facts) const;
    void finish(Decision& d, Mode mode, const Tracer& note) const;
    // Fills Decision::limits, limits_mode and on_spike for a passing
    // decision with one tenant proven by `c`.
    void attach_limits(Decision& d, const Candidate& c, const Facts& facts,
                       const Tracer& note) const;
    // f(owner) for each owner.
    template <class F>
    void each_owner(OwnerRef o, F&& f) const {
        if ((o & kOwnerList) == 0) {
            f(o);
            return;
        }
        for (auto t : owner_lists_[o & ~kOwnerList])
            f(t);
    }

    // The domain index names a tenant by its slot, not its number. Tenant
    // numbers follow the ids' order, so a reload that adds or removes a
    // tenant renumbers most of them; an incremental load keeps each kept
    // tenant's slot (a new tenant takes a free one), so that it shares the
    // index's shards as a reload that only changes tenants does. Identity
    // after every full load.
    SlotMap slots_;
    static constexpr std::uint32_t kFreeSlot = SlotMap::kFree;
    std::uint32_t slot_of(std::uint32_t t) const { return slots_.slot(t); }
    std::uint32_t tenant_of_slot(std::uint32_t s) const { return slots_.tenant(s); }

    // SHA-256 (first 16 bytes) of each tenant's text as read, by tenant
    // number; empty when the policy was parsed as one tree.
    using TenantDigest = std::array<unsigned char, 16>;
    std::vector<TenantDigest> tenant_digests_;

    std::string hash_;
    Mode default_mode_ = Mode::enforce;
    std::string ids_;  // the tenants' ids, one after another in tenant order
    TenantTable tenants_;
    std::vector<Provider> providers_;
    std::vector<std::uint32_t> tenant_providers_;  // see Tenant
    std::size_t domain_count_ = 0;
    DomainIndex domains_;
    CidrIndex network_index_;                              // slot: OwnerRef of tenants
    CidrIndex provider_index_;                             // slot: OwnerRef of provider numbers
    std::vector<std::vector<std::uint32_t>> owner_lists_;  // see OwnerRef
    // Lower-case hex fingerprint -> tenants.
    FlatStringMap<OwnerRef> cert_index_;
    FlatStringMap<OwnerRef> spki_index_;
    // User name -> index into sasl_entries_.
    FlatStringMap<std::uint32_t> sasl_index_;
    std::vector<SaslEntry> sasl_entries_;
    std::string sasl_decoy_hash_;
    // Key: provider number (4 bytes, native order), lower-case tenant id.
    FlatStringMap<OwnerRef> provider_tenant_index_;
    FlatStringMap<std::uint32_t> dkim_index_;  // dkim_key() -> index into dkim_
    std::vector<DkimRequirement> dkim_;
    std::size_t dns_verified_grants_ = 0;
    std::vector<TenantLimits> tenant_limits_{1};  // see Tenant::limits
    FlatStringMap<std::uint32_t> scoped_index_;   // scoped_key() -> index into scoped_limits_
    std::vector<ScopedLimits> scoped_limits_;
    bool uses_limits_ = false;
    std::vector<LintWarning> warnings_;
};

}  // namespace relaygate::policy
