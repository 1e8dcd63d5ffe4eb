// DNS wire format through libldns. ldns decodes; this file decides what a
// decoded packet means for the query that was sent (RFC 1035, RFC 2308,
// RFC 5452 checks) and never trusts a count or a length from the wire.
#include "gateway/dns/packet.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "gateway/common/ascii.hpp"
#include "gateway/dns/ldns.hpp"

namespace relaygate::dns {
namespace {

constexpr std::array<std::pair<RrType, std::string_view>, 5> kTypes{{{RrType::a, "A"},
                                                                     {RrType::cname, "CNAME"},
                                                                     {RrType::ptr, "PTR"},
                                                                     {RrType::txt, "TXT"},
                                                                     {RrType::aaaa, "AAAA"}}};

// RFC 1035 2.3.4 and 3.1: labels of 1-63 octets, at most 255 octets in
// wire form. Labels are taken literally, so "\" is an ordinary octet here.
Result<std::vector<std::uint8_t>, std::string> encode_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty()) return unexpected(std::string("empty name"));
    std::vector<std::uint8_t> wire;
    while (true) {
        const auto dot = name.find('.');
        const std::string_view label = name.substr(0, dot);
        if (label.empty()) return unexpected(std::string("empty label"));
        if (label.size() > 63) return unexpected(std::string("label longer than 63 octets"));
        wire.push_back(static_cast<std::uint8_t>(label.size()));
        for (unsigned char c : label) {
            if (c < 0x21 || c > 0x7e)
                return unexpected(std::string("octet outside printable ASCII"));
            wire.push_back(static_cast<std::uint8_t>(ascii::to_lower(static_cast<char>(c))));
        }
        if (dot == std::string_view::npos) break;
        name.remove_prefix(dot + 1);
    }
    wire.push_back(0);
    if (wire.size() > 255) return unexpected(std::string("name longer than 255 octets"));
    return wire;
}

// A dname rdf in presentation form (RFC 1035 5.1 escapes), lower-case,
// without the trailing dot. ldns always ends the text with the root's ".";
// only that one is removed, so a label ending in an escaped "\." survives.
std::string name_string(const ldns_rdf* name) {
    CStrPtr text(ldns_rdf2str(name));
    if (!text) return {};
    std::string_view s(text.get());
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return ascii::lower(s);
}

// A dname as a name build_query accepts (printable ASCII, no "." or "\"
// inside a label, not the root), lower-case; nullopt otherwise. CNAME
// targets must be such names, or following them would ask for another name.
std::optional<std::string> plain_name(const ldns_rdf* name) {
    const std::uint8_t* p = ldns_rdf_data(name);
    const std::size_t size = ldns_rdf_size(name);
    std::string out;
    std::size_t i = 0;
    while (i < size && p[i] != 0) {
        const std::size_t len = p[i];
        if (len > 63 || i + 1 + len > size) return std::nullopt;
        if (!out.empty()) out += '.';
        for (std::size_t k = i + 1; k <= i + len; ++k) {
            const unsigned char c = p[k];
            if (c < 0x21 || c > 0x7e || c == '.' || c == '\\') return std::nullopt;
            out += ascii::to_lower(static_cast<char>(c));
        }
        i += 1 + len;
    }
    if (out.empty() || i + 1 != size) return std::nullopt;
    return out;
}

bool same_name(const ldns_rdf* a, const ldns_rdf* b) {
    return a && b && ldns_rdf_get_type(a) == LDNS_RDF_TYPE_DNAME &&
           ldns_rdf_get_type(b) == LDNS_RDF_TYPE_DNAME && ldns_dname_compare(a, b) == 0;
}

// One record's RDATA in the form Answer::records documents; nullopt if the
// RDATA does not have the type's shape.
std::optional<std::string> record_text(const ldns_rr* rr, RrType type) {
    const std::size_t n = ldns_rr_rd_count(rr);
    if (type == RrType::txt) {
        // RFC 1035 3.3.14: one or more <character-string>s, concatenated
        // by the consumer (RFC 7208 3.3, RFC 6376 3.6.2.2).
        std::string out;
        for (std::size_t i = 0; i < n; ++i) {
            const ldns_rdf* rdf = ldns_rr_rdf(rr, i);
            const std::size_t size = ldns_rdf_size(rdf);
            const std::uint8_t* data = ldns_rdf_data(rdf);
            if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_STR || size < 1 || data[0] != size - 1)
                return std::nullopt;
            out.append(reinterpret_cast<const char*>(data) + 1, size - 1);
        }
        return out;
    }
    if (n != 1) return std::nullopt;
    const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
    switch (type) {
        case RrType::a:
            if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_A || ldns_rdf_size(rdf) != 4)
                return std::nullopt;
            break;
        case RrType::aaaa:
            if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_AAAA || ldns_rdf_size(rdf) != 16)
                return std::nullopt;
            break;
        default:
            if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) return std::nullopt;
            return name_string(rdf);
    }
    CStrPtr text(ldns_rdf2str(rdf));
    if (!text) return std::nullopt;
    return std::string(text.get());
}

// RFC 2308 5: a negative answer lives for min(SOA TTL, SOA MINIMUM); with
// no SOA in the authority section it must not be cached at all.
std::uint32_t negative_ttl(const ldns_pkt* pkt) {
    const ldns_rr_list* auth = ldns_pkt_authority(pkt);
    for (std::size_t i = 0; auth && i < ldns_rr_list_rr_count(auth); ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(auth, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7) continue;
        const ldns_rdf* minimum = ldns_rr_rdf(rr, 6);
        if (ldns_rdf_size(minimum) != 4) continue;
        return std::min<std::uint32_t>(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum));
    }
    return 0;
}

std::string rcode_name(ldns_pkt_rcode rcode) {
    CStrPtr text(ldns_pkt_rcode2str(rcode));
    return text ? std::string(text.get()) : "rcode " + std::to_string(rcode);
}

}  // namespace

std::string_view to_string(RrType t) {
    for (const auto& [type, name] : kTypes)
        if (type == t) return name;
    return "UNKNOWN";
}

std::optional<RrType> rr_type_from_string(std::string_view s) {
    for (const auto& [type, name] : kTypes)
        if (ascii::iequals(name, s)) return type;
    return std::nullopt;
}

std::string_view to_string(Status s) {
    switch (s) {
        case Status::ok:
            return "ok";
        case Status::nxdomain:
            return "nxdomain";
        case Status::nodata:
            return "nodata";
        case Status::servfail:
            return "servfail";
        case Status::error:
            return "error";
        case Status::timeout:
            return "timeout";
    }
    return "error";
}

std::string normalize_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    return ascii::lower(name);
}

Result<std::vector<std::uint8_t>, std::string> build_query(const Query& q, bool tcp) {
    auto wire_name = encode_name(q.name);
    if (!wire_name) return unexpected(wire_name.error());
    ldns_rdf* owner =
        ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, wire_name->size(), wire_name->data());
    if (!owner) return unexpected(std::string("out of memory"));
    // ldns_pkt_query_new takes ownership of `owner`, also on failure.
    PktPtr pkt(
        ldns_pkt_query_new(owner, static_cast<ldns_rr_type>(q.type), LDNS_RR_CLASS_IN, LDNS_RD));
    if (!pkt) return unexpected(std::string("out of memory"));
    ldns_pkt_set_id(pkt.get(), q.id);
    ldns_pkt_set_edns_udp_size(pkt.get(), kEdnsUdpSize);
    std::uint8_t* raw = nullptr;
    std::size_t size = 0;
    const ldns_status st = ldns_pkt2wire(&raw, pkt.get(), &size);
    WirePtr wire(raw);
    if (st != LDNS_STATUS_OK || !wire) return unexpected(std::string(ldns_get_errorstr_by_id(st)));
    std::vector<std::uint8_t> out;
    if (tcp) {
        out.push_back(static_cast<std::uint8_t>(size >> 8));
        out.push_back(static_cast<std::uint8_t>(size & 0xff));
    }
    out.insert(out.end(), wire.get(), wire.get() + size);
    return out;
}

Result<Answer, std::string> parse_response(std::span<const std::uint8_t> wire, const Query& q) {
    // RFC 1035 4.1.1: the header alone is 12 octets.
    if (wire.size() < 12) return unexpected(std::string("malformed: short packet"));
    ldns_pkt* raw = nullptr;
    if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK || !raw) {
        ldns_pkt_free(raw);
        return unexpected(std::string("malformed"));
    }
    PktPtr pkt(raw);

    // RFC 5452 9.1: id, question and (in the caller) source must all match.
    if (ldns_pkt_id(pkt.get()) != q.id) return unexpected(std::string("id mismatch"));
    if (!ldns_pkt_qr(pkt.get())) return unexpected(std::string("not a response (QR=0)"));
    if (ldns_pkt_get_opcode(pkt.get()) != LDNS_PACKET_QUERY)
        return unexpected(std::string("opcode mismatch"));
    const ldns_rr_list* question = ldns_pkt_question(pkt.get());
    if (ldns_pkt_qdcount(pkt.get()) != 1 || !question || ldns_rr_list_rr_count(question) != 1)
        return unexpected(std::string("not exactly one question"));
    auto wire_name = encode_name(q.name);
    if (!wire_name) return unexpected(wire_name.error());
    RdfPtr qname(ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, wire_name->size(), wire_name->data()));
    const ldns_rr* qrr = ldns_rr_list_rr(question, 0);
    if (!qname || !same_name(ldns_rr_owner(qrr), qname.get()) ||
        ldns_rr_get_type(qrr) != static_cast<ldns_rr_type>(q.type) ||
        ldns_rr_get_class(qrr) != LDNS_RR_CLASS_IN)
        return unexpected(std::string("question mismatch"));

    Answer a;
    a.truncated = ldns_pkt_tc(pkt.get());
    const ldns_pkt_rcode rcode = ldns_pkt_get_rcode(pkt.get());
    if (rcode == LDNS_RCODE_SERVFAIL) {
        a.status = Status::servfail;
        a.detail = "rcode SERVFAIL";
        return a;
    }
    if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
        a.status = Status::error;
        a.detail = "rcode " + rcode_name(rcode);
        return a;
    }

    // Follow the CNAME chain from the question name (RFC 1034 3.6.2, 4.3.2).
    const ldns_rr_list* answers = ldns_pkt_answer(pkt.get());
    const std::size_t count = answers ? ldns_rr_list_rr_count(answers) : 0;
    std::vector<const ldns_rdf*> visited{qname.get()};
    const ldns_rdf* current = qname.get();
    std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
    for (int hops = 0;; ++hops) {
        const ldns_rr* cname = nullptr;
        for (std::size_t i = 0; i < count; ++i) {
            const ldns_rr* rr = ldns_rr_list_rr(answers, i);
            if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN || !same_name(ldns_rr_owner(rr), current))
                continue;
            const ldns_rr_type t = ldns_rr_get_type(rr);
            if (t == static_cast<ldns_rr_type>(q.type)) {
                auto text = record_text(rr, q.type);
                if (!text) {
                    a.status = Status::error;
                    a.detail = "malformed " + std::string(to_string(q.type)) + " record";
                    a.records.clear();
                    return a;
                }
                a.records.push_back(std::move(*text));
                ttl = std::min(ttl, ldns_rr_ttl(rr));
            } else if (t == LDNS_RR_TYPE_CNAME && !cname && ldns_rr_rd_count(rr) == 1 &&
                       ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) == LDNS_RDF_TYPE_DNAME) {
                cname = rr;
            }
        }
        if (!a.records.empty() || !cname) break;
        const ldns_rdf* target = ldns_rr_rdf(cname, 0);
        if (std::any_of(visited.begin(), visited.end(),
                        [&](const ldns_rdf* v) { return same_name(v, target); })) {
            a.status = Status::error;
            a.detail = "CNAME loop";
            return a;
        }
        if (hops == kMaxCnameHops) {
            a.status = Status::error;
            a.detail = "CNAME chain too long";
            return a;
        }
        auto target_name = plain_name(target);
        if (!target_name) {
            a.status = Status::error;
            a.detail = "CNAME target is not a host name";
            return a;
        }
        ttl = std::min(ttl, ldns_rr_ttl(cname));
        visited.push_back(target);
        current = target;
        a.cname_target = std::move(*target_name);
    }

    if (!a.records.empty()) {
        a.status = Status::ok;
        a.ttl = ttl;
        return a;
    }
    ttl = std::min(ttl, negative_ttl(pkt.get()));
    if (rcode == LDNS_RCODE_NXDOMAIN) {
        // RFC 6604 3: with a CNAME chain the rcode describes its last name.
        a.status = Status::nxdomain;
        a.detail = "NXDOMAIN";
        a.ttl = ttl;
        return a;
    }
    a.status = Status::nodata;
    a.ttl = ttl;
    if (!a.cname_target.empty()) {
        // The server stopped at the alias (it is not authoritative for the
        // target, or the chain is longer than it follows): ask again.
        a.follow = true;
        a.detail = "CNAME to " + a.cname_target;
    } else {
        a.detail = "no " + std::string(to_string(q.type)) + " records";
    }
    return a;
}

}  // namespace relaygate::dns
