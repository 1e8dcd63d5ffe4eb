// resolv.conf through ldns_resolver_new_frm_file, used as a parser only (the
// ldns resolver itself blocks and is never used to query).
#include "gateway/dns/resolv_conf.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "gateway/dns/ldns.hpp"

namespace relaygate::dns {
namespace {

bool is_ip(const std::string& s, int af) {
    unsigned char buf[16];
    return inet_pton(af, s.c_str(), buf) == 1;
}

}  // namespace

Result<std::vector<std::string>, std::string> read_resolv_conf(const std::filesystem::path& path) {
    ldns_resolver* raw = nullptr;
    const ldns_status st = ldns_resolver_new_frm_file(&raw, path.c_str());
    ResolverPtr res(raw);
    if (st != LDNS_STATUS_OK || !res)
        return unexpected(path.string() + ": " + ldns_get_errorstr_by_id(st));
    std::vector<std::string> out;
    ldns_rdf** servers = ldns_resolver_nameservers(res.get());
    for (std::size_t i = 0; servers && i < ldns_resolver_nameserver_count(res.get()); ++i) {
        CStrPtr text(ldns_rdf2str(servers[i]));
        if (text) out.emplace_back(text.get());
    }
    if (out.empty()) return unexpected(path.string() + ": no nameserver");
    return out;
}

Result<Endpoint, std::string> parse_server(std::string_view server) {
    Endpoint ep;
    std::string_view port;
    if (!server.empty() && server.front() == '[') {
        const auto close = server.find(']');
        if (close == std::string_view::npos)
            return unexpected("\"" + std::string(server) + "\": missing ']'");
        ep.address = std::string(server.substr(1, close - 1));
        std::string_view rest = server.substr(close + 1);
        if (rest.empty() || rest.front() != ':' || rest.size() == 1)
            return unexpected("\"" + std::string(server) + "\": expected [address]:port");
        port = rest.substr(1);
        if (!is_ip(ep.address, AF_INET6))
            return unexpected("\"" + std::string(server) + "\": not an IPv6 address");
    } else if (server.find(':') != server.rfind(':')) {
        ep.address = std::string(server);  // bare IPv6: no port
        if (!is_ip(ep.address, AF_INET6))
            return unexpected("\"" + std::string(server) + "\": not an IP address");
    } else {
        const auto colon = server.find(':');
        ep.address = std::string(server.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = server.substr(colon + 1);
            if (port.empty()) return unexpected("\"" + std::string(server) + "\": empty port");
        }
        if (!is_ip(ep.address, AF_INET))
            return unexpected("\"" + std::string(server) + "\": not an IP address");
    }
    if (!port.empty()) {
        unsigned value = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
            return unexpected("\"" + std::string(server) + "\": bad port");
        ep.port = static_cast<std::uint16_t>(value);
    }
    return ep;
}

}  // namespace relaygate::dns
