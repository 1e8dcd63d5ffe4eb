// The session settings `relaygate explain` runs with: decisions with their
// trace through Hooks::on_policy_decision, and DKIM verified for every
// message. The gateway's defaults leave both off.
#include "tests/session/session_driver.hpp"

namespace {

const std::string kSignature =
    "DKIM-Signature: v=1; a=rsa-sha256; d=acme.example; s=sel; h=from;\r\n"
    " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n";

std::vector<std::string> points(const Run& r) {
    std::vector<std::string> out;
    for (const auto& [point, d] : r.hooks.decisions)
        out.push_back(point);
    return out;
}

}  // namespace

TEST_CASE("every policy evaluation reaches on_policy_decision; its trace only when asked") {
    for (bool trace : {false, true}) {
        CAPTURE(trace);
        session::Settings settings;
        settings.trace_decisions = trace;
        Run r;
        drive(r, {transaction("alice@acme.example"), stuffed(kMessage) + ".\r\nQUIT\r\n"},
              "192.0.2.10", settings);
        CHECK(has(r.client_out, "250 2.0.0 Ok: queued"));
        CHECK(count(r.upstream.log, "commit") == 1);
        CHECK(points(r) == std::vector<std::string>{"mail_from", "header", "end_of_data"});
        for (const auto& [point, d] : r.hooks.decisions) {
            CHECK(d.accepted());
            CHECK(d.tenant == "acme");
            CHECK(d.trace.empty() == !trace);
        }
    }
}

TEST_CASE("a MAIL FROM the policy refuses is the only decision") {
    Run r;
    drive(r, {"EHLO c\r\nMAIL FROM:<a@rival.example>\r\nQUIT\r\n"});
    REQUIRE(points(r) == std::vector<std::string>{"mail_from"});
    CHECK(r.hooks.decisions[0].second.reason == Reason::envelope_domain_unauthorized);
}

TEST_CASE("verify_dkim_always verifies signatures an identity does not require") {
    for (bool always : {false, true}) {
        CAPTURE(always);
        session::Settings settings;
        settings.verify_dkim_always = always;
        Run r;
        drive(r,
              {transaction("alice@acme.example"), stuffed(kSignature + kMessage) + ".\r\nQUIT\r\n"},
              "192.0.2.10", settings);
        // The network identity needs no DKIM: relayed either way.
        CHECK(has(r.client_out, "250 2.0.0 Ok: queued"));
        if (always) {
            // The key is fetched over DNS (NXDOMAIN here) and the result reported.
            CHECK(r.dns_asked == std::vector<std::string>{"sel._domainkey.acme.example"});
            REQUIRE(r.hooks.dkim.size() == 1);
            CHECK(r.hooks.dkim[0].domain == "acme.example");
            CHECK(r.hooks.dkim[0].status == dkim::Status::permerror);
            CHECK(r.hooks.records.back().dkim.starts_with("permerror d=acme.example s=sel"));
        } else {
            CHECK(r.dns_asked.empty());
            CHECK(r.hooks.dkim.empty());
        }
    }
}
