// ClientSession: the coroutine that runs one SessionMachine over a client
// socket and an UpstreamClient. It only moves bytes and enforces deadlines;
// every protocol decision is the machine's.
#pragma once

#include "gateway/net/asio.hpp"
#include "gateway/server/server.hpp"

namespace relaygate::server {

class UpstreamPool;

// `listener` indexes Server::Shared::listeners; `pool` is the upstream
// connection pool of the thread the socket belongs to.
// An anomaly signal: its metric (with the tenant label only when
// `tenant_label`) and its audit line (`session` empty: found outside a
// session, by the batch store's flush).
void record_anomaly(metrics::Metrics& metrics, bool tenant_label, std::string_view session,
                    std::string_view kind, std::string_view tenant, std::string_view detail);

net::awaitable<void> run_client_session(net::tcp::socket socket, Server::Shared& shared,
                                        std::size_t listener, UpstreamPool& pool);

}  // namespace relaygate::server
