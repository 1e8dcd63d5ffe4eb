// Policy evaluation: facts in, Decision out. No I/O, no clock, no throwing
// code paths (only allocation can fail). The identity ranking and the
// provider "pending header" rule are documented in policy/README.md.
#include "policy/engine/policy.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "gateway/common/ascii.hpp"

namespace relaygate::policy {
namespace {

std::string_view field_name(message::OriginatorField f) {
    switch (f) {
        case message::OriginatorField::from: return "From";
        case message::OriginatorField::sender: return "Sender";
        case message::OriginatorField::resent_from: return "Resent-From";
        case message::OriginatorField::resent_sender: return "Resent-Sender";
    }
    return "originator";
}

Reason reason_for(message::OriginatorField f) {
    switch (f) {
        case message::OriginatorField::from: return Reason::from_domain_unauthorized;
        case message::OriginatorField::sender: return Reason::sender_domain_unauthorized;
        case message::OriginatorField::resent_from:
        case message::OriginatorField::resent_sender: return Reason::resent_domain_unauthorized;
    }
    return Reason::from_domain_unauthorized;
}

std::string_view trim_wsp(std::string_view s) {
    while (!s.empty() && (ascii::is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (ascii::is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// Facts from the client (header values, user names) end up in the trace
// and the audit log: printable ASCII only, bounded.
std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s.substr(0, 80)) out += (c < 0x20 || c >= 0x7f) ? '?' : char(c);
    if (s.size() > 80) out += "...";
    return out;
}

std::string envelope_text(const EnvelopeFacts& env) {
    return env.null_sender ? "<> (null reverse-path)" : fmt::format("domain {}", env.domain);
}

}  // namespace

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::accept: return "accept";
        case Verdict::reject: return "reject";
        case Verdict::tempfail: return "tempfail";
    }
    return "reject";
}

std::string_view to_string(IdentityKind k) {
    switch (k) {
        case IdentityKind::none: return "none";
        case IdentityKind::network: return "network";
        case IdentityKind::client_cert: return "client-cert";
        case IdentityKind::sasl: return "sasl";
        case IdentityKind::provider: return "provider";
    }
    return "none";
}

std::string_view to_string(Mode m) { return m == Mode::report ? "report" : "enforce"; }

std::vector<std::string> Policy::tenant_ids() const {
    std::vector<std::string> out;
    out.reserve(tenants_.size());
    for (const auto& t : tenants_) out.push_back(t.id);
    return out;
}

std::vector<std::string> Policy::provider_tenant_headers() const {
    std::vector<std::string> out;
    for (const auto& p : providers_) {
        bool seen = std::any_of(out.begin(), out.end(),
                                [&](const std::string& h) { return ascii::iequals(h, p.tenant_header); });
        if (!seen && p.tenants > 0) out.push_back(p.tenant_header);
    }
    return out;
}

const std::string* Policy::sasl_hash(std::string_view user) const {
    auto it = sasl_index_.find(user);
    return it == sasl_index_.end() ? nullptr : &it->second.password_hash;
}

std::string Policy::sasl_tenant(std::string_view user) const {
    auto it = sasl_index_.find(user);
    return it == sasl_index_.end() ? std::string() : tenants_[it->second.tenant].id;
}

// Tier 1: identities the connection itself proved (TLS client certificate,
// authenticated SASL user). They outrank everything else.
void Policy::identify_strong(const ConnectionFacts& conn, std::vector<Candidate>& out,
                             std::vector<std::string>& trace) const {
    auto add = [&](std::uint32_t t, IdentityKind kind, std::string detail) {
        trace.push_back(fmt::format("identity: {} matches tenant {}", detail, tenants_[t].id));
        for (const auto& c : out)
            if (c.tenant == t) return;
        out.push_back({t, kind, std::move(detail)});
    };
    if (conn.client_cert_sha256) {
        std::string fp = ascii::lower(*conn.client_cert_sha256);
        if (auto it = cert_index_.find(fp); it != cert_index_.end()) {
            for (auto t : it->second) add(t, IdentityKind::client_cert, "client-cert sha256 " + printable(fp));
        } else {
            trace.push_back(fmt::format("identity: client certificate {} is not pinned by any tenant", printable(fp)));
        }
    }
    if (conn.client_spki_sha256) {
        std::string fp = ascii::lower(*conn.client_spki_sha256);
        if (auto it = spki_index_.find(fp); it != spki_index_.end()) {
            for (auto t : it->second) add(t, IdentityKind::client_cert, "client-cert spki " + printable(fp));
        } else {
            trace.push_back(fmt::format("identity: client key (SPKI) {} is not pinned by any tenant", printable(fp)));
        }
    }
    if (conn.sasl_user) {
        if (auto it = sasl_index_.find(*conn.sasl_user); it != sasl_index_.end()) {
            add(it->second.tenant, IdentityKind::sasl, "sasl user " + printable(*conn.sasl_user));
        } else {
            trace.push_back(
                fmt::format("identity: sasl user {} is not in the policy", printable(*conn.sasl_user)));
        }
    }
}

Reason Policy::check_candidate(Stage stage, const Candidate& c, const EnvelopeFacts& env,
                               const HeaderFactsForPolicy* hdr, std::string& grant,
                               std::vector<std::string>& trace) const {
    const Tenant& t = tenants_[c.tenant];
    if (env.null_sender) {
        if (!t.allow_null_sender) {
            trace.push_back(fmt::format("tenant {}: null reverse-path not allowed", t.id));
            return Reason::null_sender_not_allowed;
        }
        trace.push_back(fmt::format("tenant {}: null reverse-path allowed if From is authorized", t.id));
    } else {
        auto g = domains_.grant_for(env.domain, c.tenant);
        if (!g) {
            trace.push_back(fmt::format("tenant {}: envelope domain {} not granted", t.id, env.domain));
            return Reason::envelope_domain_unauthorized;
        }
        trace.push_back(fmt::format("tenant {}: envelope domain {} granted by {}", t.id, env.domain, *g));
        grant = std::move(*g);
    }
    if (stage == Stage::mail_from || hdr == nullptr) return Reason::accepted;

    bool has_from = false;
    for (const auto& o : hdr->originators) {
        auto g = domains_.grant_for(o.domain, c.tenant);
        if (!g) {
            trace.push_back(fmt::format("tenant {}: {} domain {} not granted", t.id,
                                        field_name(o.field), o.domain.empty() ? "(empty)" : o.domain));
            return reason_for(o.field);
        }
        trace.push_back(fmt::format("tenant {}: {} domain {} granted by {}", t.id,
                                    field_name(o.field), o.domain, *g));
        if (o.field == message::OriginatorField::from) {
            has_from = true;
            if (env.null_sender && grant.empty()) grant = std::move(*g);
        }
    }
    if (!has_from) {
        // The header reader refuses such messages first; this keeps the
        // engine safe on its own (a null sender is allowed only via From).
        trace.push_back(fmt::format("tenant {}: no From originator to authorize", t.id));
        return Reason::from_missing;
    }
    return Reason::accepted;
}

void Policy::finish(Decision& d, Mode mode) const {
    if (d.verdict == Verdict::reject && mode == Mode::report) {
        d.verdict = Verdict::accept;
        d.report_only = true;
        d.trace.push_back(fmt::format("report mode: would reject ({}), passing", label(d.reason)));
    }
    d.trace.push_back(fmt::format("decision: {} ({})", to_string(d.verdict), label(d.reason)));
}

Decision Policy::evaluate(Stage stage, const ConnectionFacts& conn, const EnvelopeFacts& env,
                          const HeaderFactsForPolicy* hdr) const {
    Decision d;
    auto& trace = d.trace;
    trace.push_back(fmt::format("{}: client {}, envelope {}",
                                stage == Stage::mail_from ? "MAIL FROM" : "header",
                                conn.client_ip ? conn.client_ip->to_string() : "unknown",
                                envelope_text(env)));

    std::vector<Candidate> cands;
    identify_strong(conn, cands, trace);

    // Providers whose networks contain the client.
    std::vector<std::uint32_t> provs;
    if (conn.client_ip) {
        provider_index_.for_each_match(*conn.client_ip, [&](const CidrIndex::Match& m) {
            for (auto p : provider_slots_[m.slot].tenants)
                if (std::find(provs.begin(), provs.end(), p) == provs.end()) provs.push_back(p);
        });
    }
    for (auto p : provs)
        trace.push_back(fmt::format("client is in a network of provider {}{}", providers_[p].name,
                                    providers_[p].shared ? " (shared: proves nothing by itself)" : ""));

    // Tier 2: provider attestation, proven only by the tenant header.
    if (cands.empty() && !provs.empty()) {
        if (stage == Stage::header && hdr != nullptr) {
            const auto& values = hdr->provider_header_values;
            if (values.size() != 1) {
                trace.push_back(fmt::format(
                    "provider attestation: {} tenant header values, exactly one required",
                    values.size()));
            } else {
                std::string value = ascii::lower(trim_wsp(values.front()));
                for (auto p : provs) {
                    std::string key = std::to_string(p) + '\0' + value;
                    auto it = provider_tenant_index_.find(key);
                    if (it == provider_tenant_index_.end()) {
                        trace.push_back(fmt::format(
                            "provider attestation: {} {} is not a tenant of provider {}",
                            providers_[p].tenant_header, printable(value), providers_[p].name));
                        continue;
                    }
                    for (auto t : it->second) {
                        std::string detail = fmt::format("provider {} tenant_id {}", providers_[p].name, value);
                        trace.push_back(fmt::format("identity: {} matches tenant {}", detail, tenants_[t].id));
                        cands.push_back({t, IdentityKind::provider, std::move(detail)});
                    }
                }
            }
        } else {
            // MAIL FROM: the header is not there yet. Accept provisionally
            // when some tenant of these providers could send for the
            // envelope domain; at_header decides with the attestation.
            std::vector<std::string> pending;
            bool any = false;
            if (env.null_sender) {
                for (auto p : provs) any = any || providers_[p].null_sender_tenants > 0;
            } else {
                domains_.for_each_grant(env.domain, [&](std::string_view, const DomainIndex::Grant& g) {
                    const auto& tp = tenants_[g.tenant].providers;
                    bool via = std::any_of(tp.begin(), tp.end(), [&](std::uint32_t p) {
                        return std::find(provs.begin(), provs.end(), p) != provs.end();
                    });
                    const auto& id = tenants_[g.tenant].id;
                    if (via && std::find(pending.begin(), pending.end(), id) == pending.end())
                        pending.push_back(id);
                });
                any = !pending.empty();
            }
            if (any) {
                std::sort(pending.begin(), pending.end());
                d.verdict = Verdict::accept;
                d.reason = Reason::accepted;
                d.identity = IdentityKind::provider;
                d.pending_header = true;
                trace.push_back(fmt::format(
                    "pending header: provider identity {} must be attested by the tenant header",
                    pending.empty() ? std::string("of a tenant allowing <>")
                                    : fmt::format("of {}", fmt::join(pending, ", "))));
                d.candidates = std::move(pending);
                finish(d, default_mode_);
                return d;
            }
            trace.push_back("no tenant of these providers may send for this envelope");
        }
    }

    // Tier 3: dedicated networks, most specific prefix wins.
    if (cands.empty() && conn.client_ip) {
        if (auto m = network_index_.longest_match(*conn.client_ip)) {
            for (auto t : network_slots_[m->slot].tenants) {
                std::string detail = "network " + m->cidr.to_string();
                trace.push_back(fmt::format("identity: {} matches tenant {}", detail, tenants_[t].id));
                cands.push_back({t, IdentityKind::network, std::move(detail)});
            }
        }
    }

    if (cands.empty()) {
        bool provider_has_tenants = std::any_of(provs.begin(), provs.end(), [&](std::uint32_t p) {
            return providers_[p].tenants > 0;
        });
        if (provider_has_tenants && stage == Stage::header) {
            d.reason = Reason::provider_attestation_failed;
            d.identity = IdentityKind::provider;
        } else if (provider_has_tenants) {
            d.reason = env.null_sender ? Reason::null_sender_not_allowed
                                       : Reason::envelope_domain_unauthorized;
            d.identity = IdentityKind::provider;
        } else {
            d.reason = Reason::tenant_unknown;
            trace.push_back("identity: none of certificate, sasl user, provider or network matched");
        }
        finish(d, default_mode_);
        return d;
    }

    // Resolution: the candidates of the winning tier that the domains
    // authorize. One wins; several are ambiguous; none is the first refusal.
    std::vector<std::pair<std::size_t, std::string>> ok;  // candidate index, grant
    Reason first_failure = Reason::accepted;
    for (std::size_t i = 0; i < cands.size(); ++i) {
        std::string grant;
        Reason r = check_candidate(stage, cands[i], env, hdr, grant, trace);
        if (r == Reason::accepted) {
            ok.emplace_back(i, std::move(grant));
        } else if (first_failure == Reason::accepted) {
            first_failure = r;
        }
    }
    auto fill = [&](const Candidate& c) {
        d.tenant = tenants_[c.tenant].id;
        d.identity = c.kind;
        d.identity_detail = c.detail;
    };
    if (ok.size() == 1) {
        const Candidate& c = cands[ok.front().first];
        fill(c);
        d.verdict = Verdict::accept;
        d.reason = Reason::accepted;
        d.grant = std::move(ok.front().second);
        finish(d, tenants_[c.tenant].mode);
        return d;
    }
    if (ok.size() > 1) {
        d.reason = Reason::tenant_ambiguous;
        d.identity = cands.front().kind;
        for (const auto& [i, g] : ok) d.candidates.push_back(tenants_[cands[i].tenant].id);
        std::sort(d.candidates.begin(), d.candidates.end());
        trace.push_back(fmt::format("ambiguous: tenants {} are all authorized",
                                    fmt::join(d.candidates, ", ")));
        finish(d, default_mode_);
        return d;
    }
    d.reason = first_failure;
    if (cands.size() == 1) {
        fill(cands.front());
        finish(d, tenants_[cands.front().tenant].mode);
        return d;
    }
    d.identity = cands.front().kind;
    for (const auto& c : cands) d.candidates.push_back(tenants_[c.tenant].id);
    std::sort(d.candidates.begin(), d.candidates.end());
    finish(d, default_mode_);
    return d;
}

Decision Policy::at_mail_from(const ConnectionFacts& conn, const EnvelopeFacts& env) const {
    return evaluate(Stage::mail_from, conn, env, nullptr);
}

Decision Policy::at_header(const ConnectionFacts& conn, const EnvelopeFacts& env,
                           const HeaderFactsForPolicy& hdr) const {
    return evaluate(Stage::header, conn, env, &hdr);
}

Decision Policy::at_end_of_data(const ConnectionFacts& conn, const EnvelopeFacts& env,
                                const HeaderFactsForPolicy& hdr) const {
    // Nothing in the policy needs the body yet (DKIM corroboration is the
    // next step), so the commit point re-derives the header decision from
    // the same facts rather than trusting a cached verdict.
    Decision d = evaluate(Stage::header, conn, env, &hdr);
    d.trace.push_back(
        fmt::format("end of data: no body checks configured; header decision stands ({})",
                    to_string(d.verdict)));
    return d;
}

}  // namespace relaygate::policy
