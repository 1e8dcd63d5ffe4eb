// The only header that includes Boost.Asio and Beast. Sans-I/O code
// (gateway/smtp, gateway/message, gateway/session, policy) must never include it.
// <utility> first: Boost 1.74's Asio under -std=c++20 needs std::exchange
// declared before its own headers (see STYLE.md, "Traps").
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

namespace relaygate::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

template <class T = void>
using awaitable = asio::awaitable<T>;
using asio::use_awaitable;

}  // namespace relaygate::net
