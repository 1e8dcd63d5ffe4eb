// AcceptBackoff implementation.
#include "gateway/server/accept_backoff.hpp"

#include <algorithm>
#include <cerrno>

#include "gateway/server/log.hpp"

namespace relaygate::server {

using namespace net;

bool AcceptBackoff::out_of_resources(const error_code& ec) {
    if (ec.category() != boost::system::system_category()) return false;
    switch (ec.value()) {
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            return true;
        default:
            return false;
    }
}

std::chrono::milliseconds AcceptBackoff::on_error(const error_code& ec) {
    using std::chrono::milliseconds;
    const bool resources = out_of_resources(ec);
    if (metrics_) metrics_->accept_error(resources ? "descriptors" : "other");
    if (resources)
        pause_ = std::clamp(pause_ * 2, milliseconds(10), milliseconds(1000));
    else
        pause_ = milliseconds(0);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log_ >= std::chrono::seconds(10)) {
        log_warn("accept_failed", {{"listener", listener_},
                                   {"error", ec.message()},
                                   {"paused_ms", pause_.count()},
                                   {"suppressed", suppressed_}});
        last_log_ = now;
        suppressed_ = 0;
    } else {
        ++suppressed_;
    }
    return pause_;
}

awaitable<void> accept_pause(tcp::acceptor& acceptor, std::chrono::milliseconds pause) {
    if (pause.count() == 0) co_return;
    asio::steady_timer timer(acceptor.get_executor(), pause);
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
}

}  // namespace relaygate::server
