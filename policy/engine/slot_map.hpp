// Tenant numbers and the domain index's slots, both ways (see
// Policy::slots_). Tenant numbers follow the ids' order; a kept tenant
// keeps its slot from policy to policy, so after a reload that adds or
// removes a few tenants the two differ by a constant over long runs. The
// map keeps those runs, not two arrays by tenant and by slot (800 KB at
// 100k tenants, in the serving policy and again in the one loading).
#pragma once

#include <cstdint>
#include <vector>

namespace relaygate::policy {

class SlotMap {
  public:
    static constexpr std::uint32_t kFree = 0xffff'ffffU;

    // Every slot is its tenant's number (a full load).
    SlotMap() = default;
    // `slots`: each tenant number's slot, all distinct and below
    // `slot_count` (the slots in between are free).
    SlotMap(const std::vector<std::uint32_t>& slots, std::uint32_t slot_count);
    // How many runs `slots` makes (a plan weighs them before building).
    static std::size_t runs_in(const std::vector<std::uint32_t>& slots);

    bool identity() const { return runs_.empty(); }
    std::uint32_t slot(std::uint32_t tenant) const;
    // The tenant holding `slot`, or kFree.
    std::uint32_t tenant(std::uint32_t slot) const;
    // Slots held or free; `tenants` when identity().
    std::size_t slot_count(std::size_t tenants) const { return identity() ? tenants : slot_count_; }
    std::size_t run_count() const { return runs_.size(); }

  private:
    // Tenants first_tenant .. first_tenant + length - 1 hold the slots
    // first_slot .. first_slot + length - 1.
    struct Run {
        std::uint32_t first_tenant, first_slot, length;
    };
    std::vector<Run> runs_;               // by first_tenant
    std::vector<std::uint32_t> by_slot_;  // indexes into runs_, by first_slot
    std::uint32_t slot_count_ = 0;
};

}  // namespace relaygate::policy
