// CidrIndex building and the longest-prefix probe.
#include "policy/engine/cidr_index.hpp"

#include <algorithm>
#include <functional>

namespace relaygate::policy {

CidrIndex::Key CidrIndex::key_of(const IpAddress& ip) {
    Key k;
    const auto& b = ip.bytes();
    for (int i = 0; i < 8; ++i) k.hi = (k.hi << 8) | b[i];
    for (int i = 8; i < 16; ++i) k.lo = (k.lo << 8) | b[i];
    return k;
}

std::uint32_t CidrIndex::insert(const Cidr& cidr, std::uint32_t slot) {
    Family& fam = cidr.address.is_v4() ? v4_ : v6_;
    auto& table = fam.by_length[cidr.prefix_len];
    auto [it, inserted] = table.try_emplace(key_of(cidr.address), slot);
    if (inserted) {
        ++size_;
        if (std::find(fam.lengths.begin(), fam.lengths.end(), cidr.prefix_len) ==
            fam.lengths.end()) {
            fam.lengths.push_back(cidr.prefix_len);
            std::sort(fam.lengths.begin(), fam.lengths.end(), std::greater<>());
        }
    }
    return it->second;
}

std::optional<CidrIndex::Match> CidrIndex::longest_match(const IpAddress& ip) const {
    const Family& fam = family(ip);
    for (unsigned len : fam.lengths) {
        IpAddress net = ip.masked(len);
        auto hit = fam.by_length[len].find(key_of(net));
        if (hit != fam.by_length[len].end()) return Match{Cidr{net, len}, hit->second};
    }
    return std::nullopt;
}

}  // namespace relaygate::policy
