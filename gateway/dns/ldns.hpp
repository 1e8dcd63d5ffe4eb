// The one place that includes libldns, and RAII owners for its objects.
// <stdbool.h> must come first: in C++ <ldns/ldns.h> otherwise defines bool,
// true and false as macros, which later breaks <optional> (RECIPES.md).
// No I/O here: ldns is used as a wire-format codec and config parser only.
#pragma once

#include <stdbool.h>

#include <ldns/ldns.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace relaygate::dns {

struct PktDeleter {
    void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
// Deep: an rr_list owns its RRs (ldns_pkt_rr_list_by_type returns copies).
struct RrListDeleter {
    void operator()(ldns_rr_list* l) const noexcept { ldns_rr_list_deep_free(l); }
};
struct RdfDeleter {
    void operator()(ldns_rdf* r) const noexcept { ldns_rdf_deep_free(r); }
};
struct ResolverDeleter {
    void operator()(ldns_resolver* r) const noexcept { ldns_resolver_deep_free(r); }
};
// ldns_pkt2wire and ldns_rdf2str return malloc'd buffers.
struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
};

using PktPtr = std::unique_ptr<ldns_pkt, PktDeleter>;
using RrListPtr = std::unique_ptr<ldns_rr_list, RrListDeleter>;
using RdfPtr = std::unique_ptr<ldns_rdf, RdfDeleter>;
using ResolverPtr = std::unique_ptr<ldns_resolver, ResolverDeleter>;
using WirePtr = std::unique_ptr<std::uint8_t, FreeDeleter>;
using CStrPtr = std::unique_ptr<char, FreeDeleter>;

}  // namespace relaygate::dns
