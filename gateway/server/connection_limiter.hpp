// Connection admission: a total limit and a per-client-address limit.
// A slot is a move-only token released on destruction, so every exit path
// of a session gives its slot back. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace relaygate::server {

class ConnectionLimiter {
  public:
    ConnectionLimiter(std::uint32_t max_total, std::uint32_t max_per_client)
        : max_total_(max_total), max_per_client_(max_per_client) {}

    class Slot {
      public:
        Slot() = default;
        Slot(Slot&& o) noexcept
            : owner_(std::exchange(o.owner_, nullptr)), key_(std::move(o.key_)) {}
        Slot& operator=(Slot&& o) noexcept {
            release();
            owner_ = std::exchange(o.owner_, nullptr);
            key_ = std::move(o.key_);
            return *this;
        }
        ~Slot() { release(); }
        explicit operator bool() const { return owner_ != nullptr; }

      private:
        friend class ConnectionLimiter;
        Slot(ConnectionLimiter* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
        void release() {
            if (owner_) owner_->release(key_);
            owner_ = nullptr;
        }
        ConnectionLimiter* owner_ = nullptr;
        std::string key_;
    };

    // An empty Slot means the connection must be refused (421).
    Slot acquire(const std::string& client) {
        std::lock_guard lock(mutex_);
        if (total_ >= max_total_) return {};
        auto& n = per_client_[client];
        if (n >= max_per_client_) {
            if (n == 0) per_client_.erase(client);
            return {};
        }
        ++n;
        ++total_;
        return Slot(this, client);
    }

    std::uint32_t active() const {
        std::lock_guard lock(mutex_);
        return total_;
    }

  private:
    void release(const std::string& client) {
        std::lock_guard lock(mutex_);
        --total_;
        auto it = per_client_.find(client);
        if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
    }

    const std::uint32_t max_total_;
    const std::uint32_t max_per_client_;
    mutable std::mutex mutex_;
    std::uint32_t total_ = 0;
    std::unordered_map<std::string, std::uint32_t> per_client_;
};

}  // namespace relaygate::server
