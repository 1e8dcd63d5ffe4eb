// AuthThrottle implementation: two LRU-bounded leaky-bucket tables under
// one mutex (AUTH is rare next to mail; the lock is held for a hash lookup).
#include "gateway/session/auth_throttle.hpp"

#include <algorithm>

#include "policy/engine/ip_address.hpp"

namespace relaygate::session {

std::string_view to_string(AuthThrottle::Scope s) {
    switch (s) {
        case AuthThrottle::Scope::none:
            return "none";
        case AuthThrottle::Scope::client:
            return "client";
        case AuthThrottle::Scope::user:
            return "user";
    }
    return "none";
}

AuthThrottle::Table::Table(std::uint32_t limit, double window, std::size_t max_entries)
    : limit_(std::max<std::uint32_t>(limit, 1)),
      rate_(limit_ / std::max(window, 1.0)),
      max_entries_(std::max<std::size_t>(max_entries, 1)) {}

double AuthThrottle::Table::drained(const Entry& e, double now) const {
    return std::max(0.0, e.level - std::max(0.0, now - e.updated) * rate_);
}

bool AuthThrottle::Table::over(const std::string& key, double now) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    // Compare with a little slack so that float drift never lets through
    // the attempt that reaches the limit exactly.
    return drained(it->second, now) > limit_ - 1 + 1e-9;
}

void AuthThrottle::Table::add(const std::string& key, double now) {
    auto it = map_.find(key);
    if (it == map_.end()) {
        if (map_.size() >= max_entries_) {
            map_.erase(lru_.back());
            lru_.pop_back();
        }
        lru_.push_front(key);
        it = map_.emplace(key, Entry{0, now, lru_.begin()}).first;
    } else {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
    }
    Entry& e = it->second;
    e.level = std::min(drained(e, now) + 1, limit_ + 1);  // capped: no debt beyond one window
    e.updated = now;
}

void AuthThrottle::Table::refund(const std::string& key, double now) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    it->second.level = std::max(0.0, drained(it->second, now) - 1);
    it->second.updated = now;
}

AuthThrottle::AuthThrottle(AuthThrottleLimits limits)
    : clients_(limits.client_failures, limits.window_seconds, limits.entries),
      users_(limits.user_failures, limits.window_seconds, limits.entries) {}

std::string AuthThrottle::client_key(std::string_view address) {
    auto ip = policy::IpAddress::parse(address);
    if (!ip) return std::string(address);
    return ip->is_v4() ? ip->to_string() : ip->masked(64).to_string() + "/64";
}

AuthThrottle::Scope AuthThrottle::over(const std::string& client, const std::string& user,
                                       double now) {
    if (clients_.over(client, now)) return Scope::client;
    if (users_.over(user, now)) return Scope::user;
    return Scope::none;
}

AuthThrottle::Scope AuthThrottle::check(std::string_view client_address, std::string_view user,
                                        double now) {
    const std::string client = client_key(client_address);
    std::lock_guard lock(mutex_);
    return over(client, std::string(user), now);
}

AuthThrottle::Scope AuthThrottle::admit(std::string_view client_address, std::string_view user,
                                        double now) {
    const std::string client = client_key(client_address);
    const std::string name(user);
    std::lock_guard lock(mutex_);
    const Scope scope = over(client, name, now);
    if (scope == Scope::none) {
        clients_.add(client, now);
        users_.add(name, now);
    }
    return scope;
}

void AuthThrottle::succeeded(std::string_view client_address, std::string_view user, double now) {
    const std::string client = client_key(client_address);
    std::lock_guard lock(mutex_);
    clients_.refund(client, now);
    users_.refund(std::string(user), now);
}

std::size_t AuthThrottle::size() const {
    std::lock_guard lock(mutex_);
    return clients_.size() + users_.size();
}

}  // namespace relaygate::session
