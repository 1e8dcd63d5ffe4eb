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
net::awaitable<void> run_client_session(net::tcp::socket socket, Server::Shared& shared,
                                        std::size_t listener, UpstreamPool& pool);

}  // namespace relaygate::server
