// Tests for the policy's lookup structures: FlatStringMap (probing, forced
// collisions, growth, stable handles), DomainIndex, CidrIndex against a
// brute-force reference, and the plain-LDH fast path of the loader against
// normalize_domain.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gateway/common/domain.hpp"
#include "policy/engine/cidr_index.hpp"
#include "policy/engine/domain_index.hpp"
#include "policy/engine/flat_table.hpp"
#include "policy/engine/table_memory.hpp"

using namespace relaygate::policy;

namespace {

// Every key lands on the same slot with the same tag: lookups must fall
// back on comparing whole keys along one long probe chain.
struct CollidingHash {
    std::uint64_t operator()(std::string_view) const noexcept { return 0x1234'5678'0000'0007ULL; }
};
// Two tags, same start slot.
struct TwoTagHash {
    std::uint64_t operator()(std::string_view s) const noexcept {
        return (s.size() % 2 ? 0xaaaa'aaaa'0000'0003ULL : 0x5555'5555'0000'0003ULL);
    }
};

struct Wide {
    std::uint64_t a;
    std::uint8_t b;
    friend bool operator==(const Wide&, const Wide&) = default;
};

}  // namespace

TEST_CASE("FlatStringMap: insert, find, duplicates, values") {
    FlatStringMap<std::uint32_t> m;
    CHECK(m.find("absent") == m.npos);  // empty table
    CHECK(m.empty());
    auto [a, fresh_a] = m.try_emplace("alpha", 1);
    auto [b, fresh_b] = m.try_emplace("beta", 2);
    CHECK(fresh_a);
    CHECK(fresh_b);
    CHECK(a != m.npos);
    CHECK(a != b);
    auto [a2, fresh_a2] = m.try_emplace("alpha", 99);
    CHECK_FALSE(fresh_a2);
    CHECK(a2 == a);
    CHECK(m.value(a) == 1);  // an existing value is not overwritten
    CHECK(m.size() == 2);
    CHECK(m.find("alpha") == a);
    CHECK(m.key(b) == "beta");
    CHECK(m.find("alph") == m.npos);
    CHECK(m.find("alphaa") == m.npos);
    CHECK(m.find("") == m.npos);
    m.set_value(b, 7);
    CHECK(m.value(m.find("beta")) == 7);

    // The empty key and keys with NUL bytes are ordinary keys.
    auto [e, fresh_e] = m.try_emplace("", 5);
    CHECK(fresh_e);
    CHECK(m.find("") == e);
    std::string nul("a\0b", 3);
    auto [n, fresh_n] = m.try_emplace(nul, 6);
    CHECK(fresh_n);
    CHECK(m.find(nul) == n);
    CHECK(m.find(std::string_view("a\0c", 3)) == m.npos);
    CHECK(m.find("a") == m.npos);
    CHECK(m.key(n) == nul);
}

TEST_CASE("FlatStringMap: full hash collisions are resolved by key") {
    FlatStringMap<std::uint32_t, CollidingHash> m;
    std::vector<std::string> keys;
    for (int i = 0; i < 200; ++i)
        keys.push_back(fmt::format("key-{}", i));
    for (std::uint32_t i = 0; i < keys.size(); ++i)
        CHECK(m.try_emplace(keys[i], i).second);
    for (std::uint32_t i = 0; i < keys.size(); ++i) {
        auto r = m.find(keys[i]);
        REQUIRE(r != m.npos);
        CHECK(m.value(r) == i);
        CHECK(m.key(r) == keys[i]);
    }
    CHECK(m.find("key-200") == m.npos);
    CHECK(m.find("key-") == m.npos);
    CHECK_FALSE(m.try_emplace("key-17", 0).second);
    CHECK(m.value(m.find("key-17")) == 17);

    // Different tags on one probe chain, wrapping around the table's end
    // (the start slot is 3 of 16, then 32, ...).
    FlatStringMap<std::uint32_t, TwoTagHash> t;
    for (std::uint32_t i = 0; i < 40; ++i)
        CHECK(t.try_emplace(std::string(i + 1, 'x'), i).second);
    for (std::uint32_t i = 0; i < 40; ++i)
        CHECK(t.value(t.find(std::string(i + 1, 'x'))) == i);
    CHECK(t.find(std::string(41, 'x')) == t.npos);
}

TEST_CASE("FlatStringMap: growth keeps entries and handles") {
    FlatStringMap<Wide> m;  // 8-byte aligned values, odd key lengths
    std::mt19937 rng(7);
    std::map<std::string, Wide> reference;
    std::map<std::string, FlatStringMap<Wide>::Ref> refs;
    for (int i = 0; i < 20000; ++i) {
        std::string key(1 + rng() % 40, '\0');
        for (auto& c : key)
            c = static_cast<char>('a' + rng() % 26);
        Wide v{rng(), static_cast<std::uint8_t>(i)};
        auto [r, fresh] = m.try_emplace(key, v);
        CHECK(fresh == !reference.contains(key));
        if (fresh) {
            reference.emplace(key, v);
            refs.emplace(key, r);
        }
        // Load factor stays at most 1/2 in a power-of-two table.
        CHECK(m.slot_count() >= 2 * m.size());
        CHECK((m.slot_count() & (m.slot_count() - 1)) == 0);
    }
    CHECK(m.size() == reference.size());
    for (const auto& [key, v] : reference) {
        auto r = m.find(key);
        REQUIRE(r != m.npos);
        CHECK(r == refs.at(key));  // handles survive rehashing
        CHECK(m.value(r) == v);
    }
    // for_each visits every entry once, in insertion order.
    std::size_t count = 0;
    FlatStringMap<Wide>::Ref last = 0;
    m.for_each([&](FlatStringMap<Wide>::Ref r) {
        CHECK(r > last);
        last = r;
        ++count;
    });
    CHECK(count == reference.size());

    // reserve() up front gives the same contents.
    FlatStringMap<Wide> reserved;
    reserved.reserve(reference.size(), 20 * reference.size());
    auto slots = reserved.slot_count();
    for (const auto& [key, v] : reference)
        reserved.try_emplace(key, v);
    CHECK(reserved.slot_count() == slots);
    for (const auto& [key, v] : reference)
        CHECK(reserved.value(reserved.find(key)) == v);
}

TEST_CASE("DomainIndex: exact, wildcard, shared owners") {
    DomainIndex idx;
    CHECK_FALSE(idx.grant_for("a.example", 0));  // empty index
    CHECK(idx.add("a.example", {0, false}));
    CHECK(idx.add("*.a.example", {1, false}));
    CHECK(idx.add("*.example", {2, true}));
    CHECK(idx.add("*.example", {3, true}));
    CHECK(idx.add("*.example", {4, false}));
    CHECK_FALSE(idx.add("*.example", {3, false}));  // same tenant again
    CHECK_FALSE(idx.add("a.example", {0, true}));

    auto g = idx.grant_for("a.example", 0);
    REQUIRE(g);
    CHECK(g->pattern() == "a.example");
    CHECK_FALSE(idx.grant_for("a.example", 1));  // *.x never grants x
    CHECK(idx.grant_for("b.a.example", 1)->pattern() == "*.a.example");
    CHECK(idx.grant_for("c.b.a.example", 1)->pattern() == "*.a.example");
    CHECK(idx.grant_for("c.b.a.example", 4)->pattern() == "*.example");
    CHECK(idx.grant_for("a.example", 3)->pattern() == "*.example");
    CHECK_FALSE(idx.grant_for("example", 2));
    CHECK_FALSE(idx.grant_for("", 0));
    CHECK_FALSE(idx.grant_for("a.example", 5));

    std::vector<std::pair<std::string, std::uint32_t>> seen;
    idx.for_each_grant("x.a.example",
                       [&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
                           seen.emplace_back(m.pattern(), g.tenant);
                       });
    CHECK(seen == std::vector<std::pair<std::string, std::uint32_t>>{
                      {"*.a.example", 1}, {"*.example", 2}, {"*.example", 3}, {"*.example", 4}});

    // Covering: the entry's own grants, then wildcards of its parents.
    seen.clear();
    idx.for_each_covering("*.a.example",
                          [&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
                              seen.emplace_back(m.pattern(), g.tenant);
                          });
    CHECK(seen == std::vector<std::pair<std::string, std::uint32_t>>{
                      {"*.a.example", 1}, {"*.example", 2}, {"*.example", 3}, {"*.example", 4}});
    auto [entry, added] = idx.insert("a.example", {6, false});
    CHECK(added);
    CHECK(idx.pattern_of(entry).pattern() == "a.example");
    seen.clear();
    idx.for_each_covering(entry, [&](const DomainIndex::Match& m, const DomainIndex::Grant& g) {
        seen.emplace_back(m.pattern(), g.tenant);
    });
    CHECK(seen == std::vector<std::pair<std::string, std::uint32_t>>{{"a.example", 0},
                                                                     {"a.example", 6},
                                                                     {"*.example", 2},
                                                                     {"*.example", 3},
                                                                     {"*.example", 4}});
    idx.prefetch("a.b.c.d.e.f.g.h.i.j.example");  // a hint, no effect on results
    CHECK(idx.grant_for("a.example", 6)->pattern() == "a.example");
}

TEST_CASE("DomainIndex: a million-name-style load, then every name found") {
    DomainIndex idx;
    for (std::uint32_t t = 0; t < 3000; ++t) {
        for (int d = 0; d < 5; ++d)
            REQUIRE(idx.add(fmt::format("d{}.t{}.example", d, t), {t, false}));
        REQUIRE(idx.add(fmt::format("*.w.t{}.example", t), {t, false}));
    }
    CHECK(idx.exact_count() == 15000);
    CHECK(idx.wildcard_count() == 3000);
    for (std::uint32_t t = 0; t < 3000; t += 7) {
        std::string ts = std::to_string(t);
        CHECK(idx.grant_for("d4.t" + ts + ".example", t)->pattern() == "d4.t" + ts + ".example");
        CHECK(idx.grant_for("a.b.w.t" + ts + ".example", t)->pattern() ==
              "*.w.t" + ts + ".example");
        CHECK_FALSE(idx.grant_for("d4.t" + ts + ".example", t + 1));
        CHECK_FALSE(idx.grant_for("w.t" + ts + ".example", t));
    }
}

TEST_CASE("DomainIndex: shards, compacted into huge pages, shared by without()") {
    // 210,000 names: 64 shards, ~11 MB of tables, enough for compact() to
    // move them into a region of huge pages.
    DomainIndex idx;
    constexpr std::uint32_t kTenants = 30000;
    idx.reserve(kTenants * 6, kTenants, kTenants * 6 * 10);  // key bytes underestimated
    CHECK(idx.shard_count() == 64);
    auto name = [](int d, std::uint32_t t) { return fmt::format("name{}.tenant{}.example", d, t); };
    for (std::uint32_t t = 0; t < kTenants; ++t) {
        for (int d = 0; d < 6; ++d)
            REQUIRE(idx.add(name(d, t), {t, false}));
        REQUIRE(idx.add(fmt::format("*.w.tenant{}.example", t), {t, false}));
    }
    idx.compact();  // moves into one mapping; lookups unchanged
    auto all_found = [&](const DomainIndex& x, std::uint32_t skip) {
        for (std::uint32_t t = 0; t < kTenants; t += 13) {
            if (t == skip) continue;
            CHECK(x.grant_for(name(5, t), t)->pattern() == name(5, t));
            CHECK(x.grant_for(fmt::format("a.w.tenant{}.example", t), t));
            CHECK_FALSE(x.grant_for(name(5, t), t + 1));
        }
    };
    all_found(idx, kTenants);
    CHECK(idx.exact_count() == kTenants * 6);

    // Without tenant 26: the shards holding its 7 names are rebuilt.
    std::vector<bool> removed(kTenants);
    removed[26] = true;
    std::set<std::size_t> touched;
    for (int d = 0; d < 6; ++d)
        touched.insert(idx.shard_of(name(d, 26)));
    touched.insert(idx.shard_of("*.w.tenant26.example"));
    auto next = DomainIndex::without(idx, removed);
    CHECK(next.shards_shared_with(idx) == idx.shard_count() - touched.size());
    CHECK_FALSE(next.grant_for(name(0, 26), 26));
    CHECK(idx.grant_for(name(0, 26), 26));  // the old index is unchanged
    CHECK(next.exact_count() == kTenants * 6 - 6);
    // Adding copies a shared shard first; the old index still answers.
    REQUIRE(next.add(name(9, 39), {39, false}));
    next.compact();
    CHECK(next.grant_for(name(9, 39), 39));
    CHECK_FALSE(idx.grant_for(name(9, 39), 39));
    all_found(next, 26);
    // The old index goes (its rebuilt shards' pages are given back); the
    // new one still reads the shards it shared.
    idx = DomainIndex();
    all_found(next, 26);
}

namespace {
// The VmFlags of the mapping that holds `p` (/proc/self/smaps), as
// " rd wr mr ... hg": hg = MADV_HUGEPAGE, nh = MADV_NOHUGEPAGE.
std::string vm_flags(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long from = 0, to = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &from, &to) == 2 &&
            line.find(':') > line.find(' '))
            inside = from <= at && at < to;
        else if (inside && line.starts_with("VmFlags:"))
            return line.substr(8) + " ";
    }
    return "";
}
}  // namespace

TEST_CASE("TableRegion: carved in order, full, pages given back") {
    auto region = TableRegion::create(3 * kHugePage);
    REQUIRE(region);
    auto* a = static_cast<unsigned char*>(region->take(100, 8));
    REQUIRE(a != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(a) % kHugePage == 0);  // huge-page aligned
    auto* b = static_cast<unsigned char*>(region->take(kHugePage, 64));
    REQUIRE(b != nullptr);
    CHECK(b >= a + 100);
    CHECK(reinterpret_cast<std::uintptr_t>(b) % 64 == 0);
    CHECK(region->contains(b + kHugePage - 1));
    CHECK(region->take(4 * kHugePage, 8) == nullptr);  // full: the caller uses the heap
    std::memset(a, 5, 100);
    std::memset(b, 7, kHugePage);
    region->release(b, kHugePage);  // whole pages inside read back as zero
    CHECK(b[kHugePage / 2] == 0);
    CHECK(a[99] == 5);  // its neighbour's page is not given back
    // Where the kernel has transparent huge pages, the region asks for
    // them, and a released range asks for none: khugepaged would otherwise
    // fill the hole back in, and released tables would cost memory again.
    if (vm_flags(a).find(" hg ") != std::string::npos) {
        CHECK(vm_flags(b + 4096).find(" nh ") != std::string::npos);
        CHECK(vm_flags(b + 4096).find(" hg ") == std::string::npos);
    }

    // A table allocated from it; a copy of the table is on the heap.
    FlatStringMap<std::uint32_t> map;
    for (std::uint32_t i = 0; i < 1000; ++i)
        map.try_emplace(fmt::format("key{}", i), i);
    map.move_to(region);
    FlatStringMap<std::uint32_t> copy = map;
    for (std::uint32_t i = 0; i < 1000; i += 7) {
        CHECK(map.value(map.find(fmt::format("key{}", i))) == i);
        CHECK(copy.value(copy.find(fmt::format("key{}", i))) == i);
    }
    CHECK(map.try_emplace("grows-past-the-region", 5).second);  // still works when full
    CHECK(map.value(map.find("key999")) == 999);
}

TEST_CASE("CidrIndex: longest match agrees with a linear scan") {
    std::mt19937 rng(11);
    CidrIndex idx;
    std::vector<std::pair<Cidr, std::uint32_t>> all;
    auto add = [&](const Cidr& c) {
        auto slot = static_cast<std::uint32_t>(all.size());
        if (idx.insert(c, slot) == slot) all.emplace_back(c, slot);
    };
    for (int i = 0; i < 5000; ++i) {
        unsigned len = 8 + rng() % 25;
        auto ip = IpAddress::v4(0x0a000000U | (rng() & 0x00ffffffU));
        add({ip.masked(len), len});
    }
    for (int i = 0; i < 2000; ++i) {
        std::array<std::uint8_t, 16> b{0x20, 0x01, 0x0d, 0xb8};
        for (int k = 4; k < 16; ++k)
            b[k] = static_cast<std::uint8_t>(rng() % 4);  // dense, so prefixes nest
        unsigned len = 32 + rng() % 97;
        auto ip = IpAddress::v6(b);
        add({ip.masked(len), len});
    }
    add(*parse_cidr("0.0.0.0/0").cidr);
    // High bits set: IPv4 keys are 32-bit words, masked from the top.
    add(*parse_cidr("255.255.255.255/32").cidr);
    add(*parse_cidr("203.0.113.0/24").cidr);
    add(*parse_cidr("128.0.0.0/1").cidr);
    CHECK(idx.size() == all.size());
    for (int i = 0; i < 3000; ++i) {
        IpAddress ip;
        if (i % 2) {
            ip = IpAddress::v4(i % 3 == 0   ? 0xcb007100U | (rng() & 0xffU)
                               : i % 5 == 0 ? 0xffffffffU
                                            : 0x0a000000U | (rng() & 0x00ffffffU));
        } else {
            std::array<std::uint8_t, 16> b{0x20, 0x01, 0x0d, 0xb8};
            for (int k = 4; k < 16; ++k)
                b[k] = static_cast<std::uint8_t>(rng() % 4);
            ip = IpAddress::v6(b);
        }
        const std::pair<Cidr, std::uint32_t>* best = nullptr;
        for (const auto& e : all)
            if (e.first.contains(ip) && (!best || e.first.prefix_len > best->first.prefix_len))
                best = &e;
        auto m = idx.longest_match(ip);
        REQUIRE(bool(m) == bool(best));
        if (m) {
            CHECK(m->cidr == best->first);
            CHECK(m->slot == best->second);
        }
        // for_each_match: every containing network, most specific first.
        std::size_t containing = 0, seen = 0;
        for (const auto& e : all)
            containing += e.first.contains(ip);
        unsigned last = 129;
        idx.for_each_match(ip, [&](const CidrIndex::Match& x) {
            CHECK(x.cidr.contains(ip));
            CHECK(x.cidr.prefix_len < last);
            CHECK(all[x.slot].first == x.cidr);
            last = x.cidr.prefix_len;
            ++seen;
        });
        CHECK(seen == containing);
    }
    // assign() replaces the slot of an existing network only.
    CHECK(idx.assign(*parse_cidr("0.0.0.0/0").cidr, 4242));
    CHECK(idx.longest_match(*IpAddress::parse("100.64.0.1"))->slot == 4242);
    CHECK_FALSE(idx.assign(*parse_cidr("192.0.2.0/24").cidr, 1));
    CHECK_FALSE(CidrIndex{}.assign(*parse_cidr("::/0").cidr, 1));
}

TEST_CASE("the plain-LDH fast path is exactly what normalize_domain returns unchanged") {
    // Hand-picked edges, then random strings over an alphabet rich in the
    // characters that matter.
    std::vector<std::string> inputs = {
        "a",
        "a.b",
        "example.com",
        "EXAMPLE.com",
        "-a.com",
        "a-.com",
        "a--b.com",
        "xn--bcher-kva.example",
        "XN--bcher-kva.example",
        "xn--.com",
        "axn--b.com",
        "a.xn--",
        ".a",
        "a.",
        "a..b",
        "",
        ".",
        "a_b.com",
        "a b.com",
        "bücher.example",
        "*.a.com",
        std::string(63, 'a') + ".com",
        std::string(64, 'a') + ".com",
        std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
            std::string(63, 'd'),  // 255
        std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
            std::string(64, 'd'),  // 256
        std::string("a\0b.com", 7),
        "1.2.3.4",
        "0-0.9",
    };
    std::mt19937 rng(3);
    const std::string alphabet = "ab0-.xnXN_*\xc3\xbc";
    for (int i = 0; i < 20000; ++i) {
        std::string s(rng() % 12, '\0');
        for (auto& c : s)
            c = alphabet[rng() % alphabet.size()];
        inputs.push_back(s);
    }
    for (const auto& s : inputs) {
        CAPTURE(s);
        if (!is_plain_ldh_domain(s)) continue;
        auto norm = relaygate::normalize_domain(s, true);
        REQUIRE(norm);
        CHECK(*norm == s);
    }
    // And it does accept the common case.
    CHECK(is_plain_ldh_domain("d5.t12345.example"));
    CHECK(is_plain_ldh_domain("a-b.c0"));
    CHECK_FALSE(is_plain_ldh_domain("xn--bcher-kva.example"));
    CHECK_FALSE(is_plain_ldh_domain("Example.com"));
}

TEST_CASE("large tables take the huge-page allocation path") {
    HugePageAllocator<std::uint64_t> alloc;
    std::size_t n = (3 * kHugePage) / sizeof(std::uint64_t) + 5;  // not a multiple of 2 MiB
    std::uint64_t* big = alloc.allocate(n);
    CHECK(reinterpret_cast<std::uintptr_t>(big) % kHugePage == 0);
    for (std::size_t i = 0; i < n; ++i)
        big[i] = i;
    CHECK(big[n - 1] == n - 1);
    alloc.deallocate(big, n);
    std::uint64_t* small = alloc.allocate(10);
    small[9] = 1;
    alloc.deallocate(small, 10);

    // A table reserved past 2 MiB behaves like any other.
    FlatStringMap<std::uint32_t> m;
    m.reserve(400'000, 8 * 400'000);
    CHECK(m.slot_count() * 8 >= kHugePage);
    for (std::uint32_t i = 0; i < 1000; ++i)
        m.try_emplace(fmt::format("n{}", i), i);
    for (std::uint32_t i = 0; i < 1000; ++i)
        CHECK(m.value(m.find(fmt::format("n{}", i))) == i);
    CidrIndex c;
    c.reserve(200'000, 200'000);
    c.insert(*parse_cidr("198.51.100.0/24").cidr, 3);
    c.insert(*parse_cidr("2001:db8::/32").cidr, 4);
    CHECK(c.longest_match(*IpAddress::parse("198.51.100.9"))->slot == 3);
    CHECK(c.longest_match(*IpAddress::parse("2001:db8::9"))->slot == 4);
}
