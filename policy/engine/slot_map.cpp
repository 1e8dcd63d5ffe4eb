#include "policy/engine/slot_map.hpp"

#include <algorithm>

namespace relaygate::policy {

std::size_t SlotMap::runs_in(const std::vector<std::uint32_t>& slots) {
    std::size_t runs = slots.empty() ? 0 : 1;
    for (std::size_t t = 1; t < slots.size(); ++t)
        if (slots[t] != slots[t - 1] + 1) ++runs;
    return runs;
}

SlotMap::SlotMap(const std::vector<std::uint32_t>& slots, std::uint32_t slot_count)
    : slot_count_(slot_count) {
    runs_.reserve(runs_in(slots));
    for (std::uint32_t t = 0; t < slots.size(); ++t) {
        if (t > 0 && slots[t] == slots[t - 1] + 1)
            ++runs_.back().length;
        else
            runs_.push_back({t, slots[t], 1});
    }
    by_slot_.resize(runs_.size());
    for (std::uint32_t i = 0; i < by_slot_.size(); ++i)
        by_slot_[i] = i;
    std::sort(by_slot_.begin(), by_slot_.end(), [this](std::uint32_t a, std::uint32_t b) {
        return runs_[a].first_slot < runs_[b].first_slot;
    });
}

std::uint32_t SlotMap::slot(std::uint32_t tenant) const {
    if (identity()) return tenant;
    // The last run starting at or before `tenant` (the first starts at 0).
    const auto next =
        std::upper_bound(runs_.begin(), runs_.end(), tenant,
                         [](std::uint32_t t, const Run& r) { return t < r.first_tenant; });
    const Run& run = *(next - 1);
    return run.first_slot + (tenant - run.first_tenant);
}

std::uint32_t SlotMap::tenant(std::uint32_t slot) const {
    if (identity()) return slot;
    const auto next = std::upper_bound(
        by_slot_.begin(), by_slot_.end(), slot,
        [this](std::uint32_t s, std::uint32_t i) { return s < runs_[i].first_slot; });
    if (next == by_slot_.begin()) return kFree;
    const Run& run = runs_[*(next - 1)];
    return slot - run.first_slot < run.length ? run.first_tenant + (slot - run.first_slot) : kFree;
}

}  // namespace relaygate::policy
