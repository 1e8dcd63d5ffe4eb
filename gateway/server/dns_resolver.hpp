// DnsResolver: asynchronous stub resolver for the facts policy needs (TXT
// for SPF/DKIM/DMARC, A/AAAA, PTR). It sends the bytes gateway/dns builds,
// checks replies with gateway/dns, follows CNAMEs and caches answers. It
// never throws on the data path and never decides anything about mail.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/dns/cache.hpp"
#include "gateway/dns/packet.hpp"
#include "gateway/net/asio.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

struct DnsOptions {
    std::vector<std::string> servers;   // "ip", "ip:port", "[v6]:port"; empty = /etc/resolv.conf
    double timeout_seconds = 2.0;       // per attempt
    int attempts = 2;                   // rounds over all servers
    std::size_t cache_entries = 10000;  // 0 disables the cache
};

class DnsResolver {
  public:
    // Throws std::runtime_error at startup on bad options (bad server, no
    // server in resolv.conf, timeout <= 0, attempts < 1).
    DnsResolver(net::asio::any_io_executor ex, DnsOptions options, metrics::Metrics* metrics);
    DnsResolver(const DnsResolver&) = delete;
    DnsResolver& operator=(const DnsResolver&) = delete;

    // Never throws; thread-safe. Cache first; else UDP to each server in
    // turn (fresh socket on a random source port, fresh random id, reply
    // must match id, question and server address), TCP when truncated,
    // CNAMEs followed across queries (at most dns::kMaxCnameHops). Failures
    // come back as Status::servfail, timeout or error with a detail.
    net::awaitable<dns::Answer> resolve(std::string name, dns::RrType type);

  private:
    struct Exchange;

    net::awaitable<dns::Answer> query_servers(std::string name, dns::RrType type);
    net::awaitable<Exchange> query_udp(net::asio::ip::udp::endpoint server, dns::Query q);
    net::awaitable<Exchange> query_tcp(net::asio::ip::udp::endpoint server, dns::Query q);
    bool cache_find(const std::string& name, dns::RrType type, dns::Answer& out);
    void cache_insert(const std::string& name, dns::RrType type, const dns::Answer& a);

    net::asio::any_io_executor ex_;
    DnsOptions options_;
    metrics::Metrics* metrics_;
    std::vector<net::asio::ip::udp::endpoint> servers_;
    std::mutex cache_mutex_;
    dns::Cache cache_;
};

}  // namespace relaygate::server
