// Tests for volume limits in the policy: the period and byte-count forms,
// every load error of a "limits" block with its JSON path, tenant overrides
// and inheritance, identity and domain scopes, the limits a decision carries
// at each stage, and the lint warnings.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "policy/engine/limits.hpp"
#include "policy_test_util.hpp"

using namespace relaygate;
using namespace relaygate::policy;
using namespace relaygate::policy::test;
using nlohmann::json;

namespace {

constexpr const char* kHash =
    "$pbkdf2-sha256$i=100000$c2FsdHNhbHQ$ZiMD/VuDIBLM8rT9ZlFkcm8vO44PH2jtvpsH6s4pwvU";
const std::string kCert(64, 'c');
constexpr const char* kM365Id = "0b0e3c4e-5d6f-4a1b-8c9d-112233445566";

// Tenant "acme": a network, a SASL user, a certificate and an M365 tenant id;
// tenant "beta": a network only, no limits of its own.
json base() {
    return json::parse(R"({"version": 1,
      "providers": {"microsoft365": {"networks": ["40.92.0.0/15"],
                                     "tenant_header": "X-MS-Exchange-CrossTenant-Id"}},
      "tenants": {
        "acme": {"domains": ["acme.example", "news.acme.example", "*.mail.acme.example"],
                 "identities": [{"networks": ["198.51.100.0/24", "2001:db8:10::/48"]},
                                {"sasl_user": "acme-app", "password_hash": "HASH"},
                                {"client_cert_sha256": "CERT"},
                                {"provider": "microsoft365", "tenant_id": "M365"}]},
        "beta": {"domains": ["beta.example"], "identities": [{"networks": ["192.0.2.0/24"]}]}}})");
}

json policy_doc() {
    json doc = base();
    auto& ids = doc["tenants"]["acme"]["identities"];
    ids[1]["password_hash"] = kHash;
    ids[2]["client_cert_sha256"] = kCert;
    ids[3]["tenant_id"] = kM365Id;
    return doc;
}

std::shared_ptr<const Policy> load_doc(const json& doc) {
    auto r = Policy::load(doc);
    if (!r) {
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        FAIL("policy did not load");
    }
    return *r;
}

std::vector<Diagnostic> errors_of(const json& doc) {
    auto r = Policy::load(doc);
    REQUIRE_FALSE(r);
    return r ? std::vector<Diagnostic>{} : r.error();
}

json rate(json count, const char* per) {
    return {{"count", std::move(count)}, {"per", per}};
}

const json kDefaults = json::parse(R"({
    "messages": [{"count": 1000, "per": "1h"}, {"count": 10000, "per": "1d"}],
    "recipients": [{"count": 5000, "per": "1h"}],
    "bytes": [{"count": "2GiB", "per": "1d"}]})");

// "kind count/per scope subject" for compact comparisons.
std::vector<std::string> summary(const Decision& d) {
    std::vector<std::string> out;
    for (const auto& l : d.limits)
        out.push_back(fmt::format("{} {}/{} b{} {} {}", to_string(l.kind), l.rate.count,
                                  format_period(l.rate.per_seconds), l.rate.burst,
                                  to_string(l.scope), l.subject));
    return out;
}

ConnectionFacts sasl(std::string ip, std::string user) {
    ConnectionFacts c = from_ip(ip);
    c.sasl_user = std::move(user);
    return c;
}

}  // namespace

TEST_CASE("parse_period: a positive integer and one unit") {
    CHECK(parse_period("1s") == 1U);
    CHECK(parse_period("45s") == 45U);
    CHECK(parse_period("30m") == 1800U);
    CHECK(parse_period("1h") == 3600U);
    CHECK(parse_period("1d") == 86400U);
    CHECK(parse_period("1w") == 604800U);
    CHECK(parse_period("007m") == 420U);
    CHECK(parse_period("4294967295s") == 4294967295U);
    for (const char* bad : {"", "0s", "0h", "h", "1", "1x", "1hh", "-1h", "+1h", " 1h", "1h ", "1H",
                            "1.5h", "1 h", "4294967296s", "7102w", "99999999999999999999s"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_period(bad));
    }
}

TEST_CASE("format_period: the shortest exact form, round-tripping") {
    CHECK(format_period(3600) == "1h");
    CHECK(format_period(90) == "90s");
    CHECK(format_period(5400) == "90m");
    CHECK(format_period(86400) == "1d");
    CHECK(format_period(172800) == "2d");
    CHECK(format_period(604800) == "1w");
    CHECK(format_period(2592000) == "30d");
    CHECK(format_period(0) == "0s");
    for (std::uint32_t s : {1U, 59U, 60U, 61U, 3599U, 7200U, 86399U, 604801U, kMaxPeriodSeconds}) {
        CAPTURE(s);
        CHECK(parse_period(format_period(s)) == s);
    }
}

TEST_CASE("parse_byte_count: integers and binary or decimal units") {
    CHECK(parse_byte_count("512") == 512U);
    CHECK(parse_byte_count("0") == 0U);
    CHECK(parse_byte_count("10KiB") == 10240U);
    CHECK(parse_byte_count("2GiB") == (std::uint64_t(2) << 30));
    CHECK(parse_byte_count("1TiB") == (std::uint64_t(1) << 40));
    CHECK(parse_byte_count("1MB") == 1000000U);
    CHECK(parse_byte_count("500MB") == 500000000U);
    CHECK(parse_byte_count("3KB") == 3000U);
    CHECK(parse_byte_count("18446744073709551615") == UINT64_MAX);
    CHECK(parse_byte_count("16777215TiB") == (std::uint64_t(16777215) << 40));
    for (const char* bad : {"", "GiB", "1.5GiB", "1 GiB", "1gib", "1Gib", "1G", "1B", "-1", "+1",
                            "1KiBKiB", "18446744073709551616", "16777216TiB", "0x10"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_byte_count(bad));
    }
    CHECK(format_count(LimitKind::bytes, std::uint64_t(2) << 30) == "2GiB");
    CHECK(format_count(LimitKind::bytes, 500000000) == "500MB");
    CHECK(format_count(LimitKind::bytes, 1500) == "1500");
    CHECK(format_count(LimitKind::messages, 1024) == "1024");
}

TEST_CASE("AppliedLimit: store key and description") {
    AppliedLimit l{LimitKind::messages, LimitScope::tenant, "acme", "acme", {1000, 3600, 1000}};
    CHECK(l.key() == "rl:{acme}:tenant:acme:messages:3600");
    CHECK(l.describe() == "messages 1000 per 1h (tenant acme)");
    AppliedLimit i{
        LimitKind::recipients, LimitScope::identity, "acme", "sasl:acme-app", {200, 3600, 200}};
    CHECK(i.key() == "rl:{acme}:identity:sasl:acme-app:recipients:3600");
    CHECK(i.describe() == "recipients 200 per 1h (identity sasl:acme-app)");
    AppliedLimit b{LimitKind::bytes,
                   LimitScope::domain,
                   "acme",
                   "news.acme.example",
                   {std::uint64_t(2) << 30, 86400, std::uint64_t(1) << 30}};
    CHECK(b.key() == "rl:{acme}:domain:news.acme.example:bytes:86400");
    CHECK(b.describe() == "bytes 2GiB per 1d, burst 1GiB (domain news.acme.example)");
    CHECK(Rate{50, 60, 20}.interval() == doctest::Approx(1.2));
    CHECK(Rate{50, 60, 20}.tolerance() == doctest::Approx(24.0));
}

TEST_CASE("limits: every error refuses the file, with its path") {
    struct Case {
        const char* where;  // "top", "tenant", "identity", "domain"
        json block;
        const char* rule;
        const char* path;  // relative to the block
    };
    const Case cases[] = {
        {"top", {{"message", json::array()}}, "schema", "/message"},
        {"top", json::array(), "schema", ""},
        {"top",
         {{"messages", {{{"count", 1}, {"per", "1h"}, {"brust", 2}}}}},
         "schema",
         "/messages/0/brust"},
        {"top", {{"messages", {rate(0, "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"top", {{"messages", {rate(-5, "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"top", {{"messages", {rate(1.5, "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"top", {{"messages", {rate(true, "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"top",
         {{"messages", {rate(std::uint64_t(1) << 51, "1h")}}},
         "invalid_rate",
         "/messages/0/count"},
        {"top", {{"messages", {rate("100", "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"top", {{"recipients", {rate("1KiB", "1h")}}}, "invalid_rate", "/recipients/0/count"},
        {"top", {{"bytes", {rate("2 GiB", "1d")}}}, "invalid_rate", "/bytes/0/count"},
        {"top", {{"bytes", {rate("0", "1d")}}}, "invalid_rate", "/bytes/0/count"},
        {"top", {{"messages", {rate(10, "1y")}}}, "invalid_rate", "/messages/0/per"},
        {"top", {{"messages", {rate(10, "0s")}}}, "invalid_rate", "/messages/0/per"},
        {"top", {{"messages", {rate(10, "31d")}}}, "invalid_rate", "/messages/0/per"},
        {"top", {{"messages", {rate(10, "5w")}}}, "invalid_rate", "/messages/0/per"},
        {"top", {{"messages", {{{"count", 10}, {"per", 3600}}}}}, "schema", "/messages/0/per"},
        {"top", {{"messages", {{{"count", 10}}}}}, "schema", "/messages/0"},
        {"top", {{"messages", {{{"per", "1h"}}}}}, "schema", "/messages/0"},
        {"top",
         {{"messages", {{{"count", 10}, {"per", "1h"}, {"burst", 0}}}}},
         "invalid_rate",
         "/messages/0/burst"},
        {"top", {{"messages", {rate(10, "1h")}}}, nullptr, nullptr},  // valid: control
        {"top",
         {{"messages",
           json::array({rate(1, "1s"), rate(2, "1s"), rate(3, "1s"), rate(4, "1s"), rate(5, "1s"),
                        rate(6, "1s"), rate(7, "1s"), rate(8, "1s"), rate(9, "1s")})}},
         "schema",
         "/messages"},
        {"top", {{"messages", rate(10, "1h")}}, "schema", "/messages"},
        {"top", {{"mode", "audit"}}, "schema", "/mode"},
        {"top", {{"on_spike", "block"}}, "schema", "/on_spike"},
        {"tenant", {{"mode", "off"}}, "schema", "/mode"},
        {"tenant", {{"bytes", {rate(-1, "1d")}}}, "invalid_rate", "/bytes/0/count"},
        {"identity", {{"on_spike", "hold"}}, "schema", "/on_spike"},
        {"identity", {{"mode", "report"}}, "schema", "/mode"},
        {"identity", {{"messages", {rate(0, "1h")}}}, "invalid_rate", "/messages/0/count"},
        {"domain", {{"on_spike", "log"}}, "schema", "/on_spike"},
        {"domain", {{"recipients", {rate(10, "2x")}}}, "invalid_rate", "/recipients/0/per"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.where);
        CAPTURE(c.block.dump());
        json doc = policy_doc();
        std::string prefix;
        if (std::string_view(c.where) == "top") {
            doc["limits"] = c.block;
            prefix = "/limits";
        } else if (std::string_view(c.where) == "tenant") {
            doc["tenants"]["acme"]["limits"] = c.block;
            prefix = "/tenants/acme/limits";
        } else if (std::string_view(c.where) == "identity") {
            doc["tenants"]["acme"]["identities"][1]["limits"] = c.block;
            prefix = "/tenants/acme/identities/1/limits";
        } else {
            doc["tenants"]["acme"]["domains"][1] = {{"domain", "news.acme.example"},
                                                    {"limits", c.block}};
            prefix = "/tenants/acme/domains/1/limits";
        }
        auto r = Policy::load(doc);
        if (c.rule == nullptr) {
            CHECK(r);
            continue;
        }
        REQUIRE_FALSE(r);
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        CHECK(has_rule(r.error(), c.rule, prefix + c.path));
    }
}

TEST_CASE("limits: the line and column of an error in the text") {
    auto errors = load_errors(R"({"version": 1,
  "limits": {"messages": [{"count": 0, "per": "1h"}]},
  "tenants": {"a": {"domains": ["a.example"], "identities": [{"networks": ["192.0.2.0/24"]}]}}})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == "/limits/messages/0/count");
    CHECK(errors[0].rule == "invalid_rate");
    CHECK(errors[0].line == 2);
    CHECK(format_diagnostic(errors[0]).find("[invalid_rate]") != std::string::npos);
}

TEST_CASE("limits: defaults, tenant overrides per kind, inheritance") {
    json doc = policy_doc();
    doc["limits"] = kDefaults;
    doc["limits"]["on_spike"] = "log";
    doc["tenants"]["acme"]["limits"] = json::parse(R"({
        "messages": [{"count": 50, "per": "1m", "burst": 20}],
        "bytes": [], "on_spike": "hold"})");
    auto p = load_doc(doc);
    CHECK(p->uses_limits());
    CHECK(p->warnings().empty());

    // beta inherits the defaults exactly.
    Decision b = p->at_mail_from(from_ip("192.0.2.9"), env("beta.example"), Trace::off);
    REQUIRE(b.accepted());
    CHECK(summary(b) == std::vector<std::string>{"messages 1000/1h b1000 tenant beta",
                                                 "messages 10000/1d b10000 tenant beta",
                                                 "recipients 5000/1h b5000 tenant beta",
                                                 "bytes 2147483648/1d b2147483648 tenant beta"});
    CHECK(b.limits_mode == LimitMode::enforce);
    CHECK(b.on_spike == SpikeAction::log);
    CHECK(b.limits[0].key() == "rl:{beta}:tenant:beta:messages:3600");

    // acme: messages replaced, recipients inherited, bytes removed.
    Decision a = p->at_mail_from(from_ip("198.51.100.7"), env("acme.example"), Trace::off);
    REQUIRE(a.accepted());
    CHECK(summary(a) == std::vector<std::string>{"messages 50/1m b20 tenant acme",
                                                 "recipients 5000/1h b5000 tenant acme"});
    CHECK(a.on_spike == SpikeAction::hold);
    CHECK(a.limits_mode == LimitMode::enforce);
}

TEST_CASE("limits: a policy without limits attaches none") {
    auto p = load_doc(policy_doc());
    CHECK_FALSE(p->uses_limits());
    Decision d = p->at_mail_from(from_ip("198.51.100.7"), env("acme.example"));
    REQUIRE(d.accepted());
    CHECK(d.limits.empty());
    CHECK(d.limits_mode == LimitMode::enforce);
    CHECK(d.on_spike == SpikeAction::log);
    // A tenant's limits alone make the policy use limits.
    json doc = policy_doc();
    doc["tenants"]["beta"]["limits"] = {{"messages", {rate(5, "1m")}}};
    CHECK(load_doc(doc)->uses_limits());
    json empty = policy_doc();
    empty["limits"] = {{"messages", json::array()}, {"on_spike", "hold"}};
    auto q = load_doc(empty);
    CHECK_FALSE(q->uses_limits());
    Decision e = q->at_mail_from(from_ip("198.51.100.7"), env("acme.example"));
    CHECK(e.limits.empty());
    CHECK(e.on_spike == SpikeAction::hold);  // the action still applies to spike signals
}

TEST_CASE("limits: identity and domain scopes add to the tenant's") {
    json doc = policy_doc();
    doc["limits"] = {{"messages", {rate(1000, "1h")}}};
    auto& acme = doc["tenants"]["acme"];
    acme["identities"][0]["limits"] = {{"messages", {rate(300, "1h")}}};
    acme["identities"][1]["limits"] = {{"recipients", {rate(200, "1h")}}};
    acme["identities"][2]["limits"] = {{"messages", {rate(100, "1h")}}};
    acme["identities"][3]["limits"] = {{"bytes", {rate("1GiB", "1d")}}};
    acme["domains"][1] = {{"domain", "News.Acme.Example"},
                          {"limits", {{"messages", {rate(100, "1h")}}}}};
    acme["domains"][2] = {{"domain", "*.mail.acme.example"},
                          {"limits", {{"recipients", {rate(10, "1m")}}}}};
    auto p = load_doc(doc);

    SUBCASE("network: subject is the entry's first network, for each of its networks") {
        for (const char* ip : {"198.51.100.7", "2001:db8:10::1"}) {
            CAPTURE(ip);
            Decision d = p->at_mail_from(from_ip(ip), env("acme.example"), Trace::off);
            REQUIRE(d.accepted());
            CHECK(summary(d) == std::vector<std::string>{
                                    "messages 1000/1h b1000 tenant acme",
                                    "messages 300/1h b300 identity network:198.51.100.0/24"});
            CHECK(d.limits[1].key() == "rl:{acme}:identity:network:198.51.100.0/24:messages:3600");
        }
    }
    SUBCASE("sasl, with the domain grant's limits") {
        Decision d =
            p->at_mail_from(sasl("203.0.113.5", "acme-app"), env("news.acme.example"), Trace::on);
        REQUIRE(d.accepted());
        CHECK(summary(d) ==
              std::vector<std::string>{"messages 1000/1h b1000 tenant acme",
                                       "recipients 200/1h b200 identity sasl:acme-app",
                                       "messages 100/1h b100 domain news.acme.example"});
        CHECK(d.limits[2].describe() == "messages 100 per 1h (domain news.acme.example)");
        CHECK(std::find(d.trace.begin(), d.trace.end(),
                        "limit: recipients 200 per 1h (identity sasl:acme-app)") != d.trace.end());
    }
    SUBCASE("wildcard grant and certificate (any case of the fingerprint)") {
        ConnectionFacts c = from_ip("203.0.113.5");
        c.client_cert_sha256 = std::string(64, 'C');
        Decision d = p->at_mail_from(c, env("a.b.mail.acme.example"), Trace::off);
        REQUIRE(d.accepted());
        CHECK(summary(d) ==
              std::vector<std::string>{"messages 1000/1h b1000 tenant acme",
                                       "messages 100/1h b100 identity cert:" + kCert,
                                       "recipients 10/1m b10 domain *.mail.acme.example"});
    }
    SUBCASE("provider: none while pending, at the header and end of data once attested") {
        ConnectionFacts c = from_ip("40.92.1.1");
        Decision m = p->at_mail_from(c, env("acme.example"));
        CHECK(m.accepted());
        CHECK(m.pending_header);
        CHECK(m.limits.empty());
        HeaderFactsForPolicy h = from_header("acme.example");
        h.provider_header_values = {std::string(" ") + kM365Id + " "};
        for (bool eod : {false, true}) {
            Decision d = eod ? p->at_end_of_data(c, env("acme.example"), h, {}, Trace::off)
                             : p->at_header(c, env("acme.example"), h, Trace::off);
            CAPTURE(eod);
            REQUIRE(d.accepted());
            CHECK(summary(d) ==
                  std::vector<std::string>{
                      "messages 1000/1h b1000 tenant acme",
                      "bytes 1073741824/1d b1073741824 identity provider:microsoft365:" +
                          std::string(kM365Id)});
        }
    }
    SUBCASE("the header stage: same limits as MAIL FROM for the same facts") {
        ConnectionFacts c = sasl("203.0.113.5", "acme-app");
        Decision m = p->at_mail_from(c, env("news.acme.example"), Trace::off);
        Decision h =
            p->at_header(c, env("news.acme.example"), from_header("acme.example"), Trace::off);
        Decision e = p->at_end_of_data(c, env("news.acme.example"), from_header("acme.example"), {},
                                       Trace::off);
        REQUIRE(h.accepted());
        REQUIRE(e.accepted());
        CHECK(summary(h) == summary(m));
        CHECK(summary(e) == summary(m));
    }
    SUBCASE("refused decisions carry no limits") {
        Decision d = p->at_mail_from(from_ip("198.51.100.7"), env("beta.example"));
        CHECK_FALSE(d.accepted());
        CHECK(d.limits.empty());
        Decision u = p->at_mail_from(from_ip("203.0.113.9"), env("acme.example"));
        CHECK_FALSE(u.accepted());
        CHECK(u.limits.empty());
        Decision f =
            p->at_header(from_ip("198.51.100.7"), env("acme.example"), from_header("beta.example"));
        CHECK_FALSE(f.accepted());
        CHECK(f.limits.empty());
    }
}

TEST_CASE("limits: a report-mode tenant's passing refusal carries its limits") {
    json doc = policy_doc();
    doc["limits"] = {{"messages", {rate(1000, "1h")}}};
    doc["tenants"]["acme"]["mode"] = "report";
    doc["tenants"]["acme"]["limits"] = {{"mode", "report"}};
    auto p = load_doc(doc);
    CHECK(has_rule(p->warnings(), "report_mode", "/tenants/acme/limits/mode"));
    Decision d = p->at_mail_from(from_ip("198.51.100.7"), env("beta.example"));
    REQUIRE(d.accepted());
    CHECK(d.report_only);
    CHECK(d.tenant == "acme");
    CHECK(summary(d) == std::vector<std::string>{"messages 1000/1h b1000 tenant acme"});
    CHECK(d.limits_mode == LimitMode::report);
    // beta keeps the enforced defaults.
    Decision b = p->at_mail_from(from_ip("192.0.2.9"), env("beta.example"));
    CHECK(b.limits_mode == LimitMode::enforce);
}

TEST_CASE("limits: two entries of one identity with limits are refused") {
    json doc = policy_doc();
    auto& ids = doc["tenants"]["acme"]["identities"];
    ids.push_back({{"networks", {"198.51.100.0/24"}}, {"limits", {{"messages", {rate(1, "1h")}}}}});
    ids[0]["limits"] = {{"messages", {rate(2, "1h")}}};
    CHECK(has_rule(errors_of(doc), "duplicate_identity", "/tenants/acme/identities/4"));
}

TEST_CASE("limits: lint warnings") {
    struct Case {
        json limits;
        const char* rule;
        const char* path;
    };
    const Case cases[] = {
        // Same period, fewer: the 1000 never binds.
        {{{"messages", {rate(1000, "1h"), rate(500, "1h")}}},
         "rate_shadowed",
         "/limits/messages/0"},
        // Fewer over a longer period.
        {{{"messages", {rate(1000, "1h"), rate(900, "1d")}}},
         "rate_shadowed",
         "/limits/messages/0"},
        {{{"recipients", {rate(10, "1m"), rate(10, "1m")}}},
         "duplicate_rate",
         "/limits/recipients/1"},
        // 50/1m may take 20000 at once, but 10000/1h (a higher rate, a
        // smaller burst) admits only 10000 at once.
        {{{"messages", {{{"count", 50}, {"per", "1m"}, {"burst", 20000}}, rate(10000, "1h")}}},
         "burst_unusable",
         "/limits/messages/0"},
        {{{"bytes", {rate("1MiB", "1h")}}}, "bytes_burst_small", "/limits/bytes/0"},
        {{{"messages", {rate(1000, "1h")}}, {"recipients", {rate(500, "1h")}}},
         "rate_shadowed",
         "/limits/messages/0"},
        {{{"messages", {rate(1, "1h")}}, {"mode", "report"}}, "report_mode", "/limits/mode"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.limits.dump());
        json doc = policy_doc();
        doc["limits"] = c.limits;
        auto p = load_doc(doc);
        for (const auto& w : p->warnings())
            MESSAGE(format_diagnostic(w));
        CHECK(has_rule(p->warnings(), c.rule, c.path));
        CHECK(p->warnings().size() == 1);
    }

    // None for the documented example rates, nor for a burst within a
    // longer period's count.
    json doc = policy_doc();
    doc["limits"] = kDefaults;
    doc["limits"]["messages"].push_back({{"count", 50}, {"per", "1m"}, {"burst", 20}});
    CHECK(load_doc(doc)->warnings().empty());

    // An identity's or domain's rate the tenant's own limits already enforce.
    json scoped = policy_doc();
    scoped["limits"] = {{"messages", {rate(100, "1h")}}};
    scoped["tenants"]["acme"]["identities"][1]["limits"] = {{"messages", {rate(500, "1h")}}};
    scoped["tenants"]["acme"]["domains"][1] = {{"domain", "news.acme.example"},
                                               {"limits", {{"messages", {rate(50, "1h")}}}}};
    auto p = load_doc(scoped);
    CHECK(has_rule(p->warnings(), "rate_shadowed", "/tenants/acme/identities/1/limits/messages/0"));
    CHECK(p->warnings().size() == 1);  // the stricter domain rate binds
}

TEST_CASE("limits: the policy hash covers the limits") {
    json doc = policy_doc();
    doc["limits"] = kDefaults;
    auto h1 = load_doc(doc)->hash();
    doc["limits"]["messages"][0]["count"] = 999;
    auto h2 = load_doc(doc)->hash();
    doc["tenants"]["acme"]["identities"][1]["limits"] = {{"messages", {rate(5, "1m")}}};
    auto h3 = load_doc(doc)->hash();
    CHECK(h1 != h2);
    CHECK(h2 != h3);
    CHECK(h1 != load_doc(policy_doc())->hash());
}
