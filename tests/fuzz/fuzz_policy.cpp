// libFuzzer target for the policy loader: arbitrary bytes as a policy file
// must give a Policy or diagnostics, never a crash, hang or leak; a loaded
// policy must then decide fixed facts without throwing, and DNS-verified
// grants must ask for their proof and never accept without it. The load
// of the text (tenant by tenant, in ranges) and the load of its parsed
// tree must agree: both load with the same hash, or both refuse with the
// same diagnostics.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gateway/json/document.hpp"
#include "policy/engine/policy.hpp"

using namespace relaygate::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;  // bounded: the interesting bugs are structural
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto loaded = Policy::load_text(text);
    if (auto doc = relaygate::json_reader::parse(text)) {
        auto tree = Policy::load(*doc);
        if (bool(tree) != bool(loaded)) __builtin_trap();
        if (tree && (*tree)->hash() != (*loaded)->hash()) __builtin_trap();
        if (!tree) {
            if (tree.error().size() != loaded.error().size()) __builtin_trap();
            for (std::size_t i = 0; i < tree.error().size(); ++i)
                if (tree.error()[i].path != loaded.error()[i].path ||
                    tree.error()[i].rule != loaded.error()[i].rule ||
                    tree.error()[i].message != loaded.error()[i].message)
                    __builtin_trap();
        }
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
