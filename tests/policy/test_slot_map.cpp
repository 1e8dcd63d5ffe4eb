// SlotMap: tenant numbers and slots as runs, against the arrays it replaces.
#include "policy/engine/slot_map.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using relaygate::policy::SlotMap;

namespace {
// Every lookup both ways agrees with `slots` and its inverse.
void check_against(const std::vector<std::uint32_t>& slots, std::uint32_t slot_count) {
    const SlotMap map(slots, slot_count);
    REQUIRE_FALSE(map.identity());
    CHECK(map.run_count() == SlotMap::runs_in(slots));
    CHECK(map.slot_count(slots.size()) == slot_count);
    std::vector<std::uint32_t> tenant_of(slot_count, SlotMap::kFree);
    for (std::uint32_t t = 0; t < slots.size(); ++t) {
        CHECK(map.slot(t) == slots[t]);
        tenant_of[slots[t]] = t;
    }
    for (std::uint32_t s = 0; s < slot_count; ++s)
        CHECK(map.tenant(s) == tenant_of[s]);
}
}  // namespace

TEST_CASE("SlotMap: identity after a full load") {
    const SlotMap map;
    CHECK(map.identity());
    CHECK(map.slot(41) == 41);
    CHECK(map.tenant(41) == 41);
    CHECK(map.slot_count(100) == 100);
    CHECK(SlotMap::runs_in({}) == 0);
    CHECK(SlotMap::runs_in({0, 1, 2}) == 1);
}

TEST_CASE("SlotMap: removed tenants leave free slots, new ones take the lowest") {
    // Tenant 2 of 0..5 removed: 0 1 | 3 4 5 keep slots 0 1 3 4 5; slot 2 free.
    check_against({0, 1, 3, 4, 5}, 6);
    // A new tenant sorts first and takes slot 2; one past the end gets 6.
    check_against({2, 0, 1, 3, 4, 5, 6}, 7);
    // Free slots at both ends and a slot taken out of order.
    check_against({1, 2, 7, 3, 4}, 9);
    check_against({0}, 1);
}

TEST_CASE("SlotMap: reloads that add and remove tenants at random, as the plan assigns slots") {
    std::mt19937 random(11);
    // Tenants as (id, slot), kept in id order; ids are random numbers.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> tenants;
    for (std::uint32_t i = 0; i < 400; ++i)
        tenants.push_back({i * 100, i});
    std::uint32_t slot_count = 400;
    for (int reload = 0; reload < 60; ++reload) {
        CAPTURE(reload);
        std::vector<bool> taken(slot_count, false);
        for (int removed = 0; removed < 3; ++removed)
            tenants.erase(tenants.begin() + static_cast<long>(random() % tenants.size()));
        for (const auto& t : tenants)
            taken[t.second] = true;
        for (int added = 0; added < 2; ++added) {
            const auto free = std::find(taken.begin(), taken.end(), false);
            std::uint32_t slot = static_cast<std::uint32_t>(free - taken.begin());
            if (free == taken.end()) {
                taken.push_back(true);
                ++slot_count;
            } else {
                *free = true;
            }
            std::pair<std::uint32_t, std::uint32_t> t{static_cast<std::uint32_t>(random()), slot};
            tenants.insert(std::lower_bound(tenants.begin(), tenants.end(), t), t);
        }
        std::vector<std::uint32_t> slots;
        for (const auto& t : tenants)
            slots.push_back(t.second);
        check_against(slots, slot_count);
    }
}
