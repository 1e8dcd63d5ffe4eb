// libFuzzer target for the policy loader: arbitrary bytes as a policy file
// must give a Policy or diagnostics, never a crash, hang or leak; a loaded
// policy must then decide fixed facts without throwing, and DNS-verified
// grants must ask for their proof and never accept without it. The load
// of the text (tenant by tenant, in ranges) and the load of its parsed
// tree must agree: both load with the same hash, or both refuse with the
// same diagnostics. So must an incremental reload of the text from a fixed
// previous policy (tenants kept, changed, added and removed by slot), and
// the reload back to that policy.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/json/document.hpp"
#include "policy/engine/policy.hpp"

using namespace relaygate::policy;

namespace {

// The previous policy of the incremental reloads: tenant ids the corpus
// uses (acme, fabrikam, contoso), a shared name, a wildcard, and five more
// tenants so that a reload that adds, removes or changes one of eight is
// incremental (tests/fuzz/corpus/policy/reload-*.json start from it).
constexpr std::string_view kPrevious = R"({"version": 1, "tenants": {
  "t1": {"domains": ["t1.example"], "identities": [{"networks": ["10.0.1.0/24"]}]},
  "t2": {"domains": ["t2.example"], "identities": [{"networks": ["10.0.2.0/24"]}]},
  "t3": {"domains": ["t3.example", "*.t3.example"], "identities": [{"networks": ["10.0.3.0/24"]}]},
  "t4": {"domains": ["t4.example"], "identities": [{"sasl_user": "t4", "password_hash": "$pbkdf2-sha256$i=600000$dmydeM8Mk6ZcNf4++WDSXA$kTsw+1Ca2DDaqIe92g0xBElCP11vxQ0c/gwPev2qBnI"}]},
  "t5": {"domains": ["t5.example"], "identities": [{"networks": ["10.0.5.0/24"]}]},
  "acme": {"domains": ["acme.example", "*.mail.acme.example",
                       {"domain": "shared.example", "shared_domain": true}],
           "identities": [{"networks": ["198.51.100.0/24"]}]},
  "contoso": {"domains": ["contoso.example"],
              "identities": [{"client_cert_sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]},
  "fabrikam": {"domains": ["fabrikam.example", {"domain": "shared.example", "shared_domain": true}],
               "identities": [{"networks": ["2001:db8:10::/48"]}]}}})";

std::string decisions(const Policy& p) {
    std::string out;
    for (const char* ip : {"198.51.100.7", "2001:db8:10::1", "127.0.0.1", "10.0.3.9", "10.0.9.9"})
        for (const char* domain :
             {"acme.example", "a.mail.acme.example", "shared.example", "fabrikam.example",
              "contoso.example", "t3.example", "x.t3.example", "beta.example"}) {
            ConnectionFacts conn;
            conn.client_ip = IpAddress::parse(ip);
            conn.client_cert_sha256 = std::string(64, 'a');
            const Decision d = p.at_mail_from(conn, EnvelopeFacts{false, domain, {}}, Trace::off);
            out += std::string(to_string(d.verdict)) + ' ' + d.tenant + ' ' + d.grant + ';';
        }
    return out;
}

void same_diagnostics(const std::vector<Diagnostic>& a, const std::vector<Diagnostic>& b) {
    if (a.size() != b.size()) __builtin_trap();
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].path != b[i].path || a[i].rule != b[i].rule || a[i].message != b[i].message)
            __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;  // bounded: the interesting bugs are structural
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto loaded = Policy::load_text(text);
    static const std::shared_ptr<const Policy> previous = [] {
        auto p = Policy::load_text(kPrevious);
        if (!p) __builtin_trap();
        return *p;
    }();
    auto reloaded = Policy::load_text(text, nullptr, previous.get());
    if (bool(reloaded) != bool(loaded)) __builtin_trap();
    if (!loaded) {
        same_diagnostics(loaded.error(), reloaded.error());
    } else {
        if ((*reloaded)->hash() != (*loaded)->hash()) __builtin_trap();
        same_diagnostics((*loaded)->warnings(), (*reloaded)->warnings());
        if (decisions(**reloaded) != decisions(**loaded)) __builtin_trap();
        auto back = Policy::load_text(kPrevious, nullptr, reloaded->get());
        if (!back || (*back)->hash() != previous->hash() ||
            decisions(**back) != decisions(*previous))
            __builtin_trap();
    }
    if (auto doc = relaygate::json_reader::parse(text)) {
        auto tree = Policy::load(*doc);
        if (bool(tree) != bool(loaded)) __builtin_trap();
        if (tree && (*tree)->hash() != (*loaded)->hash()) __builtin_trap();
        if (!tree) same_diagnostics(tree.error(), loaded.error());
    }
    if (!loaded) {
        for (const auto& e : loaded.error())
            (void)format_diagnostic(e);
        return 0;
    }
    const Policy& p = **loaded;
    (void)p.hash();
    (void)p.tenant_ids();
    (void)p.provider_tenant_headers();
    for (const char* ip : {"198.51.100.7", "40.92.1.1", "2001:db8:10::1", "127.0.0.1"}) {
        ConnectionFacts conn;
        conn.client_ip = IpAddress::parse(ip);
        conn.sasl_user = "acme-app";
        conn.client_cert_sha256 = std::string(64, 'a');
        for (const char* domain :
             {"acme.example", "a.mail.acme.example", "xn--bcher-kva.example", ""}) {
            EnvelopeFacts env{*domain == '\0', domain, {}};
            HeaderFactsForPolicy hdr;
            hdr.originators.push_back({relaygate::message::OriginatorField::from, "acme.example"});
            hdr.provider_header_values.push_back("0b0e3c4e-5d6f-4a1b-8c9d-112233445566");
            (void)p.at_mail_from(conn, env);
            (void)p.at_end_of_data(conn, env, hdr, {});
            // DNS and DKIM facts: an incomplete decision never accepts, and
            // answering what it asked for never asks for the same again.
            const DkimFact sig{"contoso.onmicrosoft.com", "s", DkimFact::Status::pass,
                               "s._domainkey.acme.onmicrosoft.com", false};
            for (auto status : {DomainProof::Status::found, DomainProof::Status::missing,
                                DomainProof::Status::error}) {
                EnvelopeFacts e = env;
                for (int round = 0; round < 4; ++round) {
                    Decision d = p.at_end_of_data(conn, e, hdr, {sig}, Trace::off);
                    if (d.dns_needed.empty()) break;
                    if (d.verdict != Verdict::tempfail) __builtin_trap();
                    for (const auto& proof : e.domain_proofs)
                        if (proof.domain == d.dns_needed.front()) __builtin_trap();
                    e.domain_proofs.push_back({d.dns_needed.front(), status, {"acme"}});
                }
            }
        }
    }
    return 0;
}
