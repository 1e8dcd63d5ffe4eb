// Incremental reloads (Policy::load_* with a previous policy): a reload that
// changes some tenants shares the other shards of the domain index with the
// previous policy, and must give exactly the policy a full load gives, or
// refuse exactly what a full load refuses.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "policy_test_util.hpp"

using namespace relaygate::policy;
using namespace relaygate::policy::test;

namespace {

constexpr int kTenants = 3000;  // 30,000 names: 16 shards (sized by the first tenant's 11)

// Tenant tI: d0..d8.tI.example, *.w.tI.example, 10.(I/256).(I%256).0/24.
// Tenants 0-2 share shared.example. `extra` adds domain entries (JSON
// strings or objects, already quoted) to a tenant; `mode` sets one's mode.
// The tenants are t0 to t<count - 1> but those in `absent`.
std::string policy_text(const std::map<int, std::vector<std::string>>& extra = {},
                        const std::map<int, std::vector<int>>& drop = {}, int report_tenant = -1,
                        bool pretty = false, const std::set<int>& absent = {},
                        int count = kTenants) {
    std::string out = R"({"version": 1, "tenants": {)";
    const char* nl = pretty ? "\n    " : "";
    bool first_tenant = true;
    for (int i = 0; i < count; ++i) {
        if (absent.contains(i)) continue;
        if (!std::exchange(first_tenant, false)) out += ",";
        out += fmt::format(R"({}"t{}": {{"domains": [)", nl, i);
        bool first = true;
        auto add = [&](const std::string& d) {
            out += first ? "" : ", ";
            out += d;
            first = false;
        };
        for (int k = 0; k < 9; ++k) {
            auto dropped = drop.find(i);
            if (dropped != drop.end() && std::find(dropped->second.begin(), dropped->second.end(),
                                                   k) != dropped->second.end())
                continue;
            add(fmt::format(R"("d{}.t{}.example")", k, i));
        }
        add(fmt::format(R"("*.w.t{}.example")", i));
        if (i < 3) add(R"({"domain": "shared.example", "shared_domain": true})");
        if (auto e = extra.find(i); e != extra.end())
            for (const auto& d : e->second)
                add(d);
        out += fmt::format(R"(], "identities": [{{"networks": ["10.{}.{}.0/24"]}}])", i / 256,
                           i % 256);
        if (i == report_tenant) out += R"(, "mode": "report")";
        out += "}";
    }
    return out + "}}";
}

std::shared_ptr<const Policy> load(const std::string& text, const Policy* previous = nullptr) {
    auto r = Policy::load_text(text, nullptr, previous);
    if (!r) {
        for (const auto& e : r.error())
            MESSAGE(format_diagnostic(e));
        FAIL("policy did not load");
    }
    return *r;
}

// Every grant as "pattern tenant shared verify", sorted (the index names
// tenants by slot, and keeps a name's owners in the order of their slots,
// which an incremental load that added tenants numbers otherwise).
std::vector<std::string> grants(const Policy& p) {
    std::vector<std::string> out;
    p.domain_index().for_each([&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
        out.push_back(
            fmt::format("{} {} {} {}", m.pattern(), p.grant_tenant(g), g.shared, g.verify_dns));
    });
    std::sort(out.begin(), out.end());
    return out;
}

// The shards holding a grant of one of these tenants (tI), before or after.
std::set<std::size_t> shards_of(const Policy& before, const Policy& after,
                                const std::vector<int>& changed) {
    std::set<std::string, std::less<>> ids;
    for (int i : changed)
        ids.insert(fmt::format("t{}", i));
    std::set<std::size_t> out;
    for (const Policy* p : {&before, &after})
        p->domain_index().for_each([&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
            if (ids.contains(p->grant_tenant(g)))
                out.insert(p->domain_index().shard_of(m.pattern()));
        });
    return out;
}

std::string verdict(const Policy& p, const std::string& ip, const std::string& domain) {
    const auto d = p.at_mail_from(from_ip(ip), env(domain), Trace::off);
    return fmt::format("{} {} {} {}", to_string(d.verdict), relaygate::label(d.reason), d.tenant,
                       d.grant);
}

// `inc` (loaded with a previous policy) is the policy a full load of the
// same text gives.
void same_policy(const Policy& inc, const std::string& text) {
    const auto full = load(text);
    CHECK(inc.hash() == full->hash());
    CHECK(inc.tenant_count() == full->tenant_count());
    CHECK(inc.domain_count() == full->domain_count());
    CHECK(inc.domain_index().exact_count() == full->domain_index().exact_count());
    CHECK(inc.domain_index().wildcard_count() == full->domain_index().wildcard_count());
    same_diagnostics(inc.warnings(), full->warnings());
    CHECK(grants(inc) == grants(*full));
    for (int i : {0, 1, 2, 3, 5, 7, 8, 2999})
        for (const auto& domain :
             {fmt::format("d0.t{}.example", i), fmt::format("d1.t{}.example", i),
              fmt::format("new.t{}.example", i), fmt::format("a.w.t{}.example", i),
              fmt::format("x.y.t{}.example", i), std::string("shared.example"),
              std::string("d0.t9.example")}) {
            const auto ip = fmt::format("10.{}.{}.7", i / 256, i % 256);
            CAPTURE(ip);
            CAPTURE(domain);
            CHECK(verdict(inc, ip, domain) == verdict(*full, ip, domain));
        }
}

}  // namespace

TEST_CASE("an incremental reload gives the full load's policy and shares the other shards") {
    const auto base = load(policy_text());
    const auto& shards = base->domain_index().shard_count();
    REQUIRE(shards == 16);

    struct Edit {
        const char* name;
        std::string text;
        std::vector<int> changed;     // the tenants whose text changed
        bool record_changed = false;  // a tenant's record (mode), not only its names
    };
    const std::vector<Edit> edits = {
        {"a name renamed", policy_text({{3, {R"("new.t3.example")"}}}, {{3, {0}}}), {3}},
        {"a wildcard added", policy_text({{5, {R"("*.y.t5.example")"}}}), {5}},
        {"a name moves to another tenant",
         policy_text({{8, {R"("d0.t7.example")"}}}, {{7, {0}}}),
         {7, 8}},
        {"a name joins a shared domain",
         policy_text({{7,
                       {R"({"domain": "shared.example", )"
                        R"("shared_domain": true})"}}}),
         {7}},
        // A co-owner of a shared name is added again last.
        {"a co-owner of a shared domain changes", policy_text({{1, {R"("new.t1.example")"}}}), {1}},
        {"a tenant's mode only", policy_text({}, {}, 2), {2}, true},
        {"names removed from two tenants", policy_text({}, {{0, {1, 2}}, {2999, {8}}}), {0, 2999}},
    };
    for (const auto& e : edits) {
        SUBCASE(e.name) {
            const auto inc = load(e.text, base.get());
            same_policy(*inc, e.text);
            // A tenant whose text changed rebuilds the shards its old and
            // new names are in; every other shard is the previous one.
            const auto shared = inc->domain_index().shards_shared_with(base->domain_index());
            CHECK(shards - shared == shards_of(*base, *inc, e.changed).size());
            // Tenant records: 3 chunks; the one holding t2 (number 1112,
            // after t1, t10-t19, t100-t199, t1000-t1999) has a new record.
            CHECK(inc->tenant_chunks_shared_with(*base) == (e.record_changed ? 2 : 3));
            const auto full = load(e.text);
            CHECK(full->domain_index().shards_shared_with(base->domain_index()) == 0);
            CHECK(full->tenant_chunks_shared_with(*base) == 0);

            // And again from the incremental result: the digests carry over.
            const auto back = load(policy_text(), inc.get());
            same_policy(*back, policy_text());
            CHECK(back->domain_index().shards_shared_with(inc->domain_index()) > 0);
        }
    }
}

TEST_CASE("an unchanged or reformatted reload") {
    const auto base = load(policy_text());
    const auto shards = base->domain_index().shard_count();
    const auto same = load(policy_text(), base.get());
    CHECK(same->domain_index().shards_shared_with(base->domain_index()) == shards);
    CHECK(same->tenant_chunks_shared_with(*base) == 3);
    same_policy(*same, policy_text());
    // Whitespace between tenants is outside their text: nothing changed.
    const auto pretty = policy_text({}, {}, -1, true);
    const auto reformatted = load(pretty, base.get());
    CHECK(reformatted->domain_index().shards_shared_with(base->domain_index()) == shards);
    same_policy(*reformatted, pretty);
}

TEST_CASE("a reload that adds or removes tenants keeps the others' slots and shares their shards") {
    // Tenant numbers follow the ids' order, so each step renumbers most
    // tenants; their slots in the domain index stay. Each step reloads
    // from the one before.
    struct Step {
        const char* name;
        std::string text;
        std::vector<int> tenants;  // added or removed by this step
        std::size_t count;
        std::size_t slots;
    };
    const std::set<int> two_gone = {5, 1000};
    const std::vector<Step> steps = {
        {"the last tenant removed", policy_text({}, {}, -1, false, {2999}), {2999}, 2999, 3000},
        {"it comes back, and a new tenant",
         policy_text({}, {}, -1, false, {}, kTenants + 1),
         {2999, 3000},
         3001,
         3001},
        {"two tenants removed",
         policy_text({}, {}, -1, false, two_gone, kTenants + 1),
         {5, 1000},
         2999,
         3001},
        {"two new tenants take their slots",
         policy_text({}, {}, -1, false, two_gone, kTenants + 3),
         {3001, 3002},
         3001,
         3001},
        {"back to the first policy", policy_text(), {5, 1000, 3000, 3001, 3002}, 3000, 3001},
    };
    auto previous = load(policy_text());
    for (const auto& step : steps) {
        CAPTURE(step.name);
        const auto inc = load(step.text, previous.get());
        CHECK(inc->tenant_count() == step.count);
        CHECK(inc->slot_count() == step.slots);
        same_policy(*inc, step.text);
        const auto rebuilt = shards_of(*previous, *inc, step.tenants).size();
        CHECK(rebuilt > 0);
        CHECK(inc->domain_index().shards_shared_with(previous->domain_index()) ==
              previous->domain_index().shard_count() - rebuilt);
        previous = inc;
    }
    // A tenant that is gone decides nothing; a new one decides as its own.
    const auto gone = load(policy_text({}, {}, -1, false, {7}), load(policy_text()).get());
    CHECK(verdict(*gone, "10.0.7.1", "d0.t7.example") == "reject tenant_unknown  ");
    const auto added = load(policy_text({}, {}, -1, false, {}, kTenants + 1), gone.get());
    CHECK(verdict(*added, "10.11.184.1", "d3.t3000.example") ==
          "accept accepted t3000 d3.t3000.example");
    CHECK(verdict(*added, "10.11.184.1", "d3.t3.example") ==
          "reject envelope_domain_unauthorized t3000 ");
}

TEST_CASE("a reload with most tenants changed, or most slots free, is a full load") {
    const auto base = load(policy_text());
    std::map<int, std::vector<std::string>> many;
    for (int i = 0; i < kTenants; i += 2)
        many[i] = {fmt::format(R"("more.t{}.example")", i)};
    const auto most = load(policy_text(many), base.get());
    CHECK(most->domain_index().shards_shared_with(base->domain_index()) == 0);
    same_policy(*most, policy_text(many));

    // A fifth of the tenants removed: incremental, their slots stay free.
    std::set<int> fifth;
    for (int i = 0; i < kTenants / 5; ++i)
        fifth.insert(i * 5);
    const auto fewer = load(policy_text({}, {}, -1, false, fifth), base.get());
    CHECK(fewer->tenant_count() == kTenants - fifth.size());
    CHECK(fewer->slot_count() == kTenants);
    same_policy(*fewer, policy_text({}, {}, -1, false, fifth));
    // Another tenth: more than a fifth of the slots would be free, so the
    // load is full and numbers the tenants densely again.
    auto more = fifth;
    for (int i = 0; i < kTenants / 10; ++i)
        more.insert(i * 5 + 1);
    const auto dense = load(policy_text({}, {}, -1, false, more), fewer.get());
    CHECK(dense->slot_count() == dense->tenant_count());
    CHECK(dense->domain_index().shards_shared_with(fewer->domain_index()) == 0);
    same_policy(*dense, policy_text({}, {}, -1, false, more));

    // The removed fifth's slots free: a run of slots per kept stretch
    // (fewer than the removed, where removed ids are neighbours in the
    // ids' order: "t5", "t50").
    CHECK(fewer->slot_runs() > fifth.size() / 2);
    CHECK(fewer->slot_runs() <= fifth.size() + 1);
    // As many new tenants take those slots, lowest first, each a run of
    // its own (their ids sort together, their slots are five apart).
    const int grown = kTenants + static_cast<int>(fifth.size());
    const auto refilled = load(policy_text({}, {}, -1, false, fifth, grown), fewer.get());
    CHECK(refilled->slot_count() == kTenants);
    CHECK(refilled->slot_runs() > 2 * fifth.size() - 100);
    // 400 more removed, each splitting a run: only 400 of 3,000 tenants
    // differ and 400 slots would be free, but there would be more runs than
    // half the tenants (taking more than two arrays would), so the load is
    // full and numbers the tenants densely again.
    auto split = fifth;
    for (int i = 0; i < 400; ++i)
        split.insert(i * 5 + 2);
    const auto split_text = policy_text({}, {}, -1, false, split, grown);
    const auto rebuilt = load(split_text, refilled.get());
    CHECK(rebuilt->tenant_count() == kTenants - 400);
    CHECK(rebuilt->slot_runs() == 0);
    CHECK(rebuilt->domain_index().shards_shared_with(refilled->domain_index()) == 0);
    same_policy(*rebuilt, split_text);
}

TEST_CASE("an incremental reload refuses what a full load refuses, with check's diagnostics") {
    const auto base = load(policy_text());
    struct Bad {
        const char* name;
        std::string text;
    };
    const std::vector<Bad> bad = {
        // An earlier tenant takes a later, unchanged tenant's name: the
        // full load reports it at the later tenant, which is not linted
        // again in an incremental load.
        {"a name of a later tenant", policy_text({{4, {R"("d0.t9.example")"}}})},
        {"a name of an earlier tenant", policy_text({{9, {R"("d0.t4.example")"}}})},
        // A wildcard over an unchanged tenant's names: only the pass over
        // the whole index finds it.
        {"a wildcard over another tenant's names", policy_text({{4, {R"("*.t9.example")"}}})},
        {"a name under another tenant's wildcard", policy_text({{4, {R"("a.w.t9.example")"}}})},
        {"a shared domain one side does not mark shared",
         policy_text({{7, {R"("shared.example")"}}})},
        {"a name twice in the changed tenant", policy_text({{6, {R"("d0.t6.example")"}}})},
    };
    for (const auto& b : bad) {
        SUBCASE(b.name) {
            auto inc = Policy::load_text(b.text, nullptr, base.get());
            REQUIRE_FALSE(inc);
            auto full = Policy::load_text(b.text);
            REQUIRE_FALSE(full);
            same_diagnostics(inc.error(), full.error());
            CHECK(has_rule(inc.error(), b.name == std::string("a name twice in the changed tenant")
                                            ? "duplicate_domain"
                                            : "domain_granted_twice"));
        }
    }
}

TEST_CASE("from a file and a descriptor, as the gateway reloads") {
    const auto base = load(policy_text());
    const auto text = policy_text({{11, {R"("new.t11.example")"}}});
    TempPolicyFile file(text);
    auto r = Policy::load_file(file.path, nullptr, base.get());
    REQUIRE(r);
    same_policy(**r, text);
    const auto rebuilt = shards_of(*base, **r, {11}).size();
    CHECK(rebuilt > 0);
    CHECK((*r)->domain_index().shards_shared_with(base->domain_index()) ==
          base->domain_index().shard_count() - rebuilt);
    const int fd = ::open(file.path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    auto d = Policy::load_descriptor(fd, file.path, nullptr, base.get());
    ::close(fd);
    REQUIRE(d);
    CHECK((*d)->hash() == (*r)->hash());
    CHECK((*d)->domain_index().shards_shared_with(base->domain_index()) ==
          base->domain_index().shard_count() - rebuilt);
}

TEST_CASE(
    "90k tenants: records in one mapping, shared on and read after the first policy is gone") {
    // 2.2 MB of records (24 octets each): a full load carves them from a
    // mapping of huge pages; the reload shares every chunk but the changed
    // tenant's.
    constexpr int kMany = 90000;
    auto text = [](int report_tenant) {
        std::string out = R"({"version": 1, "tenants": {)";
        for (int i = 0; i < kMany; ++i)
            out += fmt::format(
                R"({}"t{}": {{"domains": ["t{}.example"], "identities": [{{"networks": )"
                R"(["{}.{}.{}.0/24"]}}]{}}})",
                i ? "," : "", i, i, 10 + i / 65536, i / 256 % 256, i % 256,
                i == report_tenant ? R"(, "mode": "report")" : "");
        return out + "}}";
    };
    auto base = load(text(-1));
    REQUIRE(base->tenant_count() == kMany);
    const auto changed = text(7);
    const auto inc = load(changed, base.get());
    constexpr std::size_t kChunks = (kMany + 1023) / 1024;
    CHECK(inc->tenant_chunks_shared_with(*base) == kChunks - 1);
    base.reset();  // the shared chunks keep the mapping they are in
    for (int i : {0, 7, 1234, 40000, 65535, kMany - 1}) {
        const auto ip = fmt::format("{}.{}.{}.9", 10 + i / 65536, i / 256 % 256, i % 256);
        CAPTURE(ip);
        const auto own =
            inc->at_mail_from(from_ip(ip), env(fmt::format("t{}.example", i)), Trace::off);
        CHECK(own.verdict == Verdict::accept);
        CHECK(own.tenant == fmt::format("t{}", i));
        const auto other = inc->at_mail_from(from_ip(ip), env("t3.example"), Trace::off);
        // t7 is in report mode: its violation is logged and passed.
        CHECK(other.verdict == (i == 7 ? Verdict::accept : Verdict::reject));
        CHECK(other.tenant == fmt::format("t{}", i));
    }
    same_policy(*inc, changed);
}
