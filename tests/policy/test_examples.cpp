// Expected decisions for every file in policy/examples/: the examples are
// documentation, so they must load (or, for the misconfiguration, refuse)
// and decide exactly as policy/README.md says.
#include <doctest/doctest.h>

#include "policy/engine/password_hash.hpp"
#include "policy_test_util.hpp"

using namespace relaygate;
using namespace relaygate::policy;
using namespace relaygate::policy::test;

namespace {

std::shared_ptr<const Policy> example(const char* name) {
    auto r = Policy::load_file(std::string(RELAYGATE_SOURCE_DIR) + "/policy/examples/" + name);
    if (!r) {
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        FAIL("example did not load: " << name);
    }
    return *r;
}

}  // namespace

TEST_CASE("microsoft365-customer.json") {
    auto p = example("microsoft365-customer.json");
    CHECK(p->warnings().empty());
    auto m365 = from_ip("40.107.3.4");
    CHECK(p->at_mail_from(m365, env("contoso.example")).pending_header);
    auto hdr = from_header("contoso.example");
    hdr.provider_header_values = {"0b0e3c4e-5d6f-4a1b-8c9d-112233445566"};
    CHECK(p->at_header(m365, env("news.mail.contoso.example"), hdr).tenant == "contoso");
    hdr.provider_header_values = {"7d1f2a3b-0000-4c5d-9e8f-a1b2c3d4e5f6"};  // northwind
    CHECK(p->at_header(m365, env("contoso.example"), hdr).reason ==
          Reason::envelope_domain_unauthorized);
    CHECK(p->at_mail_from(from_ip("192.0.2.1"), env("contoso.example")).reason ==
          Reason::tenant_unknown);
    // contoso: the header is corroborated by Exchange Online's DKIM signature.
    hdr.provider_header_values = {"0b0e3c4e-5d6f-4a1b-8c9d-112233445566"};
    auto header = p->at_header(m365, env("contoso.example"), hdr);
    CHECK(header.dkim_required);
    DkimFact sig{"contoso.onmicrosoft.com", "selector1", DkimFact::Status::pass, "", false};
    CHECK(p->at_end_of_data(m365, env("contoso.example"), hdr, {sig}).accepted());
    sig.domain = "fabrikam.onmicrosoft.com";
    CHECK(p->at_end_of_data(m365, env("contoso.example"), hdr, {sig}).reason ==
          Reason::provider_dkim_unverified);
    // northwind's domain needs its DNS record.
    auto nw = from_header("northwind.example");
    nw.provider_header_values = {"7d1f2a3b-0000-4c5d-9e8f-a1b2c3d4e5f6"};
    auto e = env("northwind.example");
    CHECK(p->at_header(m365, e, nw).dns_needed == std::vector<std::string>{"northwind.example"});
    e.domain_proofs = {{"northwind.example", DomainProof::Status::found, {"northwind"}}};
    CHECK(p->at_header(m365, e, nw).accepted());
}

TEST_CASE("on-prem-network.json") {
    auto p = example("on-prem-network.json");
    auto d = p->at_mail_from(from_ip("198.51.100.10"), env("xn--bcher-kva.example"));
    CHECK(d.tenant == "fabrikam");
    CHECK(d.accepted());
    CHECK(p->at_mail_from(from_ip("2001:db8:10::25"), env("a.lists.fabrikam.example")).accepted());
    // The lab /25 is more specific and in report mode.
    d = p->at_mail_from(from_ip("198.51.100.200"), env("fabrikam.example"));
    CHECK(d.tenant == "fabrikam-lab");
    CHECK(d.report_only);
    CHECK(d.reason == Reason::envelope_domain_unauthorized);
}

TEST_CASE("sasl-application.json") {
    auto p = example("sasl-application.json");
    const std::string* hash = p->sasl_hash("billing-app");
    REQUIRE(hash);
    CHECK(verify_password(*hash, "example-app-password"));
    CHECK_FALSE(verify_password(*hash, "wrong"));
    auto conn = from_ip("192.0.2.50");
    conn.sasl_user = "billing-app";
    CHECK(p->at_mail_from(conn, env("billing.example")).accepted());
    CHECK(p->at_mail_from(conn, env("")).reason == Reason::null_sender_not_allowed);
    CHECK(p->at_mail_from(from_ip("192.0.2.50"), env("billing.example")).reason ==
          Reason::tenant_unknown);
}

TEST_CASE("certificate-partner.json") {
    auto p = example("certificate-partner.json");
    auto conn = from_ip("203.0.113.9");  // hosting's network
    conn.client_cert_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    auto d = p->at_mail_from(conn, env("newsletter.partner.example"));
    CHECK(d.tenant == "partner");
    CHECK(d.identity == IdentityKind::client_cert);
    CHECK(p->at_mail_from(conn, env("hosting.example")).reason ==
          Reason::envelope_domain_unauthorized);
    ConnectionFacts spki;
    spki.client_spki_sha256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbbf9f33b5a836a";
    CHECK(p->at_mail_from(spki, env("newsletter.partner.example")).tenant == "partner");
    CHECK(p->at_mail_from(from_ip("203.0.113.9"), env("hosting.example")).tenant == "hosting");
}

TEST_CASE("echospoofing-misconfig.json is refused, naming the risk") {
    auto r = Policy::load_file(std::string(RELAYGATE_SOURCE_DIR) +
                               "/policy/examples/echospoofing-misconfig.json");
    REQUIRE_FALSE(r);
    CHECK(r.error().size() == 4);
    for (const auto& e : r.error()) {
        CHECK(e.rule == "shared_network_overlap");
        CHECK(e.message.find("EchoSpoofing") != std::string::npos);
    }
}

TEST_CASE("quickstart.json") {
    auto p = example("quickstart.json");
    auto local = from_ip("127.0.0.1");
    CHECK(p->at_mail_from(local, env("demo.example")).tenant == "demo");
    CHECK(p->at_mail_from(from_ip("::1"), env("demo.example")).accepted());
    CHECK(p->at_mail_from(local, env("other.example")).reason ==
          Reason::envelope_domain_unauthorized);
    auto hdr = from_header("other.example");
    CHECK(p->at_header(local, env("demo.example"), hdr).reason == Reason::from_domain_unauthorized);
    CHECK(p->at_mail_from(from_ip("192.0.2.1"), env("demo.example")).reason ==
          Reason::tenant_unknown);
}
