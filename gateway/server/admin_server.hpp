// Admin HTTP endpoint (Boost.Beast on the gateway's io_context):
// /metrics (Prometheus text format), /livez, /readyz, and one operator
// action, POST /limits/clear-hold?tenant=ID (ends a tenant's spike hold),
// accepted only from a loopback peer. It never touches sessions or policy
// beyond what Health and the callbacks expose.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "gateway/net/asio.hpp"
#include "gateway/server/descriptors.hpp"
#include "gateway/server/health.hpp"

namespace relaygate::metrics {
class Metrics;
}
namespace relaygate::ratelimit {
class Store;
}

namespace relaygate::server {

class AdminServer {
  public:
    // `status` adds fields to the /readyz body (policy hash etc.).
    using Status = std::function<void(nlohmann::json&)>;
    AdminServer(net::asio::io_context& io, net::tcp::endpoint endpoint,
                const metrics::Metrics& metrics, const Health& health, Status status,
                ratelimit::Store* limits = nullptr);

    net::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    void start();
    void stop();

  private:
    net::awaitable<void> accept_loop();
    net::awaitable<net::tcp::socket> accept_with_spare(net::error_code& ec);
    net::awaitable<void> serve(net::tcp::socket socket);
    net::awaitable<void> clear_hold(net::beast::tcp_stream& stream, const std::string& target,
                                    net::http::response<net::http::string_body>& res);

    net::tcp::acceptor acceptor_;
    const metrics::Metrics& metrics_;
    const Health& health_;
    Status status_;
    ratelimit::Store* limits_;
    SpareDescriptor spare_;  // lets one probe in while descriptors are exhausted
};

}  // namespace relaygate::server
