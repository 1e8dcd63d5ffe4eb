// AuthThrottle: failed SMTP AUTH attempts counted across connections, per
// client address and per user name, so a password list cannot be run
// against the gateway (1,000 guesses from one address take hours, not
// minutes). Pure and thread-safe: the caller passes the clock; memory is
// bounded by a fixed number of entries per table, least recently used out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace relaygate::session {

struct AuthThrottleLimits {
    std::uint32_t client_failures = 10;  // per client address (IPv6: per /64)
    std::uint32_t user_failures = 30;    // per user name, from any address
    double window_seconds = 600;         // a full count drains in this time
    std::size_t entries = 100000;        // per table
};

class AuthThrottle {
  public:
    enum class Scope : std::uint8_t { none, client, user };

    explicit AuthThrottle(AuthThrottleLimits limits);

    // Is the client or the user over its limit? (A query: counts nothing.)
    Scope check(std::string_view client_address, std::string_view user, double now);

    // Before a password is checked: check and, if admitted, count the
    // attempt as a failure at once, under one lock, so that 50 guesses
    // arriving together cannot all pass before the first one fails. A
    // successful attempt gives its count back with succeeded().
    Scope admit(std::string_view client_address, std::string_view user, double now);
    void succeeded(std::string_view client_address, std::string_view user, double now);
    // Entries held (both tables), for the metric and tests.
    std::size_t size() const;

    // The key a client address is counted under: the address itself, or its
    // /64 for IPv6 (one subscriber usually holds a whole /64).
    static std::string client_key(std::string_view address);

  private:
    // A leaky bucket per key: each failure adds 1, the level drains at
    // limit/window per second; at `limit` the key is throttled.
    class Table {
      public:
        Table(std::uint32_t limit, double window, std::size_t max_entries);
        bool over(const std::string& key, double now);
        void add(const std::string& key, double now);
        void refund(const std::string& key, double now);
        std::size_t size() const { return map_.size(); }

      private:
        struct Entry {
            double level = 0;
            double updated = 0;
            std::list<std::string>::iterator lru;
        };
        double drained(const Entry& e, double now) const;

        double limit_;
        double rate_;  // level drained per second
        std::size_t max_entries_;
        std::unordered_map<std::string, Entry> map_;
        std::list<std::string> lru_;  // front = most recently used
    };

    Scope over(const std::string& client, const std::string& user, double now);  // under mutex_

    mutable std::mutex mutex_;
    Table clients_;
    Table users_;
};

std::string_view to_string(AuthThrottle::Scope s);

}  // namespace relaygate::session
