// Decision latency and load time for a synthetic policy of 100k tenants and
// 1M domains (issue 4 targets: < 1 us per decision, < 3 s load on 2 cores).
// Benchmark only: builds its own policy text, never reads the real examples.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "policy/engine/password_hash.hpp"
#include "policy/engine/policy.hpp"

using namespace relaygate::policy;

namespace {

constexpr int kTenants = 100'000;
constexpr int kDomainsPerTenant = 10;  // 9 exact + 1 wildcard

std::string net_of(int i) {
    return fmt::format("{}.{}.{}", 10 + i / 65536, (i / 256) % 256, i % 256);
}
std::string cert_of(int i) {
    return fmt::format("{:064x}", i + 1);
}

// Tenant i: one /24, domains d0..d8.t<i>.example + *.w.t<i>.example; every
// 10th also has a certificate, every 10th (offset 3) a provider identity,
// every 10th (offset 7) a SASL user.
const std::string& policy_text() {
    static const std::string text = [] {
        static const std::string hash = *hash_password("bench", kDefaultPbkdf2Iterations);
        std::string s;
        s.reserve(64 << 20);
        s +=
            R"({"version": 1, "providers": {"microsoft365": {"shared": true, "networks": ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48", "2a01:111:f403::/48"], "tenant_header": "X-MS-Exchange-CrossTenant-Id"}}, "tenants": {)";
        for (int i = 0; i < kTenants; ++i) {
            if (i) s += ',';
            s += fmt::format(R"("t{}": {{"domains": [)", i);
            for (int d = 0; d < kDomainsPerTenant - 1; ++d)
                s += fmt::format(R"("d{}.t{}.example",)", d, i);
            s += fmt::format(R"("*.w.t{}.example"], "identities": [{{"networks": ["{}.0/24"]}})", i,
                             net_of(i));
            if (i % 10 == 0) s += fmt::format(R"(, {{"client_cert_sha256": "{}"}})", cert_of(i));
            if (i % 10 == 3)
                s += fmt::format(R"(, {{"provider": "microsoft365", "tenant_id": "tid-{}"}})", i);
            if (i % 10 == 7)
                s += fmt::format(R"(, {{"sasl_user": "app-{}", "password_hash": "{}"}})", i, hash);
            s += "]}";
        }
        s += "}}";
        return s;
    }();
    return text;
}

const Policy& policy() {
    static const std::shared_ptr<const Policy> p = [] {
        auto r = Policy::load_text(policy_text());
        if (!r) {
            for (const auto& e : r.error())
                fmt::print(stderr, "{}\n", format_diagnostic(e));
            std::abort();
        }
        return *r;
    }();
    return *p;
}

struct Case {
    ConnectionFacts conn;
    EnvelopeFacts env;
    HeaderFactsForPolicy hdr;
};

// 4096 pre-built fact sets over random tenants, so lookups miss the caches
// the way real traffic from many tenants would.
std::vector<Case> cases(int kind) {
    std::mt19937 rng(42 + kind);
    std::uniform_int_distribution<int> pick(0, kTenants / 10 - 1);
    std::vector<Case> out(4096);
    for (auto& c : out) {
        int i = pick(rng) * 10;
        switch (kind) {
            case 0:  // network tenant, exact domain
                i += 1;
                c.conn.client_ip = IpAddress::parse(net_of(i) + ".25");
                c.env.domain = fmt::format("d5.t{}.example", i);
                break;
            case 1:  // network tenant, wildcard domain
                i += 1;
                c.conn.client_ip = IpAddress::parse(net_of(i) + ".25");
                c.env.domain = fmt::format("a.b.w.t{}.example", i);
                break;
            case 2:  // certificate outranks the network
                c.conn.client_ip = IpAddress::parse("192.0.2.1");
                c.conn.client_cert_sha256 = cert_of(i);
                c.env.domain = fmt::format("d1.t{}.example", i);
                break;
            case 3:  // provider tenant (MAIL FROM pending; header attests)
                i += 3;
                c.conn.client_ip = IpAddress::parse("40.92.33.44");
                c.env.domain = fmt::format("d2.t{}.example", i);
                c.hdr.provider_header_values = {fmt::format("tid-{}", i)};
                break;
            case 4:  // unknown client
                c.conn.client_ip = IpAddress::parse("192.0.2.1");
                c.env.domain = fmt::format("d2.t{}.example", i);
                break;
        }
        c.hdr.originators.push_back({relaygate::message::OriginatorField::from, c.env.domain});
    }
    return out;
}

void BM_Load(benchmark::State& state) {
    const std::string& text = policy_text();
    for (auto _ : state) {
        auto r = Policy::load_text(text);
        if (!r) state.SkipWithError("load failed");
        benchmark::DoNotOptimize(r);
        // Freeing the previous policy happens off the reload path (the last
        // session holding it frees it), so it is not part of load time.
        state.PauseTiming();
        { auto discard = std::move(r); }
        state.ResumeTiming();
    }
    state.counters["MB"] = static_cast<double>(text.size()) / 1e6;
}

// range(0): the case kind; range(1): 1 = with trace, 0 = without.
void BM_MailFrom(benchmark::State& state) {
    const Policy& p = policy();
    auto cs = cases(static_cast<int>(state.range(0)));
    Trace trace = state.range(1) ? Trace::on : Trace::off;
    std::size_t i = 0;
    for (auto _ : state) {
        const Case& c = cs[i++ & 4095];
        benchmark::DoNotOptimize(p.at_mail_from(c.conn, c.env, trace));
    }
}

void BM_Header(benchmark::State& state) {
    const Policy& p = policy();
    auto cs = cases(static_cast<int>(state.range(0)));
    Trace trace = state.range(1) ? Trace::on : Trace::off;
    std::size_t i = 0;
    for (auto _ : state) {
        const Case& c = cs[i++ & 4095];
        benchmark::DoNotOptimize(p.at_header(c.conn, c.env, c.hdr, trace));
    }
}

// The same decision against a 10-tenant policy: the fixed cost of a
// decision, without cache misses in large tables.
void BM_MailFromSmall(benchmark::State& state) {
    static const auto small = [] {
        std::string s = R"({"version": 1, "tenants": {)";
        for (int i = 0; i < 10; ++i)
            s += fmt::format(
                R"({}"t{}": {{"domains": ["d5.t{}.example"], "identities": [{{"networks": ["{}.0/24"]}}]}})",
                i ? "," : "", i, i, net_of(i));
        return *Policy::load_text(s + "}}");
    }();
    ConnectionFacts conn;
    conn.client_ip = IpAddress::parse(net_of(3) + ".25");
    EnvelopeFacts env{false, "d5.t3.example", {}};
    Trace trace = state.range(0) ? Trace::on : Trace::off;
    for (auto _ : state)
        benchmark::DoNotOptimize(small->at_mail_from(conn, env, trace));
}

}  // namespace

BENCHMARK(BM_MailFromSmall)->Arg(0)->Arg(1);
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->Iterations(3);
// Arg: 0 network/exact, 1 network/wildcard, 2 certificate, 3 provider, 4 unknown.
BENCHMARK(BM_MailFrom)->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}})->Unit(benchmark::kNanosecond);
BENCHMARK(BM_Header)->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}})->Unit(benchmark::kNanosecond);

BENCHMARK_MAIN();
