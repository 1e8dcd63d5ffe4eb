// libFuzzer target for gateway/dns/packet parse_response: no crash on any
// bytes, the same result twice, and every accepted answer coherent
// (records iff ok, follow only as nodata with a target that is a valid
// query name, names lower-case, addresses that parse back).
#include <arpa/inet.h>

#include <algorithm>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "gateway/dns/packet.hpp"

using namespace relaygate::dns;

namespace {

bool lower_case(const std::string& name) {
    return std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

void check(const Answer& a, const Query& q) {
    if ((a.status == Status::ok) != !a.records.empty()) std::abort();
    if (a.status == Status::timeout) std::abort();
    if (a.follow && (a.status != Status::nodata || a.cname_target.empty())) std::abort();
    // A target must be a name the resolver can ask for next.
    if (!a.cname_target.empty() &&
        (!lower_case(a.cname_target) || !build_query(Query{a.cname_target, q.type, 1}).ok()))
        std::abort();
    for (const std::string& r : a.records) {
        unsigned char buf[16];
        switch (q.type) {
            case RrType::a:
                if (inet_pton(AF_INET, r.c_str(), buf) != 1) std::abort();
                break;
            case RrType::aaaa:
                if (inet_pton(AF_INET6, r.c_str(), buf) != 1) std::abort();
                break;
            case RrType::ptr:
            case RrType::cname:
                if (!lower_case(r)) std::abort();
                break;
            case RrType::txt:
                break;
        }
    }
}

void run(std::span<const std::uint8_t> wire, const Query& q) {
    auto first = parse_response(wire, q);
    auto second = parse_response(wire, q);
    if (first.ok() != second.ok()) std::abort();
    if (!first.ok()) {
        if (first.error() != second.error() || first.error().empty()) std::abort();
        return;
    }
    if (first->records != second->records || first->status != second->status ||
        first->ttl != second->ttl || first->cname_target != second->cname_target)
        std::abort();
    check(*first, q);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> wire(data, size);
    // The seeds answer id 0x1234 for example.com; the same bytes are also
    // checked against the other types so every record decoder runs.
    for (RrType t : {RrType::txt, RrType::a, RrType::aaaa, RrType::ptr, RrType::cname})
        run(wire, Query{"example.com", t, 0x1234});
    return 0;
}
