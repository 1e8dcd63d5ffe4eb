// Policy loading: JSON -> validated, linted, indexed Policy. Collects every
// problem (never stops at the first) with its JSON pointer. Exceptions from
// nlohmann are caught here and become diagnostics; nothing escapes load().
// Must not evaluate decisions; the rules it enforces are listed in README.md.
#include <fmt/format.h>
#include <libpsl.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/common/file.hpp"
#include "gateway/common/sha256.hpp"
#include "gateway/json/document.hpp"
#include "policy/engine/credentials.hpp"
#include "policy/engine/lint_rules.hpp"
#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::policy {

using nlohmann::json;

bool valid_name(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (unsigned char c : s)
        if (!ascii::is_alnum(c) && c != '-' && c != '_' && c != '.') return false;
    return true;
}

namespace {

using json_reader::describe;
using json_reader::pointer;

// RFC 5322 3.6.8 field-name: printable US-ASCII except ":".
bool valid_field_name(std::string_view s) {
    if (s.empty() || s.size() > 76) return false;
    for (unsigned char c : s)
        if (c < 33 || c > 126 || c == ':') return false;
    return true;
}

// Accepts 64 hex digits, or 32 colon-separated pairs as `openssl x509
// -fingerprint` prints them; returns lower-case hex without colons.
std::optional<std::string> normalize_fingerprint(std::string_view s) {
    std::string hex;
    bool colons = s.find(':') != std::string_view::npos;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (colons && i % 3 == 2) {
            if (c != ':') return std::nullopt;
            continue;
        }
        if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
        hex += ascii::to_lower(c);
    }
    if (hex.size() != 64 || (colons && s.size() != 95)) return std::nullopt;
    return hex;
}

const psl_ctx_t* public_suffixes() {
    // psl_latest prefers the system list (package publicsuffix) when it is
    // newer than the copy built into libpsl. Kept for the process lifetime.
    static const psl_ctx_t* ctx = [] {
        const psl_ctx_t* latest = psl_latest(nullptr);
        return latest ? latest : psl_builtin();
    }();
    return ctx;
}

// The policy hash covers this text: sorted keys, no whitespace.
std::string canonical(const json& j) {
    std::string out;
    json_reader::append_canonical(j, out);
    return out;
}

}  // namespace

std::string format_diagnostic(const Diagnostic& d) {
    return fmt::format("{}{}{}: {} [{}]", d.file, d.file.empty() ? "" : ": ",
                       json_reader::where(d.path, {d.line, d.column}), d.message, d.rule);
}

bool valid_sasl_user(std::string_view s) {
    if (s.empty() || s.size() > 255 || !is_valid_utf8(s)) return false;
    return std::none_of(s.begin(), s.end(),
                        [](char c) { return ascii::is_ctl(static_cast<unsigned char>(c)); });
}

// Builds a Policy. One instance per load; not reusable.
class PolicyCompiler {
  public:
    PolicyCompiler(Policy& p, const Credentials* credentials) : p_(p), credentials_(credentials) {}

    // The whole document at once: compile_header, every tenant, finish.
    void compile(const json& doc);
    // Or in steps, tenants one at a time (Policy::load_streaming): the
    // top-level keys but tenants (false: not an object), then
    // begin_tenants (how many; the first one, to size the tables), each
    // tenant, then finish (the cross-tenant lint).
    bool compile_header(const json& doc);
    void begin_tenants(std::size_t n, const json* first);
    // Before begin_tenants, for an incremental load: the domain index
    // starts as `previous`'s without the grants of the slots marked in
    // `changed` (only the tenants holding one are inserted), `slots` gives
    // each tenant number its slot (empty: the number; kept as runs, the
    // array freed), and chunks of
    // tenant records that compile as in `previous` are shared.
    void reuse(const Policy& previous, std::vector<bool> changed,
               std::vector<std::uint32_t> slots) {
        p_.domains_ = DomainIndex::without(previous.domains_, changed);
        changed_ = std::move(changed);
        if (!slots.empty()) p_.slots_ = SlotMap(slots, static_cast<std::uint32_t>(changed_.size()));
        previous_tenants_ = &previous.tenants_;
    }
    // An incremental load's tenants against the previous policy's, matched
    // by id (both in the ids' order): each kept tenant keeps its slot, a
    // new one takes the lowest free slot (or one past the last), and the
    // slots of removed tenants, and new tenants' slots, are `changed`.
    struct IncrementalPlan {
        std::vector<bool> changed;                   // by slot
        std::vector<std::uint32_t> slots;            // by tenant number
        std::vector<std::uint32_t> previous_number;  // by tenant number; kFreeSlot: new
        std::size_t differing = 0;                   // tenants added or removed
        bool identity = true;                        // every slot is its tenant's number
    };
    template <class Key>
    static IncrementalPlan plan_incremental(std::size_t n, Key key, const Policy& previous);
    void compile_tenant(const std::string& id, const json& j, const std::string& path);
    void finish();
    // After compile() or finish(): warns about credentials no sasl_user names.
    void lint_unused_credentials();
    std::vector<Diagnostic> errors;
    std::vector<Diagnostic> warnings;

  private:
    // One accepted domain grant. Its JSON path is rebuilt only when a
    // diagnostic needs it (a million eager path strings cost ~0.2 s).
    // 12 octets: a million of them are held until the cross-tenant lint.
    struct DomainEntry {
        std::uint32_t ref;  // the index entry holding the pattern (DomainIndex::Entry)
        std::uint32_t tenant;
        // Position in the tenant's "domains" array (a policy file would need
        // hundreds of megabytes in one tenant to overflow it; it only names
        // the diagnostic's path).
        std::uint32_t index : 22;
        std::uint32_t shard : 8;
        std::uint32_t wildcard : 1;
        std::uint32_t shared : 1;
        DomainIndex::Entry entry() const {
            return {ref, static_cast<std::uint16_t>(shard), wildcard != 0};
        }
    };
    // 20 octets: 100k of them are held until the cross-tenant lint. An
    // IPv4 network is inline; an IPv6 one's address is in addresses6_.
    struct NetworkEntry {
        std::uint32_t address;  // IPv4: host order; IPv6: index into addresses6_
        std::uint32_t tenant;
        // Its JSON path, rebuilt only for a diagnostic (network_path):
        // /tenants/<id>/identities/<identity>/networks/<index>.
        std::uint32_t identity;
        std::uint32_t index;
        std::uint8_t prefix_len;
        bool v6;
    };
    struct SharedNet {
        Cidr cidr;
        std::uint32_t provider;
    };

    // Rule ids are checked against kLintRules at compile time.
    void error(std::string path, ErrorRule rule, std::string msg) {
        errors.push_back({std::move(path), std::string(rule.id), std::move(msg)});
    }
    void warn(std::string path, WarningRule rule, std::string msg) {
        warnings.push_back({std::move(path), std::string(rule.id), std::move(msg)});
    }
    // Type and key checks; false (with an error) if `j` is not an object.
    bool object_with(const json& j, const std::string& path,
                     std::initializer_list<std::string_view> allowed);
    const json* string_at(const json& obj, std::string_view key, const std::string& path,
                          bool required);
    std::optional<bool> bool_at(const json& obj, std::string_view key, const std::string& path);
    std::optional<Mode> mode_at(const json& obj, const std::string& path);

    void compile_provider(const std::string& name, const json& j, const std::string& path);
    void compile_domains(std::uint32_t t, const json& j, const std::string& path);
    // `identity`: its position in the tenant's "identities".
    void compile_identity(std::uint32_t t, const json& j, const std::string& path,
                          std::uint32_t identity);
    // The networks accepted (in file order).
    std::vector<Cidr> compile_networks(std::uint32_t t, const json& j, const std::string& path,
                                       std::uint32_t identity);
    void compile_corroboration(std::uint32_t t, std::uint32_t provider, const std::string& key,
                               const json& j, const std::string& path);
    // "limits" blocks (see limits.hpp and README.md "Limits").
    enum class LimitLevel { top, tenant, scoped };
    struct LimitBlock {
        std::array<std::optional<std::vector<Rate>>, 3> kinds;  // by LimitKind; nullopt: absent
        std::optional<LimitMode> mode;
        std::optional<SpikeAction> on_spike;
    };
    std::optional<LimitBlock> compile_limits(const json& j, const std::string& path,
                                             LimitLevel level);
    std::optional<std::vector<Rate>> compile_rates(LimitKind kind, const json& j,
                                                   const std::string& path);
    std::optional<Rate> compile_rate(LimitKind kind, const json& j, const std::string& path);
    std::optional<std::uint64_t> limit_count(LimitKind kind, const json& v, const std::string& path,
                                             std::string_view what);
    void lint_rates(LimitKind kind, const std::vector<Rate>& rates, const std::string& path);
    void lint_against_tenant(LimitKind kind, const std::vector<Rate>& rates,
                             const std::string& path, std::uint32_t t);
    void compile_tenant_limits(const json& j, const std::string& path);  // of the last tenant
    // The "limits" of an identity or domain object (nullopt when absent or
    // invalid), registered under each key by add_scoped_limits.
    std::optional<LimitSet> scoped_limits_of(std::uint32_t t, const json& obj,
                                             const std::string& path);
    std::uint32_t add_scoped_limits(LimitScope scope, std::string subject, const LimitSet& set);
    void index_scoped_limits(char tag, std::uint32_t t, std::string_view id, std::uint32_t index,
                             const std::string& path);
    void lint_cross_tenant();
    // Incremental load: a changed tenant's wildcard may cover names of
    // tenants whose grants were not linted again.
    void lint_names_below_changed_wildcards();
    // Whether tenant `t`'s domains go into the index (all of them, unless
    // the load is incremental).
    bool indexes_domains(std::uint32_t t) const {
        return changed_.empty() || changed_[p_.slot_of(t)];
    }
    bool add_owner(Policy::OwnerRef& o, std::uint32_t x);
    std::uint32_t first_owner(Policy::OwnerRef o) const {
        return (o & Policy::kOwnerList) ? p_.owner_lists_[o & ~Policy::kOwnerList].front() : o;
    }
    // The grant as written in the file.
    std::string written_of(const DomainEntry& e) const {
        auto number = static_cast<std::uint32_t>(&e - domain_entries_.data());
        auto it = std::lower_bound(written_forms_.begin(), written_forms_.end(), number,
                                   [](const auto& w, std::uint32_t n) { return w.first < n; });
        return it != written_forms_.end() && it->first == number
                   ? it->second
                   : p_.domains_.pattern_of(e.entry()).pattern();
    }
    // /tenants/<id>/identities/<identity>
    std::string identity_path(std::uint32_t t, std::uint32_t identity) const {
        return pointer(pointer(pointer("/tenants", p_.tenant_id(t)), "identities"), identity);
    }
    std::string network_path(const NetworkEntry& n) const {
        return pointer(pointer(identity_path(n.tenant, n.identity), "networks"), n.index);
    }
    std::string domain_path(const DomainEntry& e) const {
        return pointer(pointer(pointer("/tenants", p_.tenant_id(e.tenant)), "domains"), e.index);
    }
    // Adds `t` to the owners of `key` in `index` (an identity, the
    // identity'th of its tenant's); warns when another tenant already owns it.
    void add_identity_owner(FlatStringMap<Policy::OwnerRef>& index, std::string_view key,
                            std::uint32_t t, std::uint32_t identity, const std::string& what,
                            const std::string& path);

    Policy& p_;
    const Credentials* credentials_;
    const Policy::TenantTable* previous_tenants_ = nullptr;
    std::size_t credentials_used_ = 0;
    std::map<std::string, std::uint32_t> provider_numbers_;
    std::vector<bool> provider_used_;
    std::vector<SharedNet> shared_nets_;
    std::vector<DomainEntry> domain_entries_;  // tenant by tenant, in compile order
    std::vector<bool> changed_;                // incremental load: by slot
    // The grants whose pattern differs from the file's text (U-labels, upper
    // case): position in domain_entries_ -> as written. Not a pointer into
    // the document, which is gone by the cross-tenant lint (tenants are
    // compiled one at a time).
    std::vector<std::pair<std::uint32_t, std::string>> written_forms_;
    std::string scratch_;  // reused for built patterns and probes
    std::vector<NetworkEntry> networks_;
    std::vector<std::array<std::uint8_t, 16>> addresses6_;  // see NetworkEntry
    Cidr cidr_of(const NetworkEntry& n) const {
        return {n.v6 ? IpAddress::v6(addresses6_[n.address]) : IpAddress::v4(n.address),
                n.prefix_len};
    }
    // By SASL entry: its position in its tenant's "identities" (the path
    // of the first definition, when a user is defined again).
    std::vector<std::uint32_t> sasl_identity_;
    std::uint32_t sasl_iterations_ = 0;  // highest PBKDF2 cost of any user
    // Where each identity (a certificate, SPKI or provider tenant id) was
    // first listed, for the warning when another tenant lists it too: per
    // index (cert, SPKI, provider), its entry and the position in the first
    // owner's "identities". Entries are numbered in the order they are
    // added, so each vector is sorted. (Not the paths: 30k of them were
    // 2.5 MB of a reload's peak at 100k tenants.)
    using IdentityEntry = FlatStringMap<Policy::OwnerRef>::Ref;
    std::array<std::vector<std::pair<IdentityEntry, std::uint32_t>>, 3> first_identity_;
};

template <class Key>
PolicyCompiler::IncrementalPlan PolicyCompiler::plan_incremental(std::size_t n, Key key,
                                                                 const Policy& previous) {
    constexpr auto kNone = Policy::kFreeSlot;
    IncrementalPlan plan;
    plan.slots.assign(n, kNone);
    plan.previous_number.assign(n, kNone);
    const std::size_t old_n = previous.tenants_.size();
    std::vector<bool> taken(previous.slot_count());
    std::size_t j = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string_view id = key(i);
        for (; j < old_n && previous.tenant_id(j) < id; ++j)
            ++plan.differing;  // removed
        if (j < old_n && previous.tenant_id(j) == id) {
            plan.previous_number[i] = static_cast<std::uint32_t>(j);
            plan.slots[i] = previous.slot_of(static_cast<std::uint32_t>(j));
            taken[plan.slots[i]] = true;
            ++j;
        } else {
            ++plan.differing;  // added
        }
    }
    plan.differing += old_n - j;
    // Every slot no kept tenant holds loses its grants (a removed tenant's,
    // or none); new tenants take them, lowest first, then new slots.
    plan.changed = taken;
    plan.changed.flip();
    std::size_t free = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (plan.slots[i] == kNone) {
            while (free < taken.size() && taken[free])
                ++free;
            if (free == taken.size()) {
                taken.push_back(true);
                plan.changed.push_back(true);
            }
            taken[free] = true;
            plan.slots[i] = static_cast<std::uint32_t>(free);
        }
        plan.identity = plan.identity && plan.slots[i] == i;
    }
    plan.identity = plan.identity && taken.size() == n;
    return plan;
}

bool PolicyCompiler::object_with(const json& j, const std::string& path,
                                 std::initializer_list<std::string_view> allowed) {
    if (!j.is_object()) {
        error(path, "schema", fmt::format("expected an object, found {}", describe(j)));
        return false;
    }
    for (const auto& [key, value] : j.items()) {
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
            error(pointer(path, key), "schema", json_reader::unknown_key(key, allowed));
    }
    return true;
}

const json* PolicyCompiler::string_at(const json& obj, std::string_view key,
                                      const std::string& path, bool required) {
    auto it = obj.find(key);
    if (it == obj.end()) {
        if (required) error(path, "schema", fmt::format("missing required key \"{}\"", key));
        return nullptr;
    }
    if (!it->is_string()) {
        error(pointer(path, key), "schema",
              fmt::format("expected a string, found {}", describe(*it)));
        return nullptr;
    }
    return &*it;
}

std::optional<bool> PolicyCompiler::bool_at(const json& obj, std::string_view key,
                                            const std::string& path) {
    auto it = obj.find(key);
    if (it == obj.end()) return std::nullopt;
    if (!it->is_boolean()) {
        error(pointer(path, key), "schema",
              fmt::format("expected true or false, found {}", describe(*it)));
        return std::nullopt;
    }
    return it->get<bool>();
}

std::optional<Mode> PolicyCompiler::mode_at(const json& obj, const std::string& path) {
    const json* m = string_at(obj, "mode", path, false);
    if (!m) return std::nullopt;
    const auto& s = m->get_ref<const std::string&>();
    if (s == "enforce") return Mode::enforce;
    if (s == "report") return Mode::report;
    error(pointer(path, "mode"), "schema",
          fmt::format("mode must be \"enforce\" or \"report\", not \"{}\"", s));
    return std::nullopt;
}

void PolicyCompiler::compile(const json& doc) {
    if (!compile_header(doc)) return;
    auto tenants = doc.find("tenants");
    if (tenants == doc.end()) {
        error("", "schema", "missing required key \"tenants\"");
    } else if (!tenants->is_object()) {
        error("/tenants", "schema",
              fmt::format("expected an object, found {}", describe(*tenants)));
    } else {
        begin_tenants(tenants->size(), tenants->empty() ? nullptr : &tenants->begin().value());
        for (const auto& [id, tj] : tenants->items())
            compile_tenant(id, tj, pointer("/tenants", id));
    }
    finish();
    Sha256 sha;
    sha.update(canonical(doc));
    p_.hash_ = "sha256:" + sha.hex();
}

bool PolicyCompiler::compile_header(const json& doc) {
    if (!object_with(
            doc, "",
            {"$schema", "version", "description", "mode", "limits", "providers", "tenants"}))
        return false;
    auto version = doc.find("version");
    if (version == doc.end()) {
        error("", "schema", "missing required key \"version\" (this relaygate reads version 1)");
    } else if (!version->is_number_integer() || version->get<std::int64_t>() != 1) {
        error("/version", "version", "unsupported policy version (this relaygate reads version 1)");
    }
    string_at(doc, "description", "", false);
    string_at(doc, "$schema", "", false);
    if (auto m = mode_at(doc, "")) {
        p_.default_mode_ = *m;
        if (*m == Mode::report)
            warn("/mode", "report_mode",
                 "default mode is report: tenants without their own \"mode\" are not enforced");
    }

    if (auto lj = doc.find("limits"); lj != doc.end()) {
        if (auto block = compile_limits(*lj, "/limits", LimitLevel::top)) {
            auto& defaults = p_.tenant_limits_[0];
            for (auto k : {LimitKind::messages, LimitKind::recipients, LimitKind::bytes})
                if (auto& rates = block->kinds[static_cast<std::size_t>(k)])
                    defaults.set.of(k) = std::move(*rates);
            defaults.mode = block->mode.value_or(LimitMode::enforce);
            defaults.on_spike = block->on_spike.value_or(SpikeAction::log);
            p_.uses_limits_ = !defaults.set.empty();
        }
    }

    if (auto providers = doc.find("providers"); providers != doc.end()) {
        if (!providers->is_object()) {
            error("/providers", "schema",
                  fmt::format("expected an object, found {}", describe(*providers)));
        } else {
            for (const auto& [name, pj] : providers->items())
                compile_provider(name, pj, pointer("/providers", name));
        }
    }
    return true;
}

void PolicyCompiler::begin_tenants(std::size_t n, const json* first) {
    p_.tenants_.reserve(n, !previous_tenants_);
    p_.network_index_.reserve(n, 0);
    networks_.reserve(n);
    if (!changed_.empty()) return;  // the domain index is the previous one's
    // Sized from the first tenant's names, so 1M domains do not rehash a
    // dozen times while loading, and the tables are not twice too large.
    std::size_t exact = 2, wildcard = 1, key_bytes = 2 * 24;
    if (first && first->is_object())
        if (auto d = first->find("domains"); d != first->end() && d->is_array() && !d->empty()) {
            exact = wildcard = key_bytes = 0;
            for (const auto& dj : *d) {
                const json* name = dj.is_object() ? nullptr : &dj;
                if (dj.is_object())
                    if (auto it = dj.find("domain"); it != dj.end()) name = &*it;
                if (!name || !name->is_string()) continue;
                const auto& text = name->get_ref<const std::string&>();
                if (text.starts_with("*.")) {
                    ++wildcard;
                } else {
                    ++exact;
                    key_bytes += text.size();
                }
            }
        }
    // The names' bytes are reserved generously: reserved room is address
    // space until names are written into it, while a shard that outgrows
    // its room copies it whole. The first tenant's names can be shorter
    // than most ("t0" in a generated policy of "t0".."t99999": at 100k
    // tenants every shard outgrew its room near the end, 27 MB at once).
    const std::size_t per_name =
        std::max<std::size_t>(key_bytes * 3 / 2 / std::max<std::size_t>(exact, 1), 32);
    p_.domains_.reserve(n * exact, n * wildcard, n * exact * per_name);
    domain_entries_.reserve(n * (exact + wildcard));
}

void PolicyCompiler::finish() {
    p_.tenants_.seal(previous_tenants_);
    p_.domains_.compact();
    lint_cross_tenant();
    p_.sasl_decoy_hash_ =
        decoy_password_hash(sasl_iterations_ ? sasl_iterations_ : kDefaultPbkdf2Iterations);
}

void PolicyCompiler::compile_provider(const std::string& name, const json& j,
                                      const std::string& path) {
    if (!valid_name(name))
        error(path, "invalid_name",
              "provider name must be 1-64 characters of letters, digits, '-', '_', '.'");
    if (!object_with(j, path,
                     {"shared", "networks", "tenant_header", "dkim_domain_suffix", "description"}))
        return;
    string_at(j, "description", path, false);
    auto number = static_cast<std::uint32_t>(p_.providers_.size());
    Policy::Provider prov;
    prov.name = name;
    prov.shared = bool_at(j, "shared", path).value_or(true);
    if (const json* h = string_at(j, "tenant_header", path, true)) {
        prov.tenant_header = h->get<std::string>();
        if (!valid_field_name(prov.tenant_header))
            error(pointer(path, "tenant_header"), "schema",
                  "tenant_header must be a header field name (RFC 5322 3.6.8)");
    }
    if (const json* sj = string_at(j, "dkim_domain_suffix", path, false)) {
        // ".onmicrosoft.com": the provider's own signing domains.
        const auto& suffix = sj->get_ref<const std::string&>();
        auto normalized =
            normalize_domain(std::string_view(suffix).substr(suffix.empty() ? 0 : 1), true);
        if (!suffix.starts_with('.') || !normalized)
            error(pointer(path, "dkim_domain_suffix"), "schema",
                  "dkim_domain_suffix must be a domain name with a leading dot "
                  "(\".onmicrosoft.com\")");
        else
            prov.dkim_domain_suffix = "." + *normalized;
    }
    auto nets = j.find("networks");
    std::string npath = pointer(path, "networks");
    if (nets == j.end() || !nets->is_array() || nets->empty()) {
        error(nets == j.end() ? path : npath, "schema",
              "provider needs a non-empty \"networks\" array of CIDR strings");
    } else {
        for (std::size_t i = 0; i < nets->size(); ++i) {
            const json& nj = (*nets)[i];
            std::string ipath = pointer(npath, i);
            if (!nj.is_string()) {
                error(ipath, "schema",
                      fmt::format("expected a CIDR string, found {}", describe(nj)));
                continue;
            }
            auto parsed = parse_cidr(nj.get_ref<const std::string&>());
            if (!parsed.cidr) {
                error(ipath,
                      *parsed.error == CidrError::host_bits_set ? ErrorRule("network_host_bits")
                                                                : ErrorRule("invalid_network"),
                      fmt::format("\"{}\": {}", nj.get<std::string>(), to_string(*parsed.error)));
                continue;
            }
            prov.networks.push_back(*parsed.cidr);
            // The slot is the owners (see Policy::OwnerRef).
            Policy::OwnerRef owners = p_.provider_index_.insert(*parsed.cidr, number);
            if (owners != number && add_owner(owners, number))
                p_.provider_index_.assign(*parsed.cidr, owners);
            if (prov.shared) shared_nets_.push_back({*parsed.cidr, number});
        }
    }
    provider_numbers_[name] = number;
    provider_used_.push_back(false);
    p_.providers_.push_back(std::move(prov));
}

void PolicyCompiler::compile_tenant(const std::string& id, const json& j, const std::string& path) {
    if (!valid_name(id))
        error(path, "invalid_name",
              "tenant id must be 1-64 characters of letters, digits, '-', '_', '.'");
    else if (id == kNoTenantLabel)
        error(path, "invalid_name",
              fmt::format("tenant id \"{}\" is reserved: it is the metric label of "
                          "transactions that no tenant sent; rename the tenant",
                          kNoTenantLabel));
    if (p_.ids_.size() + id.size() > std::numeric_limits<std::uint32_t>::max()) {
        error(path, "schema", "the tenant ids take more than 4 GiB");
        return;
    }
    auto t = static_cast<std::uint32_t>(p_.tenants_.size());
    Policy::Tenant record;
    record.id_at = static_cast<std::uint32_t>(p_.ids_.size());
    record.id_size = static_cast<std::uint32_t>(id.size());
    record.providers_begin = static_cast<std::uint32_t>(p_.tenant_providers_.size());
    record.mode = p_.default_mode_;
    p_.ids_ += id;
    p_.tenants_.push_back(record, previous_tenants_);
    if (!object_with(
            j, path,
            {"mode", "domains", "allow_null_sender", "identities", "limits", "description"}))
        return;
    string_at(j, "description", path, false);
    if (auto m = mode_at(j, path)) p_.tenants_.last().mode = *m;
    if (p_.tenants_.last().mode == Mode::report && j.contains("mode"))
        warn(pointer(path, "mode"), "report_mode",
             fmt::format("tenant \"{}\" is in report mode: its violations are logged, not refused",
                         id));
    p_.tenants_.last().allow_null_sender = bool_at(j, "allow_null_sender", path).value_or(false);
    // Before domains and identities: their limits are linted against these.
    if (auto lj = j.find("limits"); lj != j.end())
        compile_tenant_limits(*lj, pointer(path, "limits"));

    auto domains = j.find("domains");
    if (domains == j.end() || (domains->is_array() && domains->empty())) {
        error(domains == j.end() ? path : pointer(path, "domains"), "empty_tenant",
              fmt::format("tenant \"{}\" has no domains: it could never send", id));
    } else {
        compile_domains(t, *domains, pointer(path, "domains"));
    }

    auto ids = j.find("identities");
    if (ids == j.end() || (ids->is_array() && ids->empty())) {
        error(ids == j.end() ? path : pointer(path, "identities"), "empty_tenant",
              fmt::format("tenant \"{}\" has no identities: no connection could prove it", id));
    } else if (!ids->is_array()) {
        error(pointer(path, "identities"), "schema",
              fmt::format("expected an array, found {}", describe(*ids)));
    } else {
        for (std::size_t i = 0; i < ids->size(); ++i)
            compile_identity(t, (*ids)[i], pointer(pointer(path, "identities"), i),
                             static_cast<std::uint32_t>(i));
    }
    const auto& tenant = p_.tenants_[t];
    for (std::uint32_t i = 0; i < tenant.providers_count; ++i) {
        auto prov = p_.tenant_providers_[tenant.providers_begin + i];
        ++p_.providers_[prov].tenants;
        if (p_.tenants_[t].allow_null_sender) ++p_.providers_[prov].null_sender_tenants;
    }
}

void PolicyCompiler::compile_domains(std::uint32_t t, const json& j, const std::string& path) {
    if (!j.is_array()) {
        error(path, "schema", fmt::format("expected an array, found {}", describe(j)));
        return;
    }
    const std::size_t mine = domain_entries_.size();  // this tenant's first entry
    // Inserting a million names into a table far larger than the caches is
    // one cache miss per name; starting them a tenant at a time lets them
    // overlap. (Names that normalization changes just miss as before.)
    for (const auto& dj : j)
        if (dj.is_string()) p_.domains_.prefetch_insert(dj.get_ref<const std::string&>());
    std::string norm;
    for (std::size_t i = 0; i < j.size(); ++i) {
        const json& dj = j[i];
        const json* name = &dj;
        bool shared = false;
        bool verify_dns = false;
        std::optional<LimitSet> limits;
        if (dj.is_object()) {
            std::string dpath = pointer(path, i);
            if (!object_with(dj, dpath,
                             {"domain", "shared_domain", "verify", "limits", "description"}))
                continue;
            limits = scoped_limits_of(t, dj, dpath);
            string_at(dj, "description", dpath, false);
            shared = bool_at(dj, "shared_domain", dpath).value_or(false);
            if (const json* v = string_at(dj, "verify", dpath, false)) {
                verify_dns = v->get_ref<const std::string&>() == "dns";
                if (!verify_dns)
                    error(pointer(dpath, "verify"), "schema",
                          fmt::format("verify must be \"dns\", found \"{}\"",
                                      v->get_ref<const std::string&>()));
            }
            name = string_at(dj, "domain", dpath, true);
            if (!name) continue;
        } else if (!dj.is_string()) {
            error(pointer(path, i), "schema",
                  fmt::format("expected a domain string or object, found {}", describe(dj)));
            continue;
        }
        const auto& written = name->get_ref<const std::string&>();
        std::string_view base = written;
        bool wildcard = base.starts_with("*.");
        if (wildcard) base.remove_prefix(2);
        if (base.find('*') != std::string_view::npos) {
            error(pointer(path, i), "invalid_wildcard",
                  fmt::format("\"{}\": a wildcard is only allowed as a whole leading label "
                              "(\"*.example.com\")",
                              written));
            continue;
        }
        // Policy files may spell domains as U-labels ("bücher.example").
        // Plain lower-case LDH names are what normalize_domain would return
        // unchanged, so they skip it (and its allocation); anything else,
        // including every A-label, goes through it.
        const char* base_c = written.c_str() + (wildcard ? 2 : 0);  // NUL-terminated
        if (!is_plain_ldh_domain(base)) {
            auto normalized = normalize_domain(base, true);
            if (!normalized) {
                error(pointer(path, i), "invalid_domain",
                      fmt::format("\"{}\": {}", written, relaygate::to_string(normalized.error())));
                continue;
            }
            norm = std::move(*normalized);
            base = norm;
            base_c = norm.c_str();
        }
        if (const psl_ctx_t* psl = public_suffixes()) {
            if (wildcard) {
                scratch_.assign("relaygate-probe.");
                scratch_.append(base);
                if (psl_is_public_suffix(psl, base_c) ||
                    psl_is_public_suffix(psl, scratch_.c_str()))
                    error(pointer(path, i), "wildcard_public_suffix",
                          fmt::format("\"{}\" is a wildcard at or above a public suffix: it would "
                                      "grant domains registered by anyone",
                                      written));
            } else if (psl_is_public_suffix(psl, base_c)) {
                warn(pointer(path, i), "domain_public_suffix",
                     fmt::format("\"{}\" is a public suffix, not a registrable domain", written));
            }
        }
        std::string_view pattern = written;
        if (base.data() != written.data() + (wildcard ? 2 : 0)) {
            scratch_.assign(wildcard ? "*." : "");
            scratch_.append(base);
            pattern = scratch_;
        }
        // An incremental load's unchanged tenant: its grants are in the
        // index already, and its text (the same) had no duplicate.
        const auto [entry, added] =
            indexes_domains(t) ? p_.domains_.insert(pattern, {p_.slot_of(t), shared, verify_dns})
                               : std::pair<DomainIndex::Entry, bool>{{}, true};
        if (!added) {
            const DomainEntry* first = nullptr;
            for (std::size_t k = mine; k < domain_entries_.size() && !first; ++k)
                if (domain_entries_[k].ref == entry.ref &&
                    (domain_entries_[k].wildcard != 0) == entry.wildcard)
                    first = &domain_entries_[k];
            std::string also = first ? domain_path(*first) : std::string();
            const std::string first_written = first ? written_of(*first) : std::string();
            bool idn = first && first_written != written;
            error(pointer(path, i), "duplicate_domain",
                  idn ? fmt::format("\"{}\" is the same domain as \"{}\" at {} (U-label and "
                                    "A-label spellings of {})",
                                    written, first_written, also,
                                    p_.domains_.pattern_of(entry).pattern())
                      : fmt::format("\"{}\" is listed twice (also at {})", written, also));
            continue;
        }
        if (indexes_domains(t)) {
            if (pattern != written)
                written_forms_.emplace_back(static_cast<std::uint32_t>(domain_entries_.size()),
                                            written);
            domain_entries_.push_back({entry.ref, t, static_cast<std::uint32_t>(i) & 0x3f'ffffU,
                                       entry.shard, entry.wildcard, shared});
        }
        if (limits) {
            std::string subject(pattern);
            index_scoped_limits('d', t, subject,
                                add_scoped_limits(LimitScope::domain, subject, *limits),
                                pointer(path, i));
        }
        if (verify_dns) ++p_.dns_verified_grants_;
        ++p_.domain_count_;
    }
}

// A provider identity's "require" and "dkim_domains": which proofs beyond the
// tenant header it needs. Stored under Policy::dkim_key(tenant, key).
void PolicyCompiler::compile_corroboration(std::uint32_t t, std::uint32_t provider,
                                           const std::string& key, const json& j,
                                           const std::string& path) {
    bool dkim = false;
    if (auto rj = j.find("require"); rj != j.end()) {
        std::string rpath = pointer(path, "require");
        bool header = false;
        if (!rj->is_array()) {
            error(rpath, "schema", fmt::format("expected an array, found {}", describe(*rj)));
            return;
        }
        for (std::size_t i = 0; i < rj->size(); ++i) {
            const json& e = (*rj)[i];
            bool is_header = e.is_string() && e.get_ref<const std::string&>() == "header";
            bool is_dkim = e.is_string() && e.get_ref<const std::string&>() == "dkim";
            if ((!is_header && !is_dkim) || (is_header && header) || (is_dkim && dkim))
                error(pointer(rpath, i), "schema",
                      "require lists \"header\" and optionally \"dkim\", each once");
            header = header || is_header;
            dkim = dkim || is_dkim;
        }
        if (!header)
            error(rpath, "schema",
                  "require must include \"header\": the tenant header names the tenant, "
                  "DKIM corroborates it");
    }
    auto dj = j.find("dkim_domains");
    if (dj == j.end()) {
        if (dkim)
            error(path, "dkim_domains_missing",
                  "\"require\": [\"header\", \"dkim\"] needs \"dkim_domains\": the "
                  "provider signing domains of this tenant (e.g. \"contoso.onmicrosoft.com\")");
        return;
    }
    std::string dpath = pointer(path, "dkim_domains");
    if (!dj->is_array() || dj->empty()) {
        error(dpath, "schema", "dkim_domains must be a non-empty array of domain names");
        return;
    }
    if (!dkim)
        warn(dpath, "dkim_domains_unused",
             "dkim_domains is ignored unless \"require\" includes \"dkim\"");
    Policy::DkimRequirement req;
    const std::string& suffix = p_.providers_[provider].dkim_domain_suffix;
    for (std::size_t i = 0; i < dj->size(); ++i) {
        const json& e = (*dj)[i];
        auto normalized =
            normalize_domain(e.is_string() ? e.get_ref<const std::string&>() : "", true);
        if (!normalized) {
            error(pointer(dpath, i), "invalid_domain", "dkim_domains entries are domain names");
            continue;
        }
        if (!suffix.empty() && !normalized->ends_with(suffix))
            error(pointer(dpath, i), "dkim_domain_suffix",
                  fmt::format("\"{}\" does not end with \"{}\", the signing domains of "
                              "provider \"{}\"",
                              *normalized, suffix, p_.providers_[provider].name));
        req.domains.push_back(std::move(*normalized));
    }
    if (!dkim) return;
    auto [ref, fresh] = p_.dkim_index_.try_emplace(Policy::dkim_key(t, key),
                                                   static_cast<std::uint32_t>(p_.dkim_.size()));
    if (!fresh) {
        error(path, "duplicate_identity", "this provider tenant_id is listed twice for the tenant");
        return;
    }
    p_.dkim_.push_back(std::move(req));
}

bool PolicyCompiler::add_owner(Policy::OwnerRef& o, std::uint32_t x) {
    bool present = false;
    p_.each_owner(o, [&](std::uint32_t y) { present = present || y == x; });
    if (present) return false;
    if ((o & Policy::kOwnerList) == 0) {
        p_.owner_lists_.push_back({o});
        o = static_cast<std::uint32_t>(p_.owner_lists_.size() - 1) | Policy::kOwnerList;
    }
    p_.owner_lists_[o & ~Policy::kOwnerList].push_back(x);
    return true;
}

void PolicyCompiler::add_identity_owner(FlatStringMap<Policy::OwnerRef>& index,
                                        std::string_view key, std::uint32_t t,
                                        std::uint32_t identity, const std::string& what,
                                        const std::string& path) {
    auto& firsts = first_identity_[&index == &p_.cert_index_   ? 0
                                   : &index == &p_.spki_index_ ? 1
                                                               : 2];
    auto [ref, fresh] = index.try_emplace(key, t);
    if (fresh) {
        firsts.emplace_back(ref, identity);
        return;
    }
    Policy::OwnerRef o = index.value(ref);
    bool present = false;
    p_.each_owner(o, [&](std::uint32_t y) { present = present || y == t; });
    if (present) return;
    const auto first = std::lower_bound(firsts.begin(), firsts.end(),
                                        std::pair<IdentityEntry, std::uint32_t>(ref, 0));
    warn(path, "identity_shared",
         fmt::format("{} also identifies tenant \"{}\" (first at {}); such connections "
                     "are resolved by domain and refused when still ambiguous",
                     what, p_.tenant_id(first_owner(o)),
                     identity_path(first_owner(o), first->second)));
    add_owner(o, t);
    index.set_value(ref, o);
}

void PolicyCompiler::compile_identity(std::uint32_t t, const json& j, const std::string& path,
                                      std::uint32_t identity) {
    if (!object_with(
            j, path,
            {"provider", "tenant_id", "require", "dkim_domains", "networks", "client_cert_sha256",
             "client_spki_sha256", "sasl_user", "password_hash", "limits", "description"}))
        return;
    string_at(j, "description", path, false);
    const std::optional<LimitSet> limits = scoped_limits_of(t, j, path);
    int kinds = int(j.contains("provider")) + int(j.contains("networks")) +
                int(j.contains("client_cert_sha256")) + int(j.contains("client_spki_sha256")) +
                int(j.contains("sasl_user"));
    if (kinds != 1) {
        error(path, "schema",
              "an identity has exactly one of \"provider\", \"networks\", "
              "\"client_cert_sha256\", \"client_spki_sha256\", \"sasl_user\"");
        return;
    }
    auto stray = [&](std::string_view key, std::string_view owner) {
        if (j.contains(key))
            error(pointer(path, key), "schema",
                  fmt::format("\"{}\" belongs to a \"{}\" identity", key, owner));
    };

    if (!j.contains("provider")) {
        stray("require", "provider");
        stray("dkim_domains", "provider");
    }
    if (j.contains("networks")) {
        stray("tenant_id", "provider");
        stray("password_hash", "sasl_user");
        auto cidrs = compile_networks(t, j.at("networks"), pointer(path, "networks"), identity);
        if (limits && !cidrs.empty()) {
            // Named by the entry's first network: stable when entries are
            // reordered or networks appended (an index would shift).
            auto index = add_scoped_limits(LimitScope::identity,
                                           "network:" + cidrs.front().to_string(), *limits);
            for (const auto& c : cidrs)
                index_scoped_limits('n', t, Policy::network_id(c), index, path);
        }
    } else if (j.contains("provider")) {
        stray("password_hash", "sasl_user");
        const json* pj = string_at(j, "provider", path, true);
        const json* tj = string_at(j, "tenant_id", path, true);
        if (!pj) return;
        const auto& name = pj->get_ref<const std::string&>();
        auto it = provider_numbers_.find(name);
        if (it == provider_numbers_.end()) {
            error(pointer(path, "provider"), "unknown_provider",
                  fmt::format("provider \"{}\" is not defined under /providers", name));
            return;
        }
        if (!tj) return;
        const auto& tid = tj->get_ref<const std::string&>();
        bool ok = !tid.empty() && tid.size() <= 256;
        for (unsigned char c : tid)
            ok = ok && c > 32 && c < 127;
        if (!ok) {
            error(pointer(path, "tenant_id"), "schema",
                  "tenant_id must be 1-256 printable ASCII characters without spaces");
            return;
        }
        provider_used_[it->second] = true;
        // Identities are compiled while t is the last tenant, so its
        // providers are the tail of tenant_providers_.
        auto& provs = p_.tenant_providers_;
        auto& tenant = p_.tenants_.last();
        if (std::find(provs.begin() + tenant.providers_begin, provs.end(), it->second) ==
            provs.end()) {
            provs.push_back(it->second);
            ++tenant.providers_count;
        }
        // Key: provider number (4 bytes), lower-case tenant id; the engine
        // builds the same key from the header value.
        std::string key(sizeof(std::uint32_t), '\0');
        std::memcpy(key.data(), &it->second, sizeof(std::uint32_t));
        key += ascii::lower(tid);
        add_identity_owner(p_.provider_tenant_index_, key, t, identity,
                           fmt::format("provider {} tenant_id {}", name, tid), path);
        if (limits)
            index_scoped_limits(
                'p', t, key,
                add_scoped_limits(LimitScope::identity,
                                  fmt::format("provider:{}:{}", name, ascii::lower(tid)), *limits),
                path);
        compile_corroboration(t, it->second, key, j, path);
    } else if (j.contains("client_cert_sha256") || j.contains("client_spki_sha256")) {
        stray("tenant_id", "provider");
        stray("password_hash", "sasl_user");
        bool cert = j.contains("client_cert_sha256");
        std::string_view key = cert ? "client_cert_sha256" : "client_spki_sha256";
        const json* fj = string_at(j, key, path, true);
        if (!fj) return;
        auto fp = normalize_fingerprint(fj->get_ref<const std::string&>());
        if (!fp) {
            error(
                pointer(path, key), "invalid_fingerprint",
                fmt::format("{} must be 64 hex digits (SHA-256), optionally colon-separated", key));
            return;
        }
        auto& index = cert ? p_.cert_index_ : p_.spki_index_;
        add_identity_owner(index, *fp, t, identity, fmt::format("{} {}", key, *fp), path);
        if (limits)
            index_scoped_limits(
                cert ? 'c' : 's', t, *fp,
                add_scoped_limits(LimitScope::identity, (cert ? "cert:" : "spki:") + *fp, *limits),
                path);
    } else {
        stray("tenant_id", "provider");
        const json* uj = string_at(j, "sasl_user", path, true);
        const json* hj = string_at(j, "password_hash", path, false);
        if (!uj || (!hj && j.contains("password_hash"))) return;
        const auto& user = uj->get_ref<const std::string&>();
        if (!valid_sasl_user(user)) {
            error(pointer(path, "sasl_user"), "schema",
                  "sasl_user must be 1-255 octets of UTF-8 without control characters");
            return;
        }
        // The hash: here or in the credentials file, never both.
        const Credential* cred = nullptr;
        if (credentials_)
            if (auto it = credentials_->users.find(user); it != credentials_->users.end())
                cred = &it->second;
        if (hj && cred) {
            error(pointer(path, "password_hash"), "duplicate_password_hash",
                  fmt::format("sasl_user \"{}\" also has a hash in the credentials file ({}); "
                              "keep one of them",
                              user, cred->where));
            return;
        }
        if (!hj && !cred) {
            error(pointer(path, "sasl_user"), "missing_password_hash",
                  credentials_ ? fmt::format("sasl_user \"{}\" is not in the credentials file {}; "
                                             "add \"{}:<hash>\" there (relaygate hash-password)",
                                             user, credentials_->source, user)
                               : fmt::format("sasl_user \"{}\" needs a \"password_hash\" here or "
                                             "in the gateway's credentials_file",
                                             user));
            return;
        }
        if (cred) ++credentials_used_;
        const std::string& hash = cred ? cred->hash : hj->get_ref<const std::string&>();
        const std::string hash_path = pointer(path, cred ? "sasl_user" : "password_hash");
        auto info = parse_password_hash(hash);
        if (!info) {
            error(hash_path, "invalid_password_hash", info.error());
            return;
        }
        if (info->iterations < kWeakPbkdf2Iterations)
            warn(hash_path, "weak_password_hash",
                 fmt::format("only {} PBKDF2 iterations{}; relaygate hash-password uses {}",
                             info->iterations, cred ? " (credentials file)" : "",
                             kDefaultPbkdf2Iterations));
        if (auto r = p_.sasl_index_.find(user); r != FlatStringMap<std::uint32_t>::npos) {
            // One login name must mean one password and one tenant.
            const std::uint32_t first = p_.sasl_index_.value(r);
            const std::uint32_t owner = p_.sasl_entries_[first].tenant;
            error(pointer(path, "sasl_user"), "duplicate_sasl_user",
                  fmt::format("sasl_user \"{}\" is already defined at {} (tenant \"{}\")", user,
                              pointer(identity_path(owner, sasl_identity_[first]), "sasl_user"),
                              p_.tenant_id(owner)));
            return;
        }
        p_.sasl_index_.try_emplace(user, static_cast<std::uint32_t>(p_.sasl_entries_.size()));
        p_.sasl_entries_.push_back({t, hash});
        sasl_identity_.push_back(identity);
        if (limits)
            index_scoped_limits('u', t, user,
                                add_scoped_limits(LimitScope::identity, "sasl:" + user, *limits),
                                path);
        sasl_iterations_ = std::max(sasl_iterations_, info->iterations);
    }
}

void PolicyCompiler::lint_unused_credentials() {
    if (!credentials_ || credentials_used_ == credentials_->users.size()) return;
    for (const auto& [user, cred] : credentials_->users)
        if (p_.sasl_index_.find(user) == decltype(p_.sasl_index_)::npos) {
            Diagnostic d{"", std::string(WarningRule("unused_credential").id),
                         fmt::format("user \"{}\" has a password hash but no tenant's sasl_user "
                                     "names it; remove it or add the identity",
                                     user)};
            d.file = cred.where;
            warnings.push_back(std::move(d));
        }
}

std::vector<Cidr> PolicyCompiler::compile_networks(std::uint32_t t, const json& j,
                                                   const std::string& path,
                                                   std::uint32_t identity) {
    std::vector<Cidr> accepted;
    if (!j.is_array() || j.empty()) {
        error(path, "schema", "\"networks\" must be a non-empty array of CIDR strings");
        return accepted;
    }
    for (std::size_t i = 0; i < j.size(); ++i) {
        const json& nj = j[i];
        std::string ipath = pointer(path, i);
        if (!nj.is_string()) {
            error(ipath, "schema", fmt::format("expected a CIDR string, found {}", describe(nj)));
            continue;
        }
        const auto& text = nj.get_ref<const std::string&>();
        auto parsed = parse_cidr(text);
        if (!parsed.cidr) {
            if (*parsed.error == CidrError::host_bits_set)
                error(ipath, "network_host_bits",
                      fmt::format("\"{}\" has host bits set: write the network address, or a "
                                  "/32 (/128) for one host",
                                  text));
            else
                error(ipath, "invalid_network",
                      fmt::format("\"{}\": {}", text, to_string(*parsed.error)));
            continue;
        }
        const Cidr& cidr = *parsed.cidr;
        bool echo = false;
        for (const auto& shared : shared_nets_) {
            if (!cidr.overlaps(shared.cidr)) continue;
            echo = true;
            error(ipath, "shared_network_overlap",
                  fmt::format("network {} overlaps {}, a shared network of provider \"{}\": every "
                              "customer of that provider could send as tenant \"{}\" -- the "
                              "EchoSpoofing risk (2024). Use a {{\"provider\": \"{}\", "
                              "\"tenant_id\": ...}} identity instead",
                              text, shared.cidr.to_string(), p_.providers_[shared.provider].name,
                              p_.tenant_id(t), p_.providers_[shared.provider].name));
        }
        if (echo) continue;
        if ((cidr.address.is_v4() && cidr.prefix_len < 8) ||
            (!cidr.address.is_v4() && cidr.prefix_len < 16))
            warn(ipath, "network_too_broad",
                 fmt::format("\"{}\" is very broad; is the whole network really dedicated to "
                             "tenant \"{}\"?",
                             text, p_.tenant_id(t)));
        // The slot is the owners (see Policy::OwnerRef).
        Policy::OwnerRef owners = p_.network_index_.insert(cidr, t);
        if (owners != t && add_owner(owners, t)) p_.network_index_.assign(cidr, owners);
        const auto& bytes = cidr.address.bytes();
        const bool v6 = !cidr.address.is_v4();
        const std::uint32_t address = v6 ? static_cast<std::uint32_t>(addresses6_.size())
                                         : std::uint32_t(bytes[0]) << 24 |
                                               std::uint32_t(bytes[1]) << 16 |
                                               std::uint32_t(bytes[2]) << 8 | bytes[3];
        if (v6) addresses6_.push_back(bytes);
        networks_.push_back({address, t, identity, static_cast<std::uint32_t>(i),
                             static_cast<std::uint8_t>(cidr.prefix_len), v6});
        accepted.push_back(cidr);
    }
    return accepted;
}

namespace {

constexpr std::array kLimitKinds{LimitKind::messages, LimitKind::recipients, LimitKind::bytes};

std::string rate_text(LimitKind k, const Rate& r) {
    std::string out =
        fmt::format("{} per {}", format_count(k, r.count), format_period(r.per_seconds));
    if (r.burst != r.count) out += fmt::format(" (burst {})", format_count(k, r.burst));
    return out;
}

// GCRA: `a` admits every sequence `b` admits (and so never refuses what
// `b` lets through) when b's long-run rate and b's burst are both no
// larger. Rates compared exactly: b.count / b.per <= a.count / a.per.
// (count <= 2^50 times per <= 2^22 needs more than 64 bits.)
__extension__ using Wide = unsigned __int128;
bool at_least_as_strict(const Rate& b, const Rate& a) {
    Wide lhs = Wide(b.count) * a.per_seconds;
    Wide rhs = Wide(a.count) * b.per_seconds;
    return lhs <= rhs && b.burst <= a.burst;
}

bool same_rate(const Rate& a, const Rate& b) {
    return a.count == b.count && a.per_seconds == b.per_seconds && a.burst == b.burst;
}

// Below this a bytes burst refuses ordinary messages with attachments
// outright: a GCRA admits at most the burst at once.
constexpr std::uint64_t kSmallBytesBurst = std::uint64_t(10) << 20;

}  // namespace

std::optional<std::uint64_t> PolicyCompiler::limit_count(LimitKind kind, const json& v,
                                                         const std::string& path,
                                                         std::string_view what) {
    std::uint64_t n = 0;
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        if (kind != LimitKind::bytes) {
            error(path, "invalid_rate",
                  fmt::format("a {} {} is a JSON integer; units like \"{}\" are for bytes",
                              to_string(kind), what, s));
            return std::nullopt;
        }
        auto parsed = parse_byte_count(s);
        if (!parsed) {
            error(path, "invalid_rate",
                  fmt::format("\"{}\": a byte count is an integer with an optional unit KiB, "
                              "MiB, GiB, TiB (1024^n) or KB, MB, GB, TB (1000^n)",
                              s));
            return std::nullopt;
        }
        n = *parsed;
    } else if (v.is_number_unsigned()) {
        n = v.get<std::uint64_t>();
    } else if (v.is_number_integer()) {
        // Parsed text gives unsigned for non-negative integers; a built
        // document may hold them signed.
        auto signed_n = v.get<std::int64_t>();
        if (signed_n < 1) {
            error(path, "invalid_rate",
                  fmt::format("{} must be at least 1, found {}", what, signed_n));
            return std::nullopt;
        }
        n = static_cast<std::uint64_t>(signed_n);
    } else {
        error(path, "invalid_rate",
              fmt::format("{} must be an integer{}, found {}", what,
                          kind == LimitKind::bytes ? " or a byte count like \"2GiB\"" : "",
                          describe(v)));
        return std::nullopt;
    }
    if (n < 1 || n > kMaxLimitCount) {
        error(path, "invalid_rate", fmt::format("{} must be from 1 to 2^50, found {}", what, n));
        return std::nullopt;
    }
    return n;
}

std::optional<Rate> PolicyCompiler::compile_rate(LimitKind kind, const json& j,
                                                 const std::string& path) {
    if (!object_with(j, path, {"count", "per", "burst", "description"})) return std::nullopt;
    string_at(j, "description", path, false);
    Rate r;
    bool ok = true;
    if (auto c = j.find("count"); c == j.end()) {
        error(path, "schema", "missing required key \"count\"");
        ok = false;
    } else if (auto n = limit_count(kind, *c, pointer(path, "count"), "count")) {
        r.count = *n;
    } else {
        ok = false;
    }
    if (const json* per = string_at(j, "per", path, true)) {
        const auto& text = per->get_ref<const std::string&>();
        auto seconds = parse_period(text);
        if (!seconds || *seconds > kMaxPeriodSeconds) {
            error(pointer(path, "per"), "invalid_rate",
                  fmt::format("\"{}\": a period is a positive integer and one unit (s, m, h, d, "
                              "w), from 1s to 30d",
                              text));
            ok = false;
        } else {
            r.per_seconds = *seconds;
        }
    } else {
        ok = false;
    }
    r.burst = r.count;
    if (auto b = j.find("burst"); b != j.end()) {
        if (auto n = limit_count(kind, *b, pointer(path, "burst"), "burst"))
            r.burst = *n;
        else
            ok = false;
    }
    return ok ? std::optional<Rate>(r) : std::nullopt;
}

std::optional<std::vector<Rate>> PolicyCompiler::compile_rates(LimitKind kind, const json& j,
                                                               const std::string& path) {
    if (!j.is_array()) {
        error(path, "schema",
              fmt::format("expected an array of rates ({{\"count\": ..., \"per\": ...}}), found {}",
                          describe(j)));
        return std::nullopt;
    }
    bool ok = true;
    if (j.size() > kMaxRatesPerKind) {
        error(path, "schema",
              fmt::format("{} rates of {}: at most {} per kind", j.size(), to_string(kind),
                          kMaxRatesPerKind));
        ok = false;
    }
    std::vector<Rate> rates;
    for (std::size_t i = 0; i < j.size() && i < kMaxRatesPerKind; ++i) {
        if (auto r = compile_rate(kind, j[i], pointer(path, i)))
            rates.push_back(*r);
        else
            ok = false;
    }
    if (!ok) return std::nullopt;
    lint_rates(kind, rates, path);
    return rates;
}

void PolicyCompiler::lint_rates(LimitKind kind, const std::vector<Rate>& rates,
                                const std::string& path) {
    for (std::size_t i = 0; i < rates.size(); ++i) {
        const Rate& a = rates[i];
        std::string apath = pointer(path, i);
        bool reported = false;
        for (std::size_t k = 0; k < rates.size() && !reported; ++k) {
            if (k == i) continue;
            const Rate& b = rates[k];
            if (same_rate(a, b)) {
                // Reported once, at the later copy.
                if (k < i) {
                    warn(apath, "duplicate_rate",
                         fmt::format("{} {} is listed twice (also at {})", to_string(kind),
                                     rate_text(kind, a), pointer(path, k)));
                    reported = true;
                }
            } else if (at_least_as_strict(b, a)) {
                warn(apath, "rate_shadowed",
                     fmt::format("{} {} never binds: {} at {} is at least as strict (no higher "
                                 "rate, no larger burst)",
                                 to_string(kind), rate_text(kind, a), rate_text(kind, b),
                                 pointer(path, k)));
                reported = true;
            }
        }
        for (std::size_t k = 0; k < rates.size() && !reported; ++k) {
            const Rate& b = rates[k];
            if (b.per_seconds > a.per_seconds && a.burst > b.burst) {
                warn(
                    apath, "burst_unusable",
                    fmt::format("the burst of {} {} is more than the {} that {} at {} admits at "
                                "once: at most {} pass at once",
                                to_string(kind), rate_text(kind, a), format_count(kind, b.burst),
                                rate_text(kind, b), pointer(path, k), format_count(kind, b.burst)));
                reported = true;
            }
        }
        if (kind == LimitKind::bytes && a.burst < kSmallBytesBurst)
            warn(apath, "bytes_burst_small",
                 fmt::format("bytes {}: a message larger than {} can never pass (a GCRA admits at "
                             "most the burst at once)",
                             rate_text(kind, a), format_count(kind, a.burst)));
    }
}

// An identity's or a domain's traffic is part of its tenant's, so a rate
// the tenant's own limits already enforce never binds.
void PolicyCompiler::lint_against_tenant(LimitKind kind, const std::vector<Rate>& rates,
                                         const std::string& path, std::uint32_t t) {
    const auto& own = p_.tenant_limits_[p_.tenants_[t].limits].set.of(kind);
    for (std::size_t i = 0; i < rates.size(); ++i)
        for (const Rate& b : own)
            if (at_least_as_strict(b, rates[i])) {
                warn(pointer(path, i), "rate_shadowed",
                     fmt::format("{} {} never binds: the tenant's {} {} is at least as strict",
                                 to_string(kind), rate_text(kind, rates[i]), to_string(kind),
                                 rate_text(kind, b)));
                break;
            }
}

std::optional<PolicyCompiler::LimitBlock> PolicyCompiler::compile_limits(const json& j,
                                                                         const std::string& path,
                                                                         LimitLevel level) {
    if (!object_with(j, path,
                     {"messages", "recipients", "bytes", "mode", "on_spike", "description"}))
        return std::nullopt;
    string_at(j, "description", path, false);
    LimitBlock block;
    bool ok = true;
    for (auto k : kLimitKinds) {
        auto it = j.find(to_string(k));
        if (it == j.end()) continue;
        block.kinds[static_cast<std::size_t>(k)] =
            compile_rates(k, *it, pointer(path, to_string(k)));
        ok = ok && block.kinds[static_cast<std::size_t>(k)].has_value();
    }
    // Every message has at least one recipient: a recipients rate at least
    // as strict as a messages rate bounds the messages too.
    const auto& msgs = block.kinds[static_cast<std::size_t>(LimitKind::messages)];
    const auto& rcpts = block.kinds[static_cast<std::size_t>(LimitKind::recipients)];
    if (msgs && rcpts)
        for (std::size_t i = 0; i < msgs->size(); ++i)
            for (std::size_t k = 0; k < rcpts->size(); ++k)
                if (at_least_as_strict((*rcpts)[k], (*msgs)[i])) {
                    warn(pointer(pointer(path, "messages"), i), "rate_shadowed",
                         fmt::format("messages {} never binds: recipients {} at {} is at least as "
                                     "strict, and every message has a recipient",
                                     rate_text(LimitKind::messages, (*msgs)[i]),
                                     rate_text(LimitKind::recipients, (*rcpts)[k]),
                                     pointer(pointer(path, "recipients"), k)));
                    break;
                }
    for (std::string_view key : {"mode", "on_spike"}) {
        if (!j.contains(key) || level != LimitLevel::scoped) continue;
        error(pointer(path, key), "schema",
              fmt::format("\"{}\" is set in the top-level \"limits\" or a tenant's: it applies "
                          "to all of the tenant's limits, not to one identity's or domain's",
                          key));
        ok = false;
    }
    if (level != LimitLevel::scoped) {
        if (const json* m = string_at(j, "mode", path, false)) {
            const auto& s = m->get_ref<const std::string&>();
            if (s == "enforce") {
                block.mode = LimitMode::enforce;
            } else if (s == "report") {
                block.mode = LimitMode::report;
                warn(pointer(path, "mode"), "report_mode",
                     level == LimitLevel::top
                         ? "limits mode is report: limits are logged and counted, not enforced"
                         : "this tenant's limits are in report mode: logged and counted, not "
                           "enforced");
            } else {
                error(pointer(path, "mode"), "schema",
                      fmt::format("limits mode must be \"enforce\" or \"report\", not \"{}\"", s));
                ok = false;
            }
        } else if (j.contains("mode")) {
            ok = false;
        }
        if (const json* a = string_at(j, "on_spike", path, false)) {
            const auto& s = a->get_ref<const std::string&>();
            if (s == "log") {
                block.on_spike = SpikeAction::log;
            } else if (s == "hold") {
                block.on_spike = SpikeAction::hold;
            } else {
                error(pointer(path, "on_spike"), "schema",
                      fmt::format("on_spike must be \"log\" or \"hold\", not \"{}\"", s));
                ok = false;
            }
        } else if (j.contains("on_spike")) {
            ok = false;
        }
    }
    if (!ok) return std::nullopt;
    return block;
}

void PolicyCompiler::compile_tenant_limits(const json& j, const std::string& path) {
    auto block = compile_limits(j, path, LimitLevel::tenant);
    if (!block) return;
    // The defaults, with each kind the tenant names replaced ("[]" removes it).
    Policy::TenantLimits own = p_.tenant_limits_[0];
    for (auto k : kLimitKinds)
        if (auto& rates = block->kinds[static_cast<std::size_t>(k)])
            own.set.of(k) = std::move(*rates);
    if (block->mode) own.mode = *block->mode;
    if (block->on_spike) own.on_spike = *block->on_spike;
    p_.uses_limits_ = p_.uses_limits_ || !own.set.empty();
    p_.tenants_.last().limits = static_cast<std::uint32_t>(p_.tenant_limits_.size());
    p_.tenant_limits_.push_back(std::move(own));
}

std::optional<LimitSet> PolicyCompiler::scoped_limits_of(std::uint32_t t, const json& obj,
                                                         const std::string& path) {
    auto lj = obj.find("limits");
    if (lj == obj.end()) return std::nullopt;
    std::string lpath = pointer(path, "limits");
    auto block = compile_limits(*lj, lpath, LimitLevel::scoped);
    if (!block) return std::nullopt;
    LimitSet set;
    for (auto k : kLimitKinds)
        if (auto& rates = block->kinds[static_cast<std::size_t>(k)]) {
            lint_against_tenant(k, *rates, pointer(lpath, to_string(k)), t);
            set.of(k) = std::move(*rates);
        }
    if (set.empty()) return std::nullopt;
    return set;
}

std::uint32_t PolicyCompiler::add_scoped_limits(LimitScope scope, std::string subject,
                                                const LimitSet& set) {
    p_.uses_limits_ = true;
    p_.scoped_limits_.push_back({scope, std::move(subject), set});
    return static_cast<std::uint32_t>(p_.scoped_limits_.size() - 1);
}

void PolicyCompiler::index_scoped_limits(char tag, std::uint32_t t, std::string_view id,
                                         std::uint32_t index, const std::string& path) {
    if (!p_.scoped_index_.try_emplace(Policy::scoped_key(tag, t, id), index).second)
        error(path, "duplicate_identity",
              fmt::format("{} is listed twice for tenant \"{}\" and has limits: list it once",
                          p_.scoped_limits_[index].subject, p_.tenant_id(t)));
}

void PolicyCompiler::lint_cross_tenant() {
    // A domain (or a name under a wildcard) granted to two tenants lets
    // either send as the other; it must be deliberate on both sides.
    std::vector<std::uint32_t> reported;
    for (const auto& entry : domain_entries_) {
        const std::uint32_t t = p_.slot_of(entry.tenant);  // as grants name it
        const DomainIndex::Match own = p_.domains_.pattern_of(entry.entry());
        reported.clear();
        p_.domains_.for_each_covering(
            entry.entry(), [&](const DomainIndex::Match& other, const DomainIndex::Grant& g) {
                if (g.tenant == t || (g.shared && entry.shared)) return;
                if (std::find(reported.begin(), reported.end(), g.tenant) != reported.end()) return;
                reported.push_back(g.tenant);
                // Exact duplicates are reported once, at the later tenant
                // (an incremental load lints only the changed tenants).
                if (other == own && g.tenant > t && changed_.empty()) return;
                error(domain_path(entry), "domain_granted_twice",
                      fmt::format("\"{}\" is also granted to tenant \"{}\" (as \"{}\"); mark "
                                  "both grants {{\"domain\": ..., \"shared_domain\": true}} "
                                  "if both may send for it",
                                  written_of(entry), p_.grant_tenant(g), other.pattern()));
            });
    }
    if (!changed_.empty()) lint_names_below_changed_wildcards();

    // Nested or equal networks of different tenants: longest prefix wins,
    // equal prefixes tie. Sorted sweep with a stack of enclosing networks.
    // In the order of (address, prefix, tenant), IPv4 first, as Cidr
    // and IpAddress compare.
    std::sort(networks_.begin(), networks_.end(),
              [this](const NetworkEntry& a, const NetworkEntry& b) {
                  if (a.v6 != b.v6) return b.v6;
                  if (a.v6) {
                      const auto& x = addresses6_[a.address];
                      const auto& y = addresses6_[b.address];
                      if (x != y) return x < y;
                  } else if (a.address != b.address) {
                      return a.address < b.address;
                  }
                  if (a.prefix_len != b.prefix_len) return a.prefix_len < b.prefix_len;
                  return a.tenant < b.tenant;
              });
    std::vector<std::pair<const NetworkEntry*, Cidr>> stack;
    for (const auto& n : networks_) {
        const Cidr cidr = cidr_of(n);
        while (!stack.empty() && !(stack.back().second.prefix_len <= cidr.prefix_len &&
                                   stack.back().second.contains(cidr.address)))
            stack.pop_back();
        for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
            if (it->first->tenant == n.tenant) continue;
            bool equal = it->second == cidr;
            warn(network_path(n), "network_overlap",
                 fmt::format("{} {} network {} of tenant \"{}\" ({}): {}", cidr.to_string(),
                             equal ? "equals" : "lies inside", it->second.to_string(),
                             p_.tenant_id(it->first->tenant), network_path(*it->first),
                             equal ? "decided by domain, refused as ambiguous otherwise"
                                   : "the longest prefix wins"));
            break;
        }
        stack.emplace_back(&n, cidr);
    }

    for (std::uint32_t i = 0; i < provider_used_.size(); ++i)
        if (!provider_used_[i])
            warn(pointer("/providers", p_.providers_[i].name), "unused_provider",
                 fmt::format("provider \"{}\" is not used by any tenant", p_.providers_[i].name));
}

void PolicyCompiler::lint_names_below_changed_wildcards() {
    // The changed wildcards' bases -> their first entry here.
    FlatStringMap<std::uint32_t> bases;
    for (std::uint32_t k = 0; k < domain_entries_.size(); ++k)
        if (domain_entries_[k].wildcard)
            bases.try_emplace(p_.domains_.pattern_of(domain_entries_[k].entry()).base, k);
    if (bases.empty()) return;
    // Every grant of the index, its name's parents looked up among them:
    // one pass over the index, only in an incremental load that changed a
    // wildcard. Which of the two grants the error names does not matter:
    // any error repeats the load in full, which reports it as `check` does.
    p_.domains_.for_each([&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
        for (std::size_t dot = m.base.find('.'); dot != std::string_view::npos;
             dot = m.base.find('.', dot + 1)) {
            const auto r = bases.find(m.base.substr(dot + 1));
            if (r == FlatStringMap<std::uint32_t>::npos) continue;
            const DomainEntry& wild = domain_entries_[bases.value(r)];
            p_.domains_.for_each_covering(
                wild.entry(), [&](const DomainIndex::Match& w, const DomainIndex::Grant& wg) {
                    if (!w.wildcard || w.base != m.base.substr(dot + 1)) return;
                    if (wg.tenant == g.tenant || (wg.shared && g.shared)) return;
                    error(pointer(pointer("/tenants", p_.grant_tenant(g)), "domains"),
                          "domain_granted_twice",
                          fmt::format("\"{}\" is also granted to tenant \"{}\" (as \"{}\")",
                                      m.pattern(), p_.grant_tenant(wg), w.pattern()));
                });
        }
    });
}

namespace {

// Every diagnostic gets the line and column of its path: one more pass over
// the text, only when there is something to report.
void locate(std::string_view text, std::vector<Diagnostic>& ds) {
    if (text.empty() || ds.empty()) return;
    std::vector<std::string> paths;
    paths.reserve(ds.size());
    for (const auto& d : ds)
        paths.push_back(d.path);
    const auto positions = json_reader::locate(text, paths);
    for (std::size_t i = 0; i < ds.size(); ++i) {
        if (!ds[i].file.empty()) continue;  // about another file (credentials)
        ds[i].line = positions[i].line;
        ds[i].column = positions[i].column;
    }
}

}  // namespace

// The text of a policy: in memory (load_text), or files read in blocks for
// the scan and then by ranges, so that a 30 MB file is never held whole
// while its tenants are compiled (load_file; load_files for a policy_dir,
// whose files are merged: "tenants" split over them, every other key in
// one of them, "version" in any number as long as they agree).
class PolicyText {
  public:
    // A member of a top-level object, or a tenant: its key (in keys_), the
    // text it is in and where its value is there. 28 octets, as 100k
    // tenants' parts live through a reload next to the serving policy.
    struct Part {
        std::uint32_t key_at;
        std::uint32_t key_length;
        std::uint32_t source;
        std::uint32_t offset;  // of the value's first octet
        std::uint32_t length;
        std::uint32_t line;  // where the value starts
        std::uint32_t column;
    };

    explicit PolicyText(std::string_view memory) {
        Source s;
        s.memory = memory;
        sources_.push_back(std::move(s));
    }
    // Then open() each file.
    explicit PolicyText(bool dir) : dir_(dir) {}
    PolicyText(const PolicyText&) = delete;
    PolicyText& operator=(const PolicyText&) = delete;
    ~PolicyText() {
        for (const auto& s : sources_)
            if (s.fd >= 0) ::close(s.fd);
    }
    // false when the file cannot be opened.
    bool open(const std::filesystem::path& file) {
        return adopt(::open(file.c_str(), O_RDONLY | O_CLOEXEC), file);
    }
    // Takes `fd` over (it is closed with this); false when it is not open.
    bool adopt(int fd, const std::filesystem::path& file) {
        Source s;
        s.fd = fd;
        s.file = file;
        if (s.fd < 0) return false;
        sources_.push_back(std::move(s));
        return ::fstat(sources_.back().fd, &sources_.back().opened) == 0;
    }

    // Scans every text; false when one is not plain, a read failed
    // (read_failed() tells), or the files do not merge cleanly (the caller
    // then parses them whole, which reports the problem precisely).
    bool scan() {
        members_.clear();
        tenants_.clear();
        keys_.clear();
        for (std::size_t i = 0; i < sources_.size(); ++i) {
            json_reader::MemberScanner scan("tenants");
            scan.on_nested([&](const auto& tenant) { return add(tenants_, tenant, i); });
            if (!feed(sources_[i], scan)) return false;
            sources_[i].start = scan.start();
            for (auto& m : scan.members()) {
                if (scan.is_nested(m)) continue;
                // A "tenants" that is not an object, or (one file) no
                // "tenants" at all: the whole parse says what is wrong.
                if (m.key == "tenants") return false;
                if (dir_ && (m.key == "$schema" || m.key == "description")) continue;
                if (!add(members_, m, i)) return false;
            }
            if (!dir_ && !scan.has_nested()) return false;
        }
        // In the order of their ids: the order of the canonical text the
        // hash covers (so it is hashed as it is compiled, nothing kept) and
        // the order in which load() of a document compiles them. A tenant
        // in two files is an error the whole parse names.
        std::sort(tenants_.begin(), tenants_.end(),
                  [&](const Part& a, const Part& b) { return key(a) < key(b); });
        return std::adjacent_find(tenants_.begin(), tenants_.end(),
                                  [&](const Part& a, const Part& b) { return key(a) == key(b); }) ==
               tenants_.end();
    }
    const std::vector<Part>& members() const { return members_; }
    const std::vector<Part>& tenants() const { return tenants_; }
    std::string_view key(const Part& p) const {
        return std::string_view(keys_).substr(p.key_at, p.key_length);
    }

    // The text of `p`: a view of the memory, or read into `buffer`.
    std::optional<std::string_view> read(const Part& p, std::string& buffer) {
        const Source& s = sources_[p.source];
        if (s.fd < 0) return s.memory.substr(p.offset, p.length);
        buffer.resize(p.length);
        if (!read_at(s, buffer.data(), p.offset, p.length)) return std::nullopt;
        return std::string_view(buffer);
    }
    // f(i, text of parts[i]) in the order of `parts` while it returns true;
    // false when it did not, or a read failed. The parts are read in
    // batches, each batch in file order with ranges less than kGap apart
    // read as one: a system call per few hundred tenants, not per tenant
    // (they are visited in the order of their ids, which is seldom the
    // files' order, but mostly runs through it in a few places at once).
    template <class F>
    bool each_text(const std::vector<Part>& parts, std::string& buffer, F&& f) {
        if (sources_.size() == 1 && sources_[0].fd < 0) {  // in memory
            for (std::size_t i = 0; i < parts.size(); ++i)
                if (!f(i, sources_[0].memory.substr(parts[i].offset, parts[i].length)))
                    return false;
            return true;
        }
        constexpr std::size_t kBatch = 1024, kGap = 1024;
        std::vector<std::uint32_t> order;
        std::vector<std::string_view> texts;
        for (std::size_t first = 0; first < parts.size(); first += kBatch) {
            const std::size_t count = std::min(kBatch, parts.size() - first);
            const Part* batch = parts.data() + first;
            order.resize(count);
            texts.resize(count);
            std::iota(order.begin(), order.end(), 0u);
            std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
                return std::pair(batch[a].source, batch[a].offset) <
                       std::pair(batch[b].source, batch[b].offset);
            });
            // Runs of parts: [start, end) of one source, read to `at`.
            struct Run {
                std::uint32_t source;
                std::uint64_t start, end;
                std::size_t at;
            };
            std::vector<Run> runs;
            for (const auto k : order) {
                const Part& p = batch[k];
                const std::uint64_t end = std::uint64_t(p.offset) + p.length;
                if (runs.empty() || runs.back().source != p.source ||
                    p.offset > runs.back().end + kGap)
                    runs.push_back({p.source, p.offset, end, 0});
                else
                    runs.back().end = std::max(runs.back().end, end);
            }
            std::size_t size = 0;
            for (auto& r : runs) {
                r.at = size;
                size += r.end - r.start;
            }
            buffer.resize(size);
            for (const auto& r : runs)
                if (!read_at(sources_[r.source], buffer.data() + r.at, r.start, r.end - r.start))
                    return false;
            for (std::size_t k = 0, run = 0; k < count; ++k) {
                const Part& p = batch[order[k]];
                while (p.source != runs[run].source || p.offset >= runs[run].end)
                    ++run;
                texts[order[k]] = std::string_view(buffer).substr(
                    runs[run].at + (p.offset - runs[run].start), p.length);
            }
            for (std::size_t k = 0; k < count; ++k)
                if (!f(first + k, texts[k])) return false;
        }
        return true;
    }
    bool read_failed() const { return read_failed_; }
    // A file rewritten in place while it was read (not replaced by a rename,
    // as editors, ConfigMaps and `replace_file` do) may have mixed two
    // versions: it is read again.
    bool changed() const {
        for (const auto& s : sources_) {
            struct stat now {};
            if (s.fd < 0) continue;
            if (::fstat(s.fd, &now) != 0) return true;
            if (now.st_size != s.opened.st_size || now.st_mtim.tv_sec != s.opened.st_mtim.tv_sec ||
                now.st_mtim.tv_nsec != s.opened.st_mtim.tv_nsec ||
                now.st_ctim.tv_sec != s.opened.st_ctim.tv_sec ||
                now.st_ctim.tv_nsec != s.opened.st_ctim.tv_nsec)
                return true;
        }
        return false;
    }

    // Gives each diagnostic the line and column of its path (and, from a
    // directory, its file): each range that holds one is read once and
    // searched, so the text is not read whole.
    void locate(std::vector<Diagnostic>& ds, const std::filesystem::path& dir = {}) {
        if (sources_.size() == 1 && sources_[0].fd < 0)
            return policy::locate(sources_[0].memory, ds);
        struct Want {
            const Part* part;
            std::size_t prefix;  // octets of the path up to the part's value
            Diagnostic* d;
        };
        std::vector<Want> wants;
        for (auto& d : ds) {
            if (!d.file.empty()) continue;  // about another file (credentials)
            const Part* part = nullptr;
            std::size_t prefix = 0;
            if (auto top = json_reader::first_token(d.path); !top) {
                if (!dir_) {  // "": the one file's top-level object
                    d.line = sources_[0].start.line;
                    d.column = sources_[0].start.column;
                }
            } else if (top->first == "tenants") {
                // "/tenants/<id>...": in that tenant's range.
                if (auto id =
                        json_reader::first_token(std::string_view(d.path).substr(top->second))) {
                    const auto t = std::lower_bound(
                        tenants_.begin(), tenants_.end(), id->first,
                        [&](const Part& p, const std::string& id) { return key(p) < id; });
                    if (t != tenants_.end() && key(*t) == id->first) {
                        part = &*t;
                        prefix = top->second + id->second;
                    }
                }
            } else {
                const auto m = std::find_if(members_.begin(), members_.end(),
                                            [&](const Part& m) { return key(m) == top->first; });
                if (m != members_.end()) {
                    part = &*m;
                    prefix = top->second;
                }
            }
            if (dir_) d.file = part ? sources_[part->source].file.string() : dir.string();
            if (part) wants.push_back({part, prefix, &d});
        }
        std::sort(wants.begin(), wants.end(),
                  [](const Want& a, const Want& b) { return a.part < b.part; });
        std::string buffer;
        for (std::size_t i = 0; i < wants.size();) {
            std::size_t end = i;
            std::vector<std::string> paths;
            for (; end < wants.size() && wants[end].part == wants[i].part; ++end)
                paths.push_back(wants[end].d->path.substr(wants[end].prefix));
            const Part& part = *wants[i].part;
            if (auto text = read(part, buffer)) {
                const auto positions = json_reader::locate(*text, paths);
                for (std::size_t k = i; k < end; ++k) {
                    const auto& p = positions[k - i];
                    if (!p.known()) continue;
                    wants[k].d->line = part.line + p.line - 1;
                    wants[k].d->column = p.line == 1 ? part.column + p.column - 1 : p.column;
                }
            }
            i = end;
        }
    }

  private:
    // false when a position does not fit a Part (a text of 4 GiB): the
    // caller parses it whole.
    bool add(std::vector<Part>& parts, const json_reader::MemberScanner::Member& m,
             std::size_t source) {
        constexpr std::uint64_t kMax = std::numeric_limits<std::uint32_t>::max();
        const auto& v = m.value;
        if (v.offset + v.length > kMax || v.position.line > kMax || v.position.column > kMax ||
            keys_.size() + m.key.size() > kMax)
            return false;
        parts.push_back(
            {static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(m.key.size()),
             static_cast<std::uint32_t>(source), static_cast<std::uint32_t>(v.offset),
             static_cast<std::uint32_t>(v.length), static_cast<std::uint32_t>(v.position.line),
             static_cast<std::uint32_t>(v.position.column)});
        keys_ += m.key;
        return true;
    }

    struct Source {
        std::string_view memory;
        int fd = -1;
        struct stat opened {};
        std::filesystem::path file;
        json_reader::Position start{};  // of the top-level object
    };
    bool read_at(const Source& s, char* to, std::uint64_t offset, std::size_t length) {
        for (std::size_t done = 0; done < length;) {
            const ssize_t n =
                ::pread(s.fd, to + done, length - done, static_cast<off_t>(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                read_failed_ = true;
                return false;
            }
            done += static_cast<std::size_t>(n);
        }
        return true;
    }

    bool feed(const Source& s, json_reader::MemberScanner& scan) {
        if (s.fd < 0) return scan.feed(s.memory) && scan.finish();
        bool fed = true;
        if (!read_pieces(s.fd, std::size_t(1) << 20,
                         [&](std::string_view piece) { return fed = scan.feed(piece); })) {
            read_failed_ = true;
            return false;
        }
        return fed && scan.finish();
    }

    bool dir_ = false;
    std::vector<Source> sources_;
    std::vector<Part> members_;  // top-level, but "tenants"; in file order
    std::vector<Part> tenants_;  // sorted by id
    std::string keys_;           // the parts' keys, one after another
    bool read_failed_ = false;
};

LoadResult Policy::load(const json& doc, const Credentials* credentials,
                        const DiagnosticLocator& locator) {
    return build(doc, locator, credentials);
}

LoadResult Policy::build(const json& doc, const DiagnosticLocator& locator,
                         const Credentials* credentials) {
    auto policy = std::shared_ptr<Policy>(new Policy());
    PolicyCompiler compiler(*policy, credentials);
    try {
        compiler.compile(doc);
        compiler.lint_unused_credentials();
    } catch (const json::exception& e) {
        compiler.errors.push_back({"", "schema", e.what()});
    }
    if (!compiler.errors.empty()) {
        if (locator) locator(compiler.errors);
        return unexpected(std::move(compiler.errors));
    }
    if (locator) locator(compiler.warnings);
    policy->warnings_ = std::move(compiler.warnings);
    return std::shared_ptr<const Policy>(std::move(policy));
}

std::optional<LoadResult> Policy::load_streaming(PolicyText& text, const Credentials* credentials,
                                                 const std::filesystem::path& dir,
                                                 const Policy* previous) {
    if (!text.scan()) return std::nullopt;
    std::string buffer;
    json top = json::object();
    for (const auto& m : text.members()) {
        auto member_text = text.read(m, buffer);
        if (!member_text) return std::nullopt;
        auto value = json_reader::parse(*member_text);
        if (!value) return std::nullopt;
        // Only a directory's files can repeat a key, and only "version",
        // with the same value.
        const auto key = text.key(m);
        if (auto [it, fresh] = top.emplace(key, *value); !fresh)
            if (key != "version" || it.value() != *value) return std::nullopt;
    }
    top["tenants"] = json::object();
    const auto& tenants = text.tenants();
    Sha256 tenant_sha;
    auto digest = [&tenant_sha](std::string_view bytes) {
        Sha256::Digest md{};
        TenantDigest d{};
        tenant_sha.reset();
        tenant_sha.update(bytes);
        if (tenant_sha.finish(md)) std::memcpy(d.data(), md.data(), d.size());
        return d;
    };

    // An incremental load matches the tenants by id and knows which
    // changed before the first is compiled.
    std::vector<TenantDigest> digests;
    std::vector<bool> changed;         // by slot
    std::vector<std::uint32_t> slots;  // by tenant number; empty: the number
    if (previous && !previous->tenant_digests_.empty() && !tenants.empty()) {
        auto plan = PolicyCompiler::plan_incremental(
            tenants.size(), [&](std::size_t i) { return text.key(tenants[i]); }, *previous);
        std::size_t n = plan.differing;
        digests.reserve(tenants.size());
        if (!text.each_text(tenants, buffer, [&](std::size_t i, std::string_view tenant_text) {
                digests.push_back(digest(tenant_text));
                const std::uint32_t old = plan.previous_number[i];
                if (old != Policy::kFreeSlot && digests[i] != previous->tenant_digests_[old]) {
                    plan.changed[plan.slots[i]] = true;
                    ++n;
                }
                return true;
            }))
            return std::nullopt;
        // Rebuilding most shards anyway, slots mostly free, or so many
        // runs of slots that they take more than arrays would (16 octets a
        // run, 8 a tenant): a full load is as cheap, and numbers its
        // tenants densely again.
        const std::size_t runs_allowed = std::max<std::size_t>(tenants.size() / 2, 64);
        if (n <= tenants.size() / 4 && plan.changed.size() <= tenants.size() * 5 / 4 &&
            SlotMap::runs_in(plan.slots) <= runs_allowed) {
            changed = std::move(plan.changed);
            if (!plan.identity) slots = std::move(plan.slots);
        }
    }
    const bool incremental = !changed.empty();
    auto policy = std::shared_ptr<Policy>(new Policy());
    PolicyCompiler compiler(*policy, credentials);
    // canonical(top) has "tenants":{} where the sorted tenants go (the
    // last occurrence: keys are sorted and only "version" follows it).
    const std::string head = canonical(top);
    constexpr std::string_view kEmpty = "\"tenants\":{}";
    const auto at = head.rfind(kEmpty);
    Sha256 sha;
    sha.update(std::string_view(head).substr(0, at + kEmpty.size() - 1));
    std::string canonical_text;  // one tenant's, reused
    try {
        if (!compiler.compile_header(top)) return std::nullopt;
        if (incremental) compiler.reuse(*previous, std::move(changed), std::move(slots));
        // Digested already when a previous policy was compared.
        const bool digested = !digests.empty();
        policy->tenant_digests_ = std::move(digests);
        policy->tenant_digests_.reserve(tenants.size());
        if (!text.each_text(tenants, buffer, [&](std::size_t i, std::string_view tenant_text) {
                if (!digested) policy->tenant_digests_.push_back(digest(tenant_text));
                auto tenant = json_reader::parse(tenant_text);
                if (!tenant) return false;
                if (i == 0) compiler.begin_tenants(tenants.size(), &*tenant);
                const std::string id(text.key(tenants[i]));
                compiler.compile_tenant(id, *tenant, pointer("/tenants", id));
                canonical_text.assign(i ? "," : "");
                json_reader::append_canonical(json(id), canonical_text);
                canonical_text += ':';
                json_reader::append_canonical(*tenant, canonical_text);
                sha.update(canonical_text);
                return true;
            }))
            return std::nullopt;
        if (tenants.empty()) compiler.begin_tenants(0, nullptr);
        compiler.finish();
        compiler.lint_unused_credentials();
    } catch (const json::exception& e) {
        compiler.errors.push_back({"", "schema", e.what()});
    }
    if (!compiler.errors.empty()) {
        // The diagnostics of an incremental load name only what it linted:
        // the full load names them as `check` does.
        if (incremental) return load_streaming(text, credentials, dir, nullptr);
        text.locate(compiler.errors, dir);
        return LoadResult(unexpected(std::move(compiler.errors)));
    }
    text.locate(compiler.warnings, dir);
    policy->warnings_ = std::move(compiler.warnings);
    sha.update(std::string_view(head).substr(at + kEmpty.size() - 1));
    policy->hash_ = "sha256:" + sha.hex();
    return LoadResult(std::shared_ptr<const Policy>(std::move(policy)));
}

LoadResult Policy::load_text(std::string_view text, const Credentials* credentials,
                             const Policy* previous) {
    PolicyText memory(text);
    if (auto streamed = load_streaming(memory, credentials, {}, previous))
        return std::move(*streamed);
    return load_whole(text, credentials);
}

LoadResult Policy::load_whole(std::string_view text, const Credentials* credentials) {
    auto doc = json_reader::parse(text);
    if (!doc) {
        std::vector<Diagnostic> errors;
        for (const auto& e : doc.error())
            errors.push_back({e.path, e.rule, e.message, e.position.line, e.position.column});
        return unexpected(std::move(errors));
    }
    return build(
        *doc, [text](std::vector<Diagnostic>& ds) { locate(text, ds); }, credentials);
}

LoadResult Policy::load_descriptor(int fd, const std::filesystem::path& name,
                                   const Credentials* credentials, const Policy* previous) {
    auto cannot_read = [&name] {
        return unexpected(
            std::vector<Diagnostic>{{"", "io", fmt::format("cannot read {}", name.string())}});
    };
    PolicyText text(false);
    if (!text.adopt(::fcntl(fd, F_DUPFD_CLOEXEC, 0), name)) return cannot_read();
    auto streamed = load_streaming(text, credentials, {}, previous);
    if (text.read_failed()) return cannot_read();
    if (streamed) return std::move(*streamed);
    // Not plain enough to stream: parsed as one tree, which reports the
    // problem precisely.
    if (::lseek(fd, 0, SEEK_SET) != 0) return cannot_read();
    const auto whole = read_descriptor(fd);
    if (!whole) return cannot_read();
    return load_whole(*whole, credentials);
}

LoadResult Policy::load_file(const std::filesystem::path& file, const Credentials* credentials,
                             const Policy* previous) {
    auto streamed = load_files({file}, false, credentials, previous);
    if (streamed) return std::move(*streamed);
    // Not plain enough to stream: the whole text, parsed as one tree,
    // reports the problem precisely.
    const auto whole = read_file(file);
    if (!whole)
        return unexpected(
            std::vector<Diagnostic>{{"", "io", fmt::format("cannot read {}", file.string())}});
    return load_whole(*whole, credentials);
}

std::optional<LoadResult> Policy::load_files(const std::vector<std::filesystem::path>& files,
                                             bool dir, const Credentials* credentials,
                                             const Policy* previous) {
    const auto where =
        dir && !files.empty() ? files.front().parent_path() : std::filesystem::path();
    auto io_error = [&](std::string message, const std::filesystem::path& file) {
        Diagnostic d{"", "io", std::move(message)};
        if (dir) d.file = file.string();
        return LoadResult(unexpected(std::vector<Diagnostic>{std::move(d)}));
    };
    // A file rewritten in place while it is read is read again (twice at
    // most, then the load fails and the old policy stays).
    for (int attempt = 0; attempt < 3; ++attempt) {
        PolicyText text(dir);
        for (const auto& file : files)
            if (!text.open(file))
                return io_error(fmt::format("cannot read {}", file.string()), file);
        auto streamed = load_streaming(text, credentials, where, previous);
        if (text.changed()) continue;
        if (text.read_failed())
            return io_error(
                fmt::format("cannot read {}", dir ? where.string() : files.front().string()),
                where);
        return streamed;
    }
    return io_error(fmt::format("{} kept changing while it was read",
                                dir ? where.string() : files.front().string()),
                    where);
}

}  // namespace relaygate::policy
