// Awaiting an API that answers through a callback (the volume-control
// stores): the coroutine resumes on its own executor (its thread) with the
// value, whichever thread the callback runs on.
#pragma once

#include <memory>
#include <utility>

#include "gateway/net/asio.hpp"

namespace relaygate::server {

// start(done) must call done(T) exactly once, now or later.
template <class T, class Start>
net::awaitable<T> await_callback(Start start) {
    auto initiate = [start = std::move(start)](auto handler) mutable {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([h](T value) {
            auto home = net::asio::get_associated_executor(*h);
            net::asio::dispatch(home, [h, v = std::move(value)]() mutable { (*h)(std::move(v)); });
        });
    };
    co_return co_await net::asio::async_initiate<decltype(net::use_awaitable), void(T)>(
        initiate, net::use_awaitable);
}

}  // namespace relaygate::server
