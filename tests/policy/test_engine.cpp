// Tests for decisions: every policy reason code, the multi-tenant ranking
// (connection-proven > provider-attested > network; ties by domain, else
// ambiguous), provider "pending header", null senders and report mode.
#include <doctest/doctest.h>

#include <algorithm>

#include "policy_test_util.hpp"

using namespace relaygate;
using namespace relaygate::policy;
using namespace relaygate::policy::test;
using message::OriginatorField;

namespace {

const std::string kCertA(64, 'a');
const std::string kCertB(64, 'b');
constexpr const char* kContosoId = "0b0e3c4e-5d6f-4a1b-8c9d-112233445566";

std::shared_ptr<const Policy> fixture() {
    static auto p = must_load(R"({"version": 1,
      "providers": {
        "microsoft365": {"shared": true, "networks": ["40.92.0.0/15", "2a01:111:f400::/48"],
                         "tenant_header": "X-MS-Exchange-CrossTenant-Id"},
        "dedicated": {"shared": false, "networks": ["203.0.113.0/24"], "tenant_header": "X-Dedicated-Tenant"}},
      "tenants": {
        "contoso": {"domains": ["contoso.example", "*.mail.contoso.example"], "allow_null_sender": true,
                    "identities": [{"provider": "microsoft365", "tenant_id": "0b0e3c4e-5d6f-4a1b-8c9d-112233445566"}]},
        "attacker": {"domains": ["attacker.example"],
                     "identities": [{"provider": "microsoft365", "tenant_id": "evil-tenant"}]},
        "acme": {"domains": ["acme.example", "bücher.example", {"domain": "shared.example", "shared_domain": true}],
                 "identities": [{"client_cert_sha256": ")" +
                              kCertA + R"("},
                                {"networks": ["198.51.100.0/24", "2001:db8:10::/48"]}]},
        "beta": {"domains": ["beta.example", {"domain": "shared.example", "shared_domain": true}],
                 "identities": [{"client_cert_sha256": ")" +
                              kCertB + R"("},
                                {"sasl_user": "beta-app", "password_hash": "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU"},
                                {"networks": ["198.51.100.128/25"]}]},
        "gamma": {"domains": ["gamma.example", {"domain": "shared.example", "shared_domain": true}],
                  "identities": [{"networks": ["192.0.2.0/24"]}]},
        "delta": {"domains": ["delta.example", {"domain": "shared.example", "shared_domain": true}],
                  "identities": [{"networks": ["192.0.2.0/24", "203.0.113.0/25"]}, {"provider": "dedicated", "tenant_id": "d1"}]},
        "lab": {"mode": "report", "domains": ["lab.example"], "identities": [{"networks": ["10.9.0.0/16"]}]}
      }})");
    return p;
}

ConnectionFacts with_cert(std::string ip, const std::string& cert) {
    auto c = from_ip(ip);
    c.client_cert_sha256 = cert;
    return c;
}

}  // namespace

TEST_CASE("network identity: envelope and originators") {
    auto p = fixture();
    auto conn = from_ip("198.51.100.7");
    auto d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.verdict == Verdict::accept);
    CHECK(d.reason == Reason::accepted);
    CHECK(d.tenant == "acme");
    CHECK(d.identity == IdentityKind::network);
    CHECK(d.identity_detail == "network 198.51.100.0/24");
    CHECK(d.grant == "acme.example");
    CHECK_FALSE(d.pending_header);
    CHECK_FALSE(d.trace.empty());

    d = p->at_mail_from(conn, env("beta.example"));
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
    CHECK(d.tenant == "acme");

    auto hdr = from_header("xn--bcher-kva.example");
    d = p->at_header(conn, env("acme.example"), hdr);
    CHECK(d.accepted());
    CHECK(d.grant == "acme.example");

    hdr = from_header("beta.example");
    CHECK(p->at_header(conn, env("acme.example"), hdr).reason == Reason::from_domain_unauthorized);
    hdr = from_header("acme.example");
    hdr.originators.push_back({OriginatorField::sender, "beta.example"});
    CHECK(p->at_header(conn, env("acme.example"), hdr).reason ==
          Reason::sender_domain_unauthorized);
    hdr = from_header("acme.example");
    hdr.originators.push_back({OriginatorField::resent_from, "acme.example"});
    hdr.originators.push_back({OriginatorField::resent_sender, "gamma.example"});
    CHECK(p->at_header(conn, env("acme.example"), hdr).reason ==
          Reason::resent_domain_unauthorized);
    hdr = from_header("acme.example");
    hdr.originators.front().field = OriginatorField::sender;  // no From at all
    CHECK(p->at_header(conn, env("acme.example"), hdr).reason == Reason::from_missing);

    // IPv6 and an IPv4-mapped client address.
    CHECK(p->at_mail_from(from_ip("2001:db8:10:ff::1"), env("acme.example")).tenant == "acme");
    CHECK(p->at_mail_from(from_ip("::ffff:198.51.100.7"), env("acme.example")).tenant == "acme");
}

TEST_CASE("unknown clients are tenant_unknown") {
    auto p = fixture();
    auto d = p->at_mail_from(from_ip("192.0.3.1"), env("acme.example"));
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::tenant_unknown);
    CHECK(d.tenant.empty());
    CHECK(p->at_mail_from(ConnectionFacts{}, env("acme.example")).reason == Reason::tenant_unknown);
    auto conn = with_cert("192.0.3.1", std::string(64, 'c'));
    d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.reason == Reason::tenant_unknown);
    conn = from_ip("192.0.3.1");
    conn.sasl_user = "nobody";
    CHECK(p->at_mail_from(conn, env("acme.example")).reason == Reason::tenant_unknown);
}

TEST_CASE("wildcards match strict subdomains at any depth, not the base") {
    auto p = must_load(R"({"version": 1, "tenants": {"t": {"domains": ["*.mail.t.example"],
                          "identities": [{"networks": ["192.0.2.0/24"]}]}}})");
    auto conn = from_ip("192.0.2.1");
    CHECK(p->at_mail_from(conn, env("a.mail.t.example")).grant == "*.mail.t.example");
    CHECK(p->at_mail_from(conn, env("x.y.mail.t.example")).accepted());
    CHECK(p->at_mail_from(conn, env("mail.t.example")).reason ==
          Reason::envelope_domain_unauthorized);
    CHECK(p->at_mail_from(conn, env("amail.t.example")).reason ==
          Reason::envelope_domain_unauthorized);
    CHECK(p->at_mail_from(conn, env("t.example")).reason == Reason::envelope_domain_unauthorized);
}

TEST_CASE("multi-tenant: a strong identity outranks a network") {
    auto p = fixture();
    // Client in acme's network presents beta's certificate: beta it is.
    auto conn = with_cert("198.51.100.7", kCertB);
    auto d = p->at_mail_from(conn, env("beta.example"));
    CHECK(d.accepted());
    CHECK(d.tenant == "beta");
    CHECK(d.identity == IdentityKind::client_cert);
    // ...and it may not fall back to the network to send as acme.
    d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
    CHECK(d.tenant == "beta");

    // SASL likewise; fingerprints compare case-insensitively.
    auto sasl = from_ip("198.51.100.7");
    sasl.sasl_user = "beta-app";
    d = p->at_mail_from(sasl, env("beta.example"));
    CHECK(d.tenant == "beta");
    CHECK(d.identity == IdentityKind::sasl);
    CHECK(
        p->at_mail_from(with_cert("192.0.3.1", std::string(64, 'A')), env("acme.example")).tenant ==
        "acme");
}

TEST_CASE("multi-tenant: the longest network prefix wins") {
    auto p = fixture();
    auto d = p->at_mail_from(from_ip("198.51.100.200"), env("beta.example"));
    CHECK(d.tenant == "beta");
    CHECK(d.identity_detail == "network 198.51.100.128/25");
    CHECK(p->at_mail_from(from_ip("198.51.100.200"), env("acme.example")).reason ==
          Reason::envelope_domain_unauthorized);
}

TEST_CASE("multi-tenant: ties are resolved by domain, otherwise ambiguous") {
    auto p = fixture();
    // gamma and delta share 192.0.2.0/24.
    auto conn = from_ip("192.0.2.9");
    CHECK(p->at_mail_from(conn, env("gamma.example")).tenant == "gamma");
    CHECK(p->at_mail_from(conn, env("delta.example")).tenant == "delta");
    auto d = p->at_mail_from(conn, env("shared.example"));
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::tenant_ambiguous);
    CHECK(d.candidates == std::vector<std::string>{"delta", "gamma"});
    d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
    CHECK(d.tenant.empty());
    CHECK(d.candidates == std::vector<std::string>{"delta", "gamma"});
    // At the header the From domain can also break the tie... or not.
    auto hdr = from_header("gamma.example");
    CHECK(p->at_header(conn, env("gamma.example"), hdr).tenant == "gamma");

    // Two strong identities of different tenants: decided by domain.
    auto both = with_cert("192.0.3.1", kCertA);
    both.sasl_user = "beta-app";
    CHECK(p->at_mail_from(both, env("acme.example")).tenant == "acme");
    CHECK(p->at_mail_from(both, env("beta.example")).tenant == "beta");
    CHECK(p->at_mail_from(both, env("shared.example")).reason == Reason::tenant_ambiguous);
}

TEST_CASE("provider: pending at MAIL FROM, decided by the tenant header") {
    auto p = fixture();
    auto conn = from_ip("40.92.10.20");
    auto d = p->at_mail_from(conn, env("a.mail.contoso.example"));
    CHECK(d.verdict == Verdict::accept);
    CHECK(d.pending_header);
    CHECK(d.identity == IdentityKind::provider);
    CHECK(d.tenant.empty());
    CHECK(d.candidates == std::vector<std::string>{"contoso"});

    // No provider tenant owns the domain: refused at once, nothing pending.
    d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::envelope_domain_unauthorized);

    auto hdr = from_header("contoso.example");
    hdr.provider_header_values = {std::string(" ") + kContosoId + " "};
    d = p->at_header(conn, env("a.mail.contoso.example"), hdr);
    CHECK(d.accepted());
    CHECK(d.tenant == "contoso");
    CHECK(d.identity == IdentityKind::provider);
    CHECK_FALSE(d.pending_header);
    hdr.provider_header_values = {"0B0E3C4E-5D6F-4A1B-8C9D-112233445566"};
    CHECK(p->at_header(conn, env("contoso.example"), hdr).accepted());

    // EchoSpoofing: another M365 tenant (anyone can create one) sends as contoso.
    hdr.provider_header_values = {"evil-tenant"};
    d = p->at_header(conn, env("contoso.example"), hdr);
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.tenant == "attacker");
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
    hdr.originators = {{OriginatorField::from, "contoso.example"}};
    CHECK(p->at_header(conn, env("attacker.example"), hdr).reason ==
          Reason::from_domain_unauthorized);

    // Attestation needs exactly one header value matching a tenant.
    hdr.provider_header_values = {};
    CHECK(p->at_header(conn, env("contoso.example"), hdr).reason ==
          Reason::provider_attestation_failed);
    hdr.provider_header_values = {kContosoId, kContosoId};
    CHECK(p->at_header(conn, env("contoso.example"), hdr).reason ==
          Reason::provider_attestation_failed);
    hdr.provider_header_values = {kContosoId, "evil-tenant"};
    CHECK(p->at_header(conn, env("contoso.example"), hdr).reason ==
          Reason::provider_attestation_failed);
    hdr.provider_header_values = {"unknown"};
    CHECK(p->at_header(conn, env("contoso.example"), hdr).reason ==
          Reason::provider_attestation_failed);

    // The header alone proves nothing outside the provider's networks.
    hdr.provider_header_values = {kContosoId};
    CHECK(p->at_header(from_ip("192.0.3.1"), env("contoso.example"), hdr).reason ==
          Reason::tenant_unknown);
    CHECK(p->at_mail_from(from_ip("192.0.3.1"), env("contoso.example")).reason ==
          Reason::tenant_unknown);
    // IPv6 provider network.
    CHECK(p->at_mail_from(from_ip("2a01:111:f400::5"), env("contoso.example")).pending_header);
    CHECK(p->provider_tenant_headers() ==
          std::vector<std::string>{"X-Dedicated-Tenant", "X-MS-Exchange-CrossTenant-Id"});
}

TEST_CASE("provider outranks a network; a failed attestation falls back to it") {
    auto p = fixture();
    // "dedicated" is not shared, so delta may also list part of it as a
    // network. The attested provider identity is used first...
    auto conn = from_ip("203.0.113.5");
    auto d = p->at_mail_from(conn, env("delta.example"));
    CHECK(d.pending_header);
    auto hdr = from_header("delta.example");
    hdr.provider_header_values = {"d1"};
    d = p->at_header(conn, env("delta.example"), hdr);
    CHECK(d.tenant == "delta");
    CHECK(d.identity == IdentityKind::provider);
    // ...and without an attestation the network identity still applies,
    hdr.provider_header_values = {"nope"};
    d = p->at_header(conn, env("delta.example"), hdr);
    CHECK(d.accepted());
    CHECK(d.identity == IdentityKind::network);
    // but not outside that network.
    auto outside = from_ip("203.0.113.200");
    CHECK(p->at_header(outside, env("delta.example"), hdr).reason ==
          Reason::provider_attestation_failed);
}

TEST_CASE("null reverse-path") {
    auto p = fixture();
    auto conn = from_ip("198.51.100.7");  // acme: no allow_null_sender
    auto d = p->at_mail_from(conn, env(""));
    CHECK(d.reason == Reason::null_sender_not_allowed);
    CHECK(d.tenant == "acme");

    auto m365 = from_ip("40.92.10.20");
    d = p->at_mail_from(m365, env(""));
    CHECK(d.pending_header);  // contoso allows <>
    auto hdr = from_header("contoso.example");
    hdr.provider_header_values = {kContosoId};
    d = p->at_header(m365, env(""), hdr);
    CHECK(d.accepted());
    CHECK(d.grant == "contoso.example");  // the From grant
    hdr.originators = {{OriginatorField::from, "acme.example"}};
    CHECK(p->at_header(m365, env(""), hdr).reason == Reason::from_domain_unauthorized);
    hdr.originators = {};
    CHECK(p->at_header(m365, env(""), hdr).reason == Reason::from_missing);
    hdr = from_header("attacker.example");
    hdr.provider_header_values = {"evil-tenant"};
    CHECK(p->at_header(m365, env(""), hdr).reason == Reason::null_sender_not_allowed);

    // No provider tenant allows <>: refused at MAIL FROM.
    auto q = must_load(
        R"({"version": 1, "providers": {"m": {"networks": ["40.92.0.0/15"], "tenant_header": "X-T"}},
        "tenants": {"t": {"domains": ["t.example"], "identities": [{"provider": "m", "tenant_id": "1"}]}}})");
    CHECK(q->at_mail_from(m365, env("")).reason == Reason::null_sender_not_allowed);
}

TEST_CASE("report mode passes what would be refused, and says so") {
    auto p = fixture();
    auto conn = from_ip("10.9.1.1");
    auto d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.verdict == Verdict::accept);
    CHECK(d.report_only);
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
    CHECK(d.tenant == "lab");
    d = p->at_mail_from(conn, env("lab.example"));
    CHECK_FALSE(d.report_only);
    CHECK(d.reason == Reason::accepted);

    // Global report mode covers connections that match no tenant.
    auto q = must_load(R"({"version": 1, "mode": "report", "tenants": {
        "t": {"domains": ["t.example"], "identities": [{"networks": ["192.0.2.0/24"]}]},
        "strict": {"mode": "enforce", "domains": ["s.example"], "identities": [{"networks": ["192.0.3.0/24"]}]}}})");
    d = q->at_mail_from(from_ip("10.0.0.1"), env("t.example"));
    CHECK(d.accepted());
    CHECK(d.report_only);
    CHECK(d.reason == Reason::tenant_unknown);
    CHECK(q->at_mail_from(from_ip("192.0.3.1"), env("t.example")).verdict == Verdict::reject);
}

TEST_CASE("end of data re-asserts the header decision from the facts") {
    auto p = fixture();
    auto conn = from_ip("198.51.100.7");
    auto ok = from_header("acme.example");
    auto d = p->at_end_of_data(conn, env("acme.example"), ok, {});
    CHECK(d.accepted());
    CHECK(d.tenant == "acme");
    CHECK(d.trace.front().find("end of data") != std::string::npos);
    auto bad = from_header("beta.example");
    CHECK(p->at_end_of_data(conn, env("acme.example"), bad, {}).reason ==
          Reason::from_domain_unauthorized);
}

TEST_CASE("every policy reason code is reachable or reserved, and has a 5xx reply") {
    // Each is exercised above or in test_dns_dkim.cpp.
    for (Reason r :
         {Reason::tenant_unknown, Reason::tenant_ambiguous, Reason::envelope_domain_unauthorized,
          Reason::from_domain_unauthorized, Reason::sender_domain_unauthorized,
          Reason::resent_domain_unauthorized, Reason::null_sender_not_allowed,
          Reason::provider_attestation_failed, Reason::domain_not_verified}) {
        CAPTURE(label(r));
        CHECK(info(r).smtp_code == 550);
        CHECK(info(r).enhanced == "5.7.1");
        CHECK(to_string(Verdict::reject) == "reject");
    }
    CHECK(to_string(IdentityKind::client_cert) == "client-cert");
    CHECK(to_string(IdentityKind::none) == "none");
    CHECK(to_string(IdentityKind::network) == "network");
    CHECK(to_string(IdentityKind::sasl) == "sasl");
    CHECK(to_string(IdentityKind::provider) == "provider");
}

TEST_CASE("hostile facts never throw") {
    auto p = fixture();
    ConnectionFacts conn = from_ip("40.92.0.1");
    conn.client_cert_sha256 = std::string(10000, '\xff');
    conn.client_spki_sha256 = std::string("\0\n\r", 3);
    conn.sasl_user = std::string(5000, '\x01');
    HeaderFactsForPolicy hdr;
    hdr.originators = {{OriginatorField::from, ""}, {OriginatorField::from, std::string(300, '.')}};
    hdr.provider_header_values = {std::string(100000, 'x')};
    for (const auto& e : {env(""), env("."), env(std::string(1000, 'a')), env("..a..")}) {
        CHECK_NOTHROW((void)p->at_mail_from(conn, e));
        CHECK_NOTHROW((void)p->at_header(conn, e, hdr));
        CHECK_NOTHROW((void)p->at_end_of_data(conn, e, hdr, {}));
    }
    auto d = p->at_header(conn, env("contoso.example"), hdr);
    for (const auto& line : d.trace)
        CHECK(line.size() < 400);
}

TEST_CASE("Trace::off decides the same, without the trace") {
    auto p = fixture();
    auto conn = from_ip("40.92.10.20");
    auto hdr = from_header("contoso.example");
    hdr.provider_header_values = {kContosoId};
    for (const char* domain : {"contoso.example", "acme.example", ""}) {
        auto a = p->at_header(conn, env(domain), hdr, Trace::on);
        auto b = p->at_header(conn, env(domain), hdr, Trace::off);
        CHECK(a.verdict == b.verdict);
        CHECK(a.reason == b.reason);
        CHECK(a.tenant == b.tenant);
        CHECK(a.grant == b.grant);
        CHECK_FALSE(a.trace.empty());
        CHECK(b.trace.empty());
        CHECK(p->at_mail_from(conn, env(domain), Trace::off).trace.empty());
        CHECK(p->at_end_of_data(conn, env(domain), hdr, {}, Trace::off).trace.empty());
    }
}
