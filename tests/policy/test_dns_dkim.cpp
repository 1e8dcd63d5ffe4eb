// DNS-verified domains ("verify": "dns") and DKIM-corroborated provider
// identities ("require": ["header", "dkim"]): loading, and the decisions at
// MAIL FROM, header and end of data, from facts only.
#include <doctest/doctest.h>

#include "policy/engine/policy.hpp"
#include "tests/policy/policy_test_util.hpp"

using namespace relaygate;
using namespace relaygate::policy;
using namespace relaygate::policy::test;

namespace {

constexpr const char* kBrandId = "11111111-2222-3333-4444-555555555555";
constexpr const char* kAttackerId = "99999999-8888-7777-6666-555555555555";

// Microsoft 365 as a shared provider; "brand" proves itself by its tenant
// header AND a DKIM signature of brand.onmicrosoft.com; "verified" owns a
// domain only while DNS says so; "attacker" is another tenant of M365.
constexpr const char* kPolicy = R"({
  "version": 1,
  "providers": {
    "microsoft365": {
      "shared": true,
      "networks": ["40.92.0.0/15"],
      "tenant_header": "X-MS-Exchange-CrossTenant-Id",
      "dkim_domain_suffix": ".onmicrosoft.com"
    }
  },
  "tenants": {
    "brand": {
      "domains": ["brand.example"],
      "identities": [{"provider": "microsoft365", "tenant_id": "11111111-2222-3333-4444-555555555555",
                      "require": ["header", "dkim"], "dkim_domains": ["brand.onmicrosoft.com"]}]
    },
    "attacker": {
      "domains": ["attacker.example"],
      "identities": [{"provider": "microsoft365", "tenant_id": "99999999-8888-7777-6666-555555555555"}]
    },
    "verified": {
      "domains": [{"domain": "acme.example", "verify": "dns"}, "plain.example",
                  {"domain": "*.mail.acme.example", "verify": "dns"}],
      "identities": [{"networks": ["198.51.100.0/24"]}]
    }
  }
})";

DomainProof proof(std::string domain, DomainProof::Status status,
                  std::vector<std::string> tenants = {}) {
    return DomainProof{std::move(domain), status, std::move(tenants)};
}

DkimFact signature(std::string domain, DkimFact::Status status = DkimFact::Status::pass) {
    DkimFact f;
    f.domain = std::move(domain);
    f.selector = "selector1";
    f.status = status;
    return f;
}

HeaderFactsForPolicy brand_header(std::string tenant_id = kBrandId) {
    auto h = from_header("brand.example");
    h.provider_header_values = {std::move(tenant_id)};
    return h;
}

}  // namespace

TEST_CASE("domain proof records: v=relaygate1 first, one tenant") {
    CHECK(parse_domain_proof("v=relaygate1; tenant=acme") == "acme");
    CHECK(parse_domain_proof("v=relaygate1;tenant=acme;") == "acme");
    CHECK(parse_domain_proof(" v = relaygate1 ; note=x ; tenant = acme ") == "acme");
    CHECK_FALSE(parse_domain_proof("tenant=acme; v=relaygate1"));
    CHECK_FALSE(parse_domain_proof("v=relaygate2; tenant=acme"));
    CHECK_FALSE(parse_domain_proof("v=relaygate1"));
    CHECK_FALSE(parse_domain_proof("v=relaygate1; tenant="));
    CHECK_FALSE(parse_domain_proof("v=relaygate1; tenant=a; tenant=b"));
    CHECK_FALSE(parse_domain_proof("v=relaygate1; tenant=a b"));
    CHECK_FALSE(parse_domain_proof("v=relaygate1; v=relaygate1; tenant=a"));
    CHECK_FALSE(parse_domain_proof("v=spf1 -all"));
    CHECK_FALSE(parse_domain_proof(""));
}

TEST_CASE("loading: verify, require, dkim_domains and dkim_domain_suffix") {
    auto p = must_load(kPolicy);
    CHECK(p->uses_dkim());
    CHECK(p->uses_dns_verification());

    auto bad_verify = load_errors(R"({"version": 1, "tenants": {"t": {
        "domains": [{"domain": "t.example", "verify": "yes"}],
        "identities": [{"networks": ["192.0.2.0/24"]}]}}})");
    CHECK(has_rule(bad_verify, "schema", "/tenants/t/domains/0/verify"));

    auto base = [](std::string identity) {
        return R"({"version": 1, "providers": {"m": {"networks": ["40.92.0.0/15"], "tenant_header": "X-T",
                   "dkim_domain_suffix": ".onmicrosoft.com"}},
                   "tenants": {"t": {"domains": ["t.example"], "identities": [)" +
               identity + "]}}}";
    };
    auto ds = load_errors(base(R"({"provider": "m", "tenant_id": "x", "require": ["dkim"],
                                   "dkim_domains": ["t.onmicrosoft.com"]})"));
    CHECK(has_rule(ds, "schema", "/tenants/t/identities/0/require"));
    ds = load_errors(base(R"({"provider": "m", "tenant_id": "x", "require": ["header", "dkim"]})"));
    CHECK(has_rule(ds, "dkim_domains_missing", "/tenants/t/identities/0"));
    ds = load_errors(base(R"({"provider": "m", "tenant_id": "x", "require": ["header", "dkim"],
                             "dkim_domains": ["t.example"]})"));
    CHECK(has_rule(ds, "dkim_domain_suffix", "/tenants/t/identities/0/dkim_domains/0"));
    ds = load_errors(base(R"({"provider": "m", "tenant_id": "x", "require": ["header", "sms"]})"));
    CHECK(has_rule(ds, "schema", "/tenants/t/identities/0/require/1"));
    ds = load_errors(base(R"({"networks": ["192.0.2.0/24"], "require": ["header"]})"));
    CHECK(has_rule(ds, "schema", "/tenants/t/identities/0/require"));

    auto unused = must_load(base(R"({"provider": "m", "tenant_id": "x",
                                     "dkim_domains": ["t.onmicrosoft.com"]})"));
    bool warned = false;
    for (const auto& w : unused->warnings())
        warned = warned || w.rule == "dkim_domains_unused";
    CHECK(warned);
    CHECK_FALSE(unused->uses_dkim());
}

TEST_CASE("a DNS-verified grant asks for its record, then holds only if it names the tenant") {
    auto p = must_load(kPolicy);
    auto conn = from_ip("198.51.100.9");

    auto d = p->at_mail_from(conn, env("acme.example"));
    CHECK(d.verdict == Verdict::tempfail);  // fails closed if the caller ignores dns_needed
    CHECK(d.reason == Reason::dns_tempfail);
    REQUIRE(d.dns_needed == std::vector<std::string>{"acme.example"});

    auto e = env("acme.example");
    e.domain_proofs = {proof("acme.example", DomainProof::Status::found, {"other", "verified"})};
    d = p->at_mail_from(conn, e);
    CHECK(d.accepted());
    CHECK(d.tenant == "verified");
    CHECK(d.dns_needed.empty());

    e.domain_proofs = {proof("acme.example", DomainProof::Status::found, {"other"})};
    d = p->at_mail_from(conn, e);
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::domain_not_verified);
    CHECK(d.reply_detail ==
          "publish TXT _relaygate.acme.example \"v=relaygate1; tenant=verified\"");

    e.domain_proofs = {proof("acme.example", DomainProof::Status::missing)};
    CHECK(p->at_mail_from(conn, e).reason == Reason::domain_not_verified);

    e.domain_proofs = {proof("acme.example", DomainProof::Status::error)};
    d = p->at_mail_from(conn, e);
    CHECK(d.verdict == Verdict::tempfail);
    CHECK(d.reason == Reason::dns_tempfail);
    CHECK(d.dns_needed.empty());

    // A plain grant never needs DNS; a wildcard's record is at its base.
    CHECK(p->at_mail_from(conn, env("plain.example")).accepted());
    d = p->at_mail_from(conn, env("eu.mail.acme.example"));
    CHECK(d.dns_needed == std::vector<std::string>{"mail.acme.example"});
    // Refused for another reason first: no DNS is asked for.
    d = p->at_mail_from(from_ip("192.0.2.1"), env("acme.example"));
    CHECK(d.dns_needed.empty());
    CHECK(d.reason == Reason::tenant_unknown);
}

TEST_CASE("header originators on DNS-verified grants are checked too") {
    auto p = must_load(kPolicy);
    auto conn = from_ip("198.51.100.9");
    auto e = env("plain.example");
    auto h = from_header("acme.example");
    auto d = p->at_header(conn, e, h);
    CHECK(d.dns_needed == std::vector<std::string>{"acme.example"});
    e.domain_proofs = {proof("acme.example", DomainProof::Status::missing)};
    d = p->at_header(conn, e, h);
    CHECK(d.reason == Reason::domain_not_verified);
    CHECK(d.reply_detail.find("_relaygate.acme.example") != std::string::npos);
    e.domain_proofs = {proof("acme.example", DomainProof::Status::found, {"verified"})};
    CHECK(p->at_header(conn, e, h).accepted());
    CHECK(p->at_end_of_data(conn, e, h, {}).accepted());
}

TEST_CASE("a provider identity that requires DKIM is decided at end of data") {
    auto p = must_load(kPolicy);
    auto conn = from_ip("40.93.1.2");
    auto e = env("brand.example");
    auto h = brand_header();

    auto d = p->at_header(conn, e, h);
    CHECK(d.accepted());
    CHECK(d.tenant == "brand");
    CHECK(d.dkim_required);

    // No signature, or a signature of the wrong domain: refused.
    d = p->at_end_of_data(conn, e, h, {});
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::provider_dkim_unverified);
    CHECK(info(d.reason).enhanced == "5.7.20");
    CHECK(p->at_end_of_data(conn, e, h, {signature("attacker.onmicrosoft.com")}).reason ==
          Reason::provider_dkim_unverified);
    // The tenant's own signing domain: accepted.
    d = p->at_end_of_data(
        conn, e, h, {signature("attacker.onmicrosoft.com"), signature("brand.onmicrosoft.com")});
    CHECK(d.accepted());
    CHECK(d.tenant == "brand");
    // A custom-domain signature whose key is a CNAME into the tenant's domain.
    auto custom = signature("brand.example");
    custom.key_cname_target = "selector1-brand-example._domainkey.brand.onmicrosoft.com";
    CHECK(p->at_end_of_data(conn, e, h, {custom}).accepted());
    custom.key_cname_target = "selector1-brand-example._domainkey.brand.onmicrosoft.com.evil";
    CHECK_FALSE(p->at_end_of_data(conn, e, h, {custom}).accepted());
    // Failing, permerror and l= signatures never corroborate.
    for (auto st : {DkimFact::Status::fail, DkimFact::Status::permerror}) {
        CAPTURE(to_string(st));
        CHECK(p->at_end_of_data(conn, e, h, {signature("brand.onmicrosoft.com", st)}).reason ==
              Reason::provider_dkim_unverified);
    }
    auto limited = signature("brand.onmicrosoft.com");
    limited.length_limited = true;
    CHECK(p->at_end_of_data(conn, e, h, {limited}).reason == Reason::provider_dkim_unverified);
    // DNS trouble: try again later, never accept.
    d = p->at_end_of_data(conn, e, h,
                          {signature("brand.onmicrosoft.com", DkimFact::Status::temperror)});
    CHECK(d.verdict == Verdict::tempfail);
    CHECK(d.reason == Reason::dns_tempfail);

    auto traced = p->at_end_of_data(conn, e, h, {signature("brand.onmicrosoft.com")});
    bool mentions = false;
    for (const auto& line : traced.trace)
        mentions = mentions || line.find("corroborates") != std::string::npos;
    CHECK(mentions);
}

TEST_CASE("EchoSpoofing with the brand's tenant header but the attacker's own DKIM signature") {
    auto p = must_load(kPolicy);
    auto conn = from_ip("40.92.7.7");  // any M365 tenant's mail comes from here
    auto e = env("brand.example");
    auto forged = brand_header();  // the attacker copied the brand's tenant id
    // The header alone looks like the brand ...
    CHECK(p->at_header(conn, e, forged).accepted());
    // ... but Exchange Online signed it as the attacker's tenant.
    auto d = p->at_end_of_data(conn, e, forged, {signature("attacker.onmicrosoft.com")});
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reason == Reason::provider_dkim_unverified);
    // The attacker's own header with the brand's domain is refused earlier.
    CHECK(p->at_header(conn, e, brand_header(kAttackerId)).reason ==
          Reason::envelope_domain_unauthorized);
    // A tenant without the requirement is unaffected.
    auto a = from_header("attacker.example");
    a.provider_header_values = {kAttackerId};
    CHECK_FALSE(p->at_header(conn, env("attacker.example"), a).dkim_required);
    CHECK(p->at_end_of_data(conn, env("attacker.example"), a, {}).accepted());
}
