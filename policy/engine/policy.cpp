// Policy evaluation: facts in, Decision out. No I/O, no clock, no throwing
// code paths (only allocation can fail). The identity ranking and the
// provider "pending header" rule are documented in policy/README.md.
#include "policy/engine/policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory_resource>

#include "gateway/common/ascii.hpp"

namespace relaygate::policy {
namespace {

Reason reason_for(message::OriginatorField f) {
    switch (f) {
        case message::OriginatorField::from:
            return Reason::from_domain_unauthorized;
        case message::OriginatorField::sender:
            return Reason::sender_domain_unauthorized;
        case message::OriginatorField::resent_from:
        case message::OriginatorField::resent_sender:
            return Reason::resent_domain_unauthorized;
    }
    return Reason::from_domain_unauthorized;
}

// Facts from the client (header values, user names) end up in the trace
// and the audit log: printable ASCII only, bounded.
// `lower` first lower-cases ASCII letters (printable(ascii::lower(s))).
void append_printable(std::string& out, std::string_view s, bool lower = false) {
    std::size_t n = std::min<std::size_t>(s.size(), 80);
    out.reserve(out.size() + n + 3);
    for (std::size_t i = 0; i < n; ++i) {
        char c = lower ? ascii::to_lower(s[i]) : s[i];
        auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u >= 0x7f) ? '?' : c;
    }
    if (s.size() > 80) out += "...";
}
std::string printable(std::string_view s) {
    std::string out;
    append_printable(out, s);
    return out;
}

std::string envelope_text(const EnvelopeFacts& env) {
    return env.null_sender ? "<> (null reverse-path)" : fmt::format("domain {}", env.domain);
}

}  // namespace

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::accept:
            return "accept";
        case Verdict::reject:
            return "reject";
        case Verdict::tempfail:
            return "tempfail";
    }
    return "reject";
}

std::string_view to_string(IdentityKind k) {
    switch (k) {
        case IdentityKind::none:
            return "none";
        case IdentityKind::network:
            return "network";
        case IdentityKind::client_cert:
            return "client-cert";
        case IdentityKind::sasl:
            return "sasl";
        case IdentityKind::provider:
            return "provider";
    }
    return "none";
}

std::string_view to_string(DkimFact::Status s) {
    switch (s) {
        case DkimFact::Status::pass:
            return "pass";
        case DkimFact::Status::fail:
            return "fail";
        case DkimFact::Status::temperror:
            return "temperror";
        case DkimFact::Status::permerror:
            return "permerror";
    }
    return "permerror";
}

std::optional<std::string> parse_domain_proof(std::string_view txt) {
    std::optional<std::string> tenant;
    bool first = true;
    while (true) {
        std::size_t semi = txt.find(';');
        std::string_view tag = ascii::trim_wsp_crlf(txt.substr(0, semi));
        std::size_t eq = tag.find('=');
        std::string_view name =
            eq == std::string_view::npos ? tag : ascii::trim_wsp_crlf(tag.substr(0, eq));
        std::string_view value = eq == std::string_view::npos
                                     ? std::string_view()
                                     : ascii::trim_wsp_crlf(tag.substr(eq + 1));
        if (first) {
            if (name != "v" || value != "relaygate1") return std::nullopt;
            first = false;
        } else if (name == "tenant") {
            if (tenant || value.empty()) return std::nullopt;  // duplicate or empty
            for (char c : value)
                if (c <= ' ' || c >= 0x7f) return std::nullopt;
            tenant = std::string(value);
        } else if (name == "v") {
            return std::nullopt;
        }
        if (semi == std::string_view::npos) break;
        txt.remove_prefix(semi + 1);
    }
    return tenant;
}

std::string_view to_string(Mode m) {
    return m == Mode::report ? "report" : "enforce";
}

void Policy::TenantTable::reserve(std::size_t n, bool huge_pages) {
    const std::size_t chunks = (n + kChunk - 1) / kChunk;
    chunks_.reserve(chunks);
    if (huge_pages && chunks * kChunk * sizeof(Tenant) >= kHugePage)
        region_ = TableRegion::create(chunks * kChunk * sizeof(Tenant));
}

void Policy::TenantTable::push_back(Tenant t, const TenantTable* previous) {
    if (size_ % kChunk == 0) {
        close(previous);
        if (spare_) {
            open_ = std::move(spare_);
            open_->clear();
        } else {
            open_ = std::make_shared<Chunk>(TableAllocator<Tenant>(region_));
            open_->reserve(kChunk);
        }
        chunks_.push_back(open_);
    }
    open_->push_back(std::move(t));
    ++size_;
}

void Policy::TenantTable::close(const TenantTable* previous) {
    if (!open_) return;
    const std::size_t k = chunks_.size() - 1;
    if (previous && k < previous->chunks_.size() && *previous->chunks_[k] == *open_) {
        chunks_[k] = previous->chunks_[k];
        spare_ = std::move(open_);
    }
    open_.reset();
}

void Policy::TenantTable::seal(const TenantTable* previous) {
    close(previous);
    spare_.reset();
    region_.reset();  // the chunks in it hold it
}

std::size_t Policy::TenantTable::chunks_shared_with(const TenantTable& other) const {
    std::size_t n = 0;
    for (std::size_t k = 0; k < chunks_.size() && k < other.chunks_.size(); ++k)
        n += chunks_[k] == other.chunks_[k];
    return n;
}

std::vector<std::string> Policy::tenant_ids() const {
    std::vector<std::string> out;
    out.reserve(tenants_.size());
    for (std::size_t t = 0; t < tenants_.size(); ++t)
        out.emplace_back(tenant_id(t));  // numbered in the ids' order (see has_tenant)
    return out;
}

bool Policy::has_tenant(std::string_view id) const {
    std::size_t lo = 0, hi = tenants_.size();
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (tenant_id(mid) < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tenants_.size() && tenant_id(lo) == id;
}

std::vector<std::string> Policy::provider_tenant_headers() const {
    std::vector<std::string> out;
    for (const auto& p : providers_) {
        bool seen = std::any_of(out.begin(), out.end(), [&](const std::string& h) {
            return ascii::iequals(h, p.tenant_header);
        });
        if (!seen && p.tenants > 0) out.push_back(p.tenant_header);
    }
    return out;
}

const std::string* Policy::sasl_hash(std::string_view user) const {
    auto r = sasl_index_.find(user);
    return r == FlatStringMap<std::uint32_t>::npos
               ? nullptr
               : &sasl_entries_[sasl_index_.value(r)].password_hash;
}

std::string Policy::sasl_tenant(std::string_view user) const {
    auto r = sasl_index_.find(user);
    return r == FlatStringMap<std::uint32_t>::npos
               ? std::string()
               : std::string(tenant_id(sasl_entries_[sasl_index_.value(r)].tenant));
}

// A connection's identity match, described lazily: the detail string is
// only built for the trace and for the winning candidate.
struct Policy::Candidate {
    std::uint32_t tenant = 0;
    IdentityKind kind = IdentityKind::none;
    bool spki = false;             // client_cert: the SPKI pin, not the certificate's
    std::uint32_t provider = 0;    // provider: its number
    Cidr cidr;                     // network: the matching network
    std::uint32_t dkim = kNoDkim;  // provider: index into dkim_ when DKIM is required
    static constexpr std::uint32_t kNoDkim = 0xffff'ffffU;
};

// Domains whose DomainProof a decision still needs (views into the index).
struct Policy::Needs {
    std::pmr::vector<std::string_view> domains;
};

// The facts a candidate's detail refers to.
struct Policy::Facts {
    const ConnectionFacts& conn;
    std::string_view provider_value;  // lower-cased, trimmed tenant header value
};

namespace {

constexpr std::size_t kFingerprintHex = 64;  // the loader stores exactly this
constexpr std::size_t kMaxProviderTenantId = 256;

template <class V>
typename FlatStringMap<V>::Ref find_fingerprint(const FlatStringMap<V>& index,
                                                std::string_view fp) {
    // Pins are stored as 64 lower-case hex digits; lowering keeps the length.
    if (fp.size() != kFingerprintHex) return FlatStringMap<V>::npos;
    char buf[kFingerprintHex];
    for (std::size_t i = 0; i < fp.size(); ++i)
        buf[i] = ascii::to_lower(fp[i]);
    return index.find(std::string_view(buf, fp.size()));
}

std::string network_detail(const Cidr& cidr) {
    std::string out;
    out.reserve(sizeof "network 255.255.255.255/32");  // one allocation, not a regrowth
    out = "network ";
    cidr.append_to(out);
    return out;
}

// Small per-decision scratch vectors live on the stack; the heap is only
// the fallback for unusually many matches.
class Scratch {
  public:
    std::pmr::memory_resource* resource() { return &mr_; }

  private:
    alignas(std::max_align_t) std::byte buf_[2048];
    std::pmr::monotonic_buffer_resource mr_{buf_, sizeof buf_};
};

}  // namespace

std::string Policy::detail_of(const Candidate& c, const Facts& facts) const {
    switch (c.kind) {
        case IdentityKind::network:
            return network_detail(c.cidr);
        case IdentityKind::client_cert: {
            std::string out = c.spki ? "client-cert spki " : "client-cert sha256 ";
            append_printable(
                out, c.spki ? *facts.conn.client_spki_sha256 : *facts.conn.client_cert_sha256,
                true);
            return out;
        }
        case IdentityKind::sasl: {
            std::string out = "sasl user ";
            append_printable(out, *facts.conn.sasl_user);
            return out;
        }
        case IdentityKind::provider:
            return fmt::format("provider {} tenant_id {}", providers_[c.provider].name,
                               facts.provider_value);
        case IdentityKind::none:
            break;
    }
    return {};
}

// Tier 1: identities the connection itself proved (TLS client certificate,
// authenticated SASL user). They outrank everything else.
template <class Out>
void Policy::identify_strong(const Facts& facts, Out& out, const Tracer& note) const {
    const ConnectionFacts& conn = facts.conn;
    auto add = [&](const Candidate& c) {
        __builtin_prefetch(&tenants_[c.tenant]);
        if (note) note("identity: {} matches tenant {}", detail_of(c, facts), tenant_id(c.tenant));
        for (const auto& o : out)
            if (o.tenant == c.tenant) return;
        out.push_back(c);
    };
    if (conn.client_cert_sha256) {
        if (auto r = find_fingerprint(cert_index_, *conn.client_cert_sha256);
            r != FlatStringMap<OwnerRef>::npos) {
            each_owner(cert_index_.value(r), [&](std::uint32_t t) {
                add(Candidate{t, IdentityKind::client_cert, false, 0, {}});
            });
        } else if (note) {
            note("identity: client certificate {} is not pinned by any tenant",
                 printable(ascii::lower(*conn.client_cert_sha256)));
        }
    }
    if (conn.client_spki_sha256) {
        if (auto r = find_fingerprint(spki_index_, *conn.client_spki_sha256);
            r != FlatStringMap<OwnerRef>::npos) {
            each_owner(spki_index_.value(r), [&](std::uint32_t t) {
                add(Candidate{t, IdentityKind::client_cert, true, 0, {}});
            });
        } else if (note) {
            note("identity: client key (SPKI) {} is not pinned by any tenant",
                 printable(ascii::lower(*conn.client_spki_sha256)));
        }
    }
    if (conn.sasl_user) {
        if (auto r = sasl_index_.find(*conn.sasl_user); r != FlatStringMap<std::uint32_t>::npos) {
            add(Candidate{
                sasl_entries_[sasl_index_.value(r)].tenant, IdentityKind::sasl, false, 0, {}});
        } else if (note) {
            note("identity: sasl user {} is not in the policy", printable(*conn.sasl_user));
        }
    }
}

namespace {

// "sel._domainkey.contoso.onmicrosoft.com" -> "contoso.onmicrosoft.com".
std::string_view key_domain(std::string_view key_name) {
    constexpr std::string_view kMark = "._domainkey.";
    std::size_t at = key_name.rfind(kMark);
    return at == std::string_view::npos ? std::string_view() : key_name.substr(at + kMark.size());
}

}  // namespace

Reason Policy::check_proof(const Tenant& t, const DomainIndex::Match& g, const EnvelopeFacts& env,
                           Needs& needs, const Tracer& note) const {
    if (!g.verify_dns) return Reason::accepted;
    auto proof = std::find_if(env.domain_proofs.begin(), env.domain_proofs.end(),
                              [&](const DomainProof& p) { return p.domain == g.base; });
    if (proof == env.domain_proofs.end()) {
        if (note)
            note("tenant {}: {} is verified in DNS: needs TXT _relaygate.{}", id_of(t), g.pattern(),
                 g.base);
        if (std::find(needs.domains.begin(), needs.domains.end(), g.base) == needs.domains.end())
            needs.domains.push_back(g.base);
        return Reason::accepted;
    }
    switch (proof->status) {
        case DomainProof::Status::error:
            note("tenant {}: DNS lookup of _relaygate.{} failed", id_of(t), g.base);
            return Reason::dns_tempfail;
        case DomainProof::Status::missing:
            note("tenant {}: no v=relaygate1 TXT record at _relaygate.{}", id_of(t), g.base);
            return Reason::domain_not_verified;
        case DomainProof::Status::found:
            break;
    }
    if (std::find(proof->tenants.begin(), proof->tenants.end(), id_of(t)) == proof->tenants.end()) {
        if (note)
            note("tenant {}: _relaygate.{} names {}, not this tenant", id_of(t), g.base,
                 printable(fmt::format("{}", fmt::join(proof->tenants, ", "))));
        return Reason::domain_not_verified;
    }
    note("tenant {}: _relaygate.{} names this tenant", id_of(t), g.base);
    return Reason::accepted;
}

Reason Policy::check_dkim(const Candidate& c, const std::vector<DkimFact>& dkim,
                          const Tracer& note) const {
    const auto& want = dkim_[c.dkim].domains;
    const Tenant& t = tenants_[c.tenant];
    auto listed = [&](std::string_view d) {
        return !d.empty() && std::find(want.begin(), want.end(), d) != want.end();
    };
    bool temporary = false;
    for (const auto& f : dkim) {
        bool by_domain = listed(f.domain);
        bool by_cname = !by_domain && listed(key_domain(f.key_cname_target));
        if (f.status == DkimFact::Status::pass && !f.length_limited && (by_domain || by_cname)) {
            if (note)
                note("tenant {}: DKIM d={} s={} passes{} and corroborates provider tenant",
                     id_of(t), printable(f.domain), printable(f.selector),
                     by_cname ? fmt::format(" (key CNAME {})", printable(f.key_cname_target))
                              : std::string());
            return Reason::accepted;
        }
        temporary = temporary || f.status == DkimFact::Status::temperror;
        if (note)
            note("tenant {}: DKIM d={} s={} {}{}: does not corroborate", id_of(t),
                 printable(f.domain), printable(f.selector), to_string(f.status),
                 f.length_limited           ? " (l= limits the body)"
                 : !(by_domain || by_cname) ? " (not a signing domain of the tenant)"
                                            : "");
    }
    if (dkim.empty())
        note("tenant {}: no DKIM signature; required by its provider identity", id_of(t));
    if (temporary) return Reason::dns_tempfail;
    return Reason::provider_dkim_unverified;
}

Reason Policy::check_candidate(Stage stage, const Candidate& c, const EnvelopeFacts& env,
                               const HeaderFactsForPolicy* hdr, const std::vector<DkimFact>* dkim,
                               DomainIndex::Match& grant, Needs& needs, const Tracer& note) const {
    const Tenant& t = tenants_[c.tenant];
    const std::uint32_t slot = slot_of(c.tenant);  // as the domain index names it
    if (env.null_sender) {
        if (!t.allow_null_sender) {
            note("tenant {}: null reverse-path not allowed", id_of(t));
            return Reason::null_sender_not_allowed;
        }
        note("tenant {}: null reverse-path allowed if From is authorized", id_of(t));
    } else {
        auto g = domains_.grant_for(env.domain, slot);
        if (!g) {
            note("tenant {}: envelope domain {} not granted", id_of(t), env.domain);
            return Reason::envelope_domain_unauthorized;
        }
        if (note)
            note("tenant {}: envelope domain {} granted by {}", id_of(t), env.domain, g->pattern());
        grant = *g;
        if (Reason r = check_proof(t, *g, env, needs, note); r != Reason::accepted) return r;
    }
    if (stage == Stage::mail_from || hdr == nullptr) return Reason::accepted;

    bool has_from = false;
    for (const auto& o : hdr->originators) {
        auto g = domains_.grant_for(o.domain, slot);
        if (!g) {
            note("tenant {}: {} domain {} not granted", id_of(t), message::to_string(o.field),
                 o.domain.empty() ? "(empty)" : o.domain);
            return reason_for(o.field);
        }
        if (note)
            note("tenant {}: {} domain {} granted by {}", id_of(t), message::to_string(o.field),
                 o.domain, g->pattern());
        if (Reason r = check_proof(t, *g, env, needs, note); r != Reason::accepted) {
            if (r == Reason::domain_not_verified) grant = *g;  // for the reply's hint
            return r;
        }
        if (o.field == message::OriginatorField::from) {
            has_from = true;
            if (env.null_sender && grant.base.empty()) grant = *g;
        }
    }
    if (!has_from) {
        // The header reader refuses such messages first; this keeps the
        // engine safe on its own (a null sender is allowed only via From).
        note("tenant {}: no From originator to authorize", id_of(t));
        return Reason::from_missing;
    }
    if (c.dkim != Candidate::kNoDkim) {
        if (stage == Stage::header) {
            note("tenant {}: provider identity requires DKIM corroboration at end of data",
                 id_of(t));
        } else if (dkim != nullptr) {
            return check_dkim(c, *dkim, note);
        }
    }
    return Reason::accepted;
}

void Policy::finish(Decision& d, Mode mode, const Tracer& note) const {
    // A DNS failure is not a refusal: the sender tries again later.
    if (d.verdict == Verdict::reject && is_tempfail(d.reason)) d.verdict = Verdict::tempfail;
    if (d.verdict != Verdict::accept && mode == Mode::report) {
        d.verdict = Verdict::accept;
        d.report_only = true;
        note("report mode: would reject ({}), passing", label(d.reason));
    }
    note("decision: {} ({})", to_string(d.verdict), label(d.reason));
}

void Policy::attach_limits(Decision& d, const Candidate& c, const Facts& facts,
                           const Tracer& note) const {
    if (d.verdict != Verdict::accept || d.pending_header || d.tenant.empty()) return;
    const TenantLimits& own = tenant_limits_[tenants_[c.tenant].limits];
    d.limits_mode = own.mode;
    d.on_spike = own.on_spike;
    if (!uses_limits_) return;
    auto add = [&](const LimitSet& set, LimitScope scope, const std::string& subject) {
        for (auto kind : {LimitKind::messages, LimitKind::recipients, LimitKind::bytes})
            for (const Rate& r : set.of(kind))
                d.limits.push_back(AppliedLimit{kind, scope, d.tenant, subject, r});
    };
    add(own.set, LimitScope::tenant, d.tenant);
    if (!scoped_limits_.empty()) {
        // The identity that proved the tenant, then the grant that
        // authorized the envelope domain.
        std::string id;
        char tag = 0;
        switch (c.kind) {
            case IdentityKind::network:
                tag = 'n';
                id = network_id(c.cidr);
                break;
            case IdentityKind::client_cert: {
                const auto& fp =
                    c.spki ? facts.conn.client_spki_sha256 : facts.conn.client_cert_sha256;
                tag = c.spki ? 's' : 'c';
                if (fp) id = ascii::lower(*fp);
                break;
            }
            case IdentityKind::sasl:
                tag = 'u';
                if (facts.conn.sasl_user) id = *facts.conn.sasl_user;
                break;
            case IdentityKind::provider:
                tag = 'p';
                id.assign(sizeof c.provider, '\0');
                std::memcpy(id.data(), &c.provider, sizeof c.provider);
                id += facts.provider_value;
                break;
            case IdentityKind::none:
                break;
        }
        if (tag != 0)
            if (auto r = scoped_index_.find(scoped_key(tag, c.tenant, id));
                r != FlatStringMap<std::uint32_t>::npos) {
                const ScopedLimits& s = scoped_limits_[scoped_index_.value(r)];
                add(s.set, s.scope, s.subject);
            }
        if (!d.grant.empty())
            if (auto r = scoped_index_.find(scoped_key('d', c.tenant, d.grant));
                r != FlatStringMap<std::uint32_t>::npos) {
                const ScopedLimits& s = scoped_limits_[scoped_index_.value(r)];
                add(s.set, s.scope, s.subject);
            }
    }
    if (note) {
        for (const auto& l : d.limits)
            note("limit: {}", l.describe());
        if (!d.limits.empty())
            note("limits: mode {}, on_spike {}",
                 d.limits_mode == LimitMode::report ? "report" : "enforce",
                 d.on_spike == SpikeAction::hold ? "hold" : "log");
    }
}

Decision Policy::evaluate(Stage stage, const ConnectionFacts& conn, const EnvelopeFacts& env,
                          const HeaderFactsForPolicy* hdr, const std::vector<DkimFact>* dkim,
                          Trace trace) const {
    Decision d;
    const Tracer note{trace == Trace::on ? &d.trace : nullptr};
    if (note)
        note("{}: client {}, envelope {}",
             stage == Stage::mail_from ? "MAIL FROM"
             : stage == Stage::header  ? "header"
                                       : "end of data",
             conn.client_ip ? conn.client_ip->to_string() : "unknown", envelope_text(env));

    // The domain lookups do not depend on the identity: start their cache
    // misses now, so that they overlap the identity lookups below.
    if (!env.null_sender) domains_.prefetch(env.domain);
    if (hdr != nullptr) {
        std::size_t n = 0;
        for (const auto& o : hdr->originators) {
            if (++n > 4) break;
            if (o.domain != env.domain) domains_.prefetch(o.domain);
        }
    }

    Scratch scratch;
    Facts facts{conn, {}};
    std::pmr::vector<Candidate> cands(scratch.resource());
    identify_strong(facts, cands, note);

    // Providers whose networks contain the client.
    std::pmr::vector<std::uint32_t> provs(scratch.resource());
    if (conn.client_ip && provider_index_.size() > 0) {
        provider_index_.for_each_match(*conn.client_ip, [&](const CidrIndex::Match& m) {
            each_owner(m.slot, [&](std::uint32_t p) {
                if (std::find(provs.begin(), provs.end(), p) == provs.end()) provs.push_back(p);
            });
        });
    }
    if (note)
        for (auto p : provs)
            note("client is in a network of provider {}{}", providers_[p].name,
                 providers_[p].shared ? " (shared: proves nothing by itself)" : "");

    // Tier 2: provider attestation, proven only by the tenant header.
    std::string long_value;  // a header value too long to be any tenant id
    char value_buf[kMaxProviderTenantId];
    if (cands.empty() && !provs.empty()) {
        if (stage != Stage::mail_from && hdr != nullptr) {
            const auto& values = hdr->provider_header_values;
            if (values.size() != 1) {
                note("provider attestation: {} tenant header values, exactly one required",
                     values.size());
            } else {
                std::string_view trimmed = ascii::trim_wsp_crlf(values.front());
                bool fits = trimmed.size() <= kMaxProviderTenantId;
                if (fits) {
                    for (std::size_t i = 0; i < trimmed.size(); ++i)
                        value_buf[i] = ascii::to_lower(trimmed[i]);
                    facts.provider_value = std::string_view(value_buf, trimmed.size());
                } else {
                    long_value = ascii::lower(trimmed);
                    facts.provider_value = long_value;
                }
                char key_buf[sizeof(std::uint32_t) + kMaxProviderTenantId];
                for (auto p : provs) {
                    auto r = FlatStringMap<OwnerRef>::npos;
                    if (fits) {
                        std::memcpy(key_buf, &p, sizeof p);
                        std::memcpy(key_buf + sizeof p, value_buf, trimmed.size());
                        r = provider_tenant_index_.find(
                            std::string_view(key_buf, sizeof p + trimmed.size()));
                    }
                    if (r == FlatStringMap<OwnerRef>::npos) {
                        if (note)
                            note("provider attestation: {} {} is not a tenant of provider {}",
                                 providers_[p].tenant_header, printable(facts.provider_value),
                                 providers_[p].name);
                        continue;
                    }
                    std::string_view key = provider_tenant_index_.key(r);
                    each_owner(provider_tenant_index_.value(r), [&](std::uint32_t t) {
                        __builtin_prefetch(&tenants_[t]);
                        Candidate c{t, IdentityKind::provider, false, p, {}};
                        if (!dkim_.empty())
                            if (auto k = dkim_index_.find(dkim_key(t, key));
                                k != FlatStringMap<std::uint32_t>::npos)
                                c.dkim = dkim_index_.value(k);
                        if (note)
                            note("identity: {} matches tenant {}", detail_of(c, facts),
                                 tenant_id(t));
                        cands.push_back(c);
                    });
                }
            }
        } else {
            // MAIL FROM: the header is not there yet. Accept provisionally
            // when some tenant of these providers could send for the
            // envelope domain; at_header decides with the attestation.
            std::pmr::vector<std::uint32_t> pending(scratch.resource());
            bool any = false;
            if (env.null_sender) {
                for (auto p : provs)
                    any = any || providers_[p].null_sender_tenants > 0;
            } else {
                domains_.for_each_grant(
                    env.domain, [&](const DomainIndex::Match&, const DomainIndex::Grant& g) {
                        const std::uint32_t t = tenant_of_slot(g.tenant);
                        const Tenant& gt = tenants_[t];
                        auto tp = tenant_providers_.begin() + gt.providers_begin;
                        bool via = std::any_of(tp, tp + gt.providers_count, [&](std::uint32_t p) {
                            return std::find(provs.begin(), provs.end(), p) != provs.end();
                        });
                        if (via && std::find(pending.begin(), pending.end(), t) == pending.end())
                            pending.push_back(t);
                    });
                any = !pending.empty();
            }
            if (any) {
                d.candidates.reserve(pending.size());
                for (auto t : pending)
                    d.candidates.emplace_back(tenant_id(t));
                std::sort(d.candidates.begin(), d.candidates.end());
                d.verdict = Verdict::accept;
                d.reason = Reason::accepted;
                d.identity = IdentityKind::provider;
                d.pending_header = true;
                if (note)
                    note(
                        "pending header: provider identity {} must be attested by the tenant "
                        "header",
                        d.candidates.empty() ? std::string("of a tenant allowing <>")
                                             : fmt::format("of {}", fmt::join(d.candidates, ", ")));
                finish(d, default_mode_, note);
                return d;
            }
            note("no tenant of these providers may send for this envelope");
        }
    }

    // Tier 3: dedicated networks, most specific prefix wins.
    if (cands.empty() && conn.client_ip && network_index_.size() > 0) {
        if (auto m = network_index_.longest_match(*conn.client_ip)) {
            each_owner(m->slot, [&](std::uint32_t t) {
                __builtin_prefetch(&tenants_[t]);
                Candidate c{t, IdentityKind::network, false, 0, m->cidr};
                if (note) note("identity: {} matches tenant {}", detail_of(c, facts), tenant_id(t));
                cands.push_back(c);
            });
        }
    }

    if (cands.empty()) {
        bool provider_has_tenants = std::any_of(
            provs.begin(), provs.end(), [&](std::uint32_t p) { return providers_[p].tenants > 0; });
        if (provider_has_tenants && stage != Stage::mail_from) {
            d.reason = Reason::provider_attestation_failed;
            d.identity = IdentityKind::provider;
        } else if (provider_has_tenants) {
            d.reason = env.null_sender ? Reason::null_sender_not_allowed
                                       : Reason::envelope_domain_unauthorized;
            d.identity = IdentityKind::provider;
        } else {
            d.reason = Reason::tenant_unknown;
            note("identity: none of certificate, sasl user, provider or network matched");
        }
        finish(d, default_mode_, note);
        return d;
    }

    // Resolution: the candidates of the winning tier that the domains
    // authorize. One wins; several are ambiguous; none is the first refusal.
    struct Authorized {
        std::size_t candidate;
        DomainIndex::Match grant;
    };
    std::pmr::vector<Authorized> ok(scratch.resource());
    Needs needs{std::pmr::vector<std::string_view>(scratch.resource())};
    Reason first_failure = Reason::accepted;
    std::size_t first_failed = 0;
    DomainIndex::Match failed_grant;
    for (std::size_t i = 0; i < cands.size(); ++i) {
        DomainIndex::Match grant;
        std::size_t needed = needs.domains.size();
        Reason r = check_candidate(stage, cands[i], env, hdr, dkim, grant, needs, note);
        if (r == Reason::accepted) {
            ok.push_back({i, grant});
        } else {
            needs.domains.resize(needed);  // a refused candidate needs no DNS
            if (first_failure == Reason::accepted) {
                first_failure = r;
                first_failed = i;
                failed_grant = grant;
            }
        }
    }
    if (!needs.domains.empty()) {
        // Some authorized candidate rests on a DNS-verified grant whose
        // record is not known yet: ask for it, fail closed meanwhile.
        d.verdict = Verdict::tempfail;
        d.reason = Reason::dns_tempfail;
        for (auto n : needs.domains)
            d.dns_needed.emplace_back(n);
        note("pending DNS: TXT _relaygate.{}", fmt::join(d.dns_needed, ", _relaygate."));
        return d;
    }
    auto fill = [&](const Candidate& c) {
        d.tenant = tenant_id(c.tenant);
        d.identity = c.kind;
        d.identity_detail = detail_of(c, facts);
        d.dkim_required = c.dkim != Candidate::kNoDkim;
    };
    if (ok.size() == 1) {
        const Candidate& c = cands[ok.front().candidate];
        fill(c);
        d.verdict = Verdict::accept;
        d.reason = Reason::accepted;
        d.grant = ok.front().grant.pattern();
        finish(d, tenants_[c.tenant].mode, note);
        attach_limits(d, c, facts, note);
        return d;
    }
    if (ok.size() > 1) {
        d.reason = Reason::tenant_ambiguous;
        d.identity = cands.front().kind;
        for (const auto& a : ok)
            d.candidates.emplace_back(tenant_id(cands[a.candidate].tenant));
        std::sort(d.candidates.begin(), d.candidates.end());
        if (note) note("ambiguous: tenants {} are all authorized", fmt::join(d.candidates, ", "));
        finish(d, default_mode_, note);
        return d;
    }
    d.reason = first_failure;
    if (first_failure == Reason::domain_not_verified)
        d.reply_detail = fmt::format("publish TXT _relaygate.{} \"v=relaygate1; tenant={}\"",
                                     failed_grant.base, tenant_id(cands[first_failed].tenant));
    if (cands.size() == 1) {
        fill(cands.front());
        finish(d, tenants_[cands.front().tenant].mode, note);
        attach_limits(d, cands.front(), facts, note);
        return d;
    }
    d.identity = cands.front().kind;
    for (const auto& c : cands)
        d.candidates.emplace_back(tenant_id(c.tenant));
    std::sort(d.candidates.begin(), d.candidates.end());
    finish(d, default_mode_, note);
    return d;
}

Decision Policy::at_mail_from(const ConnectionFacts& conn, const EnvelopeFacts& env,
                              Trace trace) const {
    return evaluate(Stage::mail_from, conn, env, nullptr, nullptr, trace);
}

Decision Policy::at_header(const ConnectionFacts& conn, const EnvelopeFacts& env,
                           const HeaderFactsForPolicy& hdr, Trace trace) const {
    return evaluate(Stage::header, conn, env, &hdr, nullptr, trace);
}

Decision Policy::at_end_of_data(const ConnectionFacts& conn, const EnvelopeFacts& env,
                                const HeaderFactsForPolicy& hdr, const std::vector<DkimFact>& dkim,
                                Trace trace) const {
    // The commit point re-derives the header decision from the same facts
    // (rather than trusting a cached verdict) and adds DKIM corroboration.
    return evaluate(Stage::end_of_data, conn, env, &hdr, &dkim, trace);
}

}  // namespace relaygate::policy
