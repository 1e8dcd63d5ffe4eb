// The Redis side of the volume-control store: one Lua script per decision
// (EVALSHA), so that several gateway replicas never race between a read
// and a write. It implements exactly the decision MemoryStore implements
// (gcra.hpp, volume.hpp); tests/ratelimit/test_redis_script.cpp runs both
// on the same random sequences against a real redis-server. Pure: builds
// arguments and reads replies; gateway/server/redis_store does the I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/ratelimit/store.hpp"

namespace relaygate::ratelimit {

struct ScriptCall {
    std::vector<std::string> keys;  // KEYS: all carry the same hash tag
    std::vector<std::string> args;  // ARGV
};

// The decision script. Its clock is the Redis server's TIME (one clock for
// every replica), unless `now` is given (tests only).
std::string_view decide_script();
ScriptCall encode_decide(const Request& request, std::optional<double> now = std::nullopt);
// The script's reply, each element as text (integers in decimal, nil as
// ""); nullopt when it is not the shape the script returns.
std::optional<Outcome> decode_decide(const Request& request, const std::vector<std::string>& reply);

// Clears a tenant's spike hold; replies 1 when a hold was cleared, else 0.
std::string_view clear_hold_script();
ScriptCall encode_clear_hold(const std::string& volume_key);

}  // namespace relaygate::ratelimit
