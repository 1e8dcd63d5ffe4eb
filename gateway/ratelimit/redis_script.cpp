// The decide script and its arguments and reply. The script is the Lua
// twin of gcra.cpp, volume.cpp and MemoryStore::decide: the same double
// operations in the same order, so that a replica on Redis and one on its
// memory fallback decide alike (tests/ratelimit/test_redis_script.cpp).
#include "gateway/ratelimit/redis_script.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

#include "gateway/ratelimit/gcra.hpp"

namespace relaygate::ratelimit {

namespace {

// KEYS: the n check keys, then the volume key (when ARGV[2] == "1"), then
//   the m first-seen keys. Every key carries the tenant's hash tag, so one
//   Redis Cluster slot holds them all.
// ARGV: [1] n, [2] volume 0|1, [3] m, [4] now ("": the server's TIME),
//   [5] first-seen TTL s, [6..10] bucket seconds, slots, alpha, multiple,
//   min messages, [11] messages the volume observation counts, then per
//   check: interval, tolerance, cost, mode (0 ask,
//   1 consume, 2 lease, 3 refund: store.hpp's Check::Mode).
// Reply (all strings: Redis truncates Lua numbers to integers):
//   allowed 0|1, first denied index, retry_after ("inf": never),
//   leased 0|1, remaining per check, [spike 0|1, held 0|1, volume, baseline], then
//   one 0|1 per first-seen key (1: new).
//
// State: a cell is a string TAT (PX: until it holds no information, plus
// a margin); the volume state a hash (w bucket seconds, n slots, b bucket,
// c count, f fired, e logical expiry, s<i> baselines) with a TTL of
// (slots + 1) buckets; a first-seen mark a string holding its logical
// expiry. Expiry is decided on `now` (the logical times), the TTLs only
// collect garbage: so an explicit `now` (tests) decides as TIME would, and
// a mark is refreshed (SET, not SET NX) at every sighting, as in memory.
// TIME in a script that writes is allowed since Redis 5 (effects
// replication); replicate_commands() makes 3.2 and 4 do the same.
constexpr std::string_view kDecideScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local SLACK = 1e-3
local CAP = 9223372036854775808
local MARGIN_MS = 1000
local n = tonumber(ARGV[1])
local has_vol = ARGV[2] == '1'
local m = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[4])
end
local seen_ttl = tonumber(ARGV[5])
local bucket_s = tonumber(ARGV[6])
local slots = tonumber(ARGV[7])
local alpha = tonumber(ARGV[8])
local multiple = tonumber(ARGV[9])
local min_msgs = tonumber(ARGV[10])
local vol_count = tonumber(ARGV[11])
if not (n and m and now and #KEYS == n + (has_vol and 1 or 0) + m and #ARGV == 11 + 4 * n) then
  return redis.error_reply('relaygate: bad arguments')
end
local function finite(x) return x ~= nil and x == x and x > -math.huge and x < math.huge end
local function fmt(x) return string.format('%.17g', x) end
local function ttl_ms(seconds) return string.format('%.0f', math.ceil(seconds * 1000) + MARGIN_MS) end
-- Everything is validated before the first write: a script that fails
-- half-way keeps its writes.
if has_vol and not (finite(bucket_s) and bucket_s > 0 and slots and slots >= 1 and
                    slots <= 10080 and alpha and alpha >= 0 and alpha <= 1 and
                    finite(multiple) and multiple >= 0 and min_msgs and vol_count and
                    vol_count >= 1) then
  return redis.error_reply('relaygate: invalid spike settings')
end
if m > 0 and not (finite(seen_ttl) and seen_ttl > 0) then
  return redis.error_reply('relaygate: invalid first_seen_ttl')
end

-- 1. GCRA checks (gcra.cpp, MemoryStore::decide): refunds, then the
-- consume/ask checks all or nothing, then the leases if allowed.
local base, tat, iv, tol, cost, mode = {}, {}, {}, {}, {}, {}
local has_lease = false
for i = 1, n do
  local a = 11 + (i - 1) * 4
  iv[i], tol[i], cost[i] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  mode[i] = ARGV[a + 4]
  if not (finite(iv[i]) and iv[i] > 0 and finite(tol[i]) and tol[i] >= 0 and finite(cost[i]) and
          (mode[i] == '0' or mode[i] == '1' or mode[i] == '2' or mode[i] == '3')) then
    return redis.error_reply('relaygate: invalid check for ' .. KEYS[i])
  end
  if mode[i] == '2' then has_lease = true end
  local key = KEYS[i]
  if base[key] == nil then
    local v = redis.call('GET', key)
    local s = v and tonumber(v)
    if s and s > now then base[key] = s else base[key] = now end
  end
end
local start = {}
for key, b in pairs(base) do start[key] = b end
for i = 1, n do
  if mode[i] == '3' then
    local key = KEYS[i]
    local back = start[key] - iv[i] * cost[i]
    if back > now then start[key] = back else start[key] = now end
  end
end
for key, s in pairs(start) do tat[key] = s end
-- gcra_decide (gcra.cpp) for check i against a cell at TAT t: the TAT
-- after its cost, or nil and the seconds until it would fit.
local function decide(t, i)
  local inc = iv[i] * cost[i]
  local new_tat = t + inc
  local allow_at = new_tat - tol[i]
  local slack = SLACK * iv[i]
  if inc > tol[i] + slack then return nil, math.huge end
  if now < allow_at - slack then return nil, allow_at - now end
  return new_tat, 0
end
local allowed, denied, retry = true, 0, 0
for i = 1, n do
  if mode[i] == '0' or mode[i] == '1' then
    local key = KEYS[i]
    local new_tat, ra = decide(tat[key], i)
    if new_tat then
      if mode[i] == '1' then tat[key] = new_tat end
    else
      if allowed then denied = i - 1 end
      allowed = false
      if ra > retry then retry = ra end
    end
  end
end
local final = start
if allowed then final = tat end
local leased = false
if allowed and has_lease then
  local lt = {}
  for key, t in pairs(final) do lt[key] = t end
  local fits = true
  for i = 1, n do
    if mode[i] == '2' then
      local key = KEYS[i]
      local new_tat = decide(lt[key], i)
      if not new_tat then
        fits = false
        break
      end
      lt[key] = new_tat
    end
  end
  if fits then
    final = lt
    leased = true
  end
end
local reply = {allowed and '1' or '0', tostring(denied), retry == math.huge and 'inf' or fmt(retry),
               leased and '1' or '0'}
local written = {}
for i = 1, n do
  local key = KEYS[i]
  local f = final[key]
  local r = math.floor((now + tol[i] - f) / iv[i] + SLACK)
  if not (r > 0) then r = 0 end
  if r >= CAP then r = CAP end
  reply[#reply + 1] = string.format('%.0f', r)
  if f ~= base[key] and not written[key] then
    written[key] = true
    if f > now then
      redis.call('SET', key, fmt(f), 'PX', ttl_ms(f - now))
    else
      redis.call('DEL', key)
    end
  end
end

-- 2. Volume baseline and spike (volume.cpp), counted allowed or not.
if has_vol then
  local vkey = KEYS[n + 1]
  local bucket = math.floor(now / bucket_s)
  local life = (slots + 1) * bucket_s
  -- The common case, a message in the bucket of the last one: read the
  -- scalars and this bucket's baseline only, write the count back (the
  -- whole hash is read and written only when a bucket ends or the state
  -- is not valid). The decision is the same either way.
  local q = redis.call('HMGET', vkey, 'w', 'n', 'b', 'c', 'f', 'e', 's' .. (bucket % slots))
  local cur, count, fired, exp = tonumber(q[3]), tonumber(q[4]), tonumber(q[5]), tonumber(q[6])
  local spike, b
  if cur == bucket and count ~= nil and fired ~= nil and exp ~= nil and
     tonumber(q[1]) == bucket_s and tonumber(q[2]) == slots and now < exp then
    count = count + vol_count
    b = tonumber(q[7]) or -1
    spike = fired == 0 and count >= min_msgs and count > multiple * math.max(b, 1)
    if spike then fired = 1 end
    redis.call('HSET', vkey, 'c', string.format('%.0f', count), 'f', tostring(fired),
               'e', fmt(now + life))
  else
    local h = redis.call('HGETALL', vkey)
    local st = {}
    for j = 1, #h, 2 do st[h[j]] = h[j + 1] end
    cur, count, fired = tonumber(st.b), tonumber(st.c), tonumber(st.f)
    exp = tonumber(st.e)
    local bl, dirty = {}, {}
    if cur == nil or count == nil or fired == nil or exp == nil or tonumber(st.w) ~= bucket_s or
       tonumber(st.n) ~= slots or now >= exp then
      if next(st) ~= nil then redis.call('DEL', vkey) end
      cur, count, fired = bucket, 0, 0
      for s = 0, slots - 1 do bl[s] = -1; dirty[s] = true end
    else
      for s = 0, slots - 1 do bl[s] = tonumber(st['s' .. s]) or -1 end
    end
    local function fold(s, c)
      if bl[s] < 0 then bl[s] = c else bl[s] = alpha * c + (1 - alpha) * bl[s] end
      dirty[s] = true
    end
    if bucket > cur then
      fold(cur % slots, count)
      local skipped = bucket - cur - 1
      if skipped > slots then skipped = slots end
      for j = 1, skipped do fold((cur + j) % slots, 0) end
      cur, count, fired = bucket, 0, 0
    end
    count = count + vol_count
    b = bl[cur % slots]
    spike = fired == 0 and count >= min_msgs and count > multiple * math.max(b, 1)
    if spike then fired = 1 end
    local fields = {'w', fmt(bucket_s), 'n', string.format('%.0f', slots), 'b', fmt(cur),
                    'c', string.format('%.0f', count), 'f', tostring(fired), 'e', fmt(now + life)}
    for s = 0, slots - 1 do
      if dirty[s] then
        fields[#fields + 1] = 's' .. s
        fields[#fields + 1] = fmt(bl[s])
      end
    end
    redis.call('HSET', vkey, unpack(fields))
  end
  redis.call('PEXPIRE', vkey, ttl_ms(life))
  reply[#reply + 1] = spike and '1' or '0'
  reply[#reply + 1] = fired == 1 and '1' or '0'
  reply[#reply + 1] = string.format('%.0f', count)
  reply[#reply + 1] = fmt(b)
end

-- 3. First-seen marks: new when absent or past their logical expiry.
local first = n + (has_vol and 1 or 0)
for j = 1, m do
  local key = KEYS[first + j]
  local v = redis.call('GET', key)
  local e = v and tonumber(v)  -- GET gives false for a missing key
  reply[#reply + 1] = (not e or now >= e) and '1' or '0'
  redis.call('SET', key, fmt(now + seen_ttl), 'PX', ttl_ms(seen_ttl))
end
return reply
)lua";

constexpr std::string_view kClearHoldScript = R"lua(
if redis.call('HGET', KEYS[1], 'f') == '1' then
  redis.call('HSET', KEYS[1], 'f', '2')
  return 1
end
return 0
)lua";

// Shortest text that reads back as the same double (Lua's tonumber is
// strtod, correctly rounded): both stores then compute on equal inputs.
std::string number(double x) {
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
    return ec == std::errc{} ? std::string(buf, end) : std::string("nan");
}

std::string number(std::uint64_t x) {
    return std::to_string(x);
}

// The script's mode digits (see kDecideScript).
std::string mode_arg(Check::Mode m) {
    switch (m) {
        case Check::Mode::ask:
            return "0";
        case Check::Mode::consume:
            return "1";
        case Check::Mode::lease:
            return "2";
        case Check::Mode::refund:
            return "3";
    }
    return "1";
}

bool parse_flag(const std::string& s, bool& out) {
    if (s == "0" || s == "1") {
        out = s == "1";
        return true;
    }
    return false;
}

bool parse_u64(const std::string& s, std::uint64_t& out) {
    if (s.empty() || s.front() < '0' || s.front() > '9') return false;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

bool parse_double(const std::string& s, double& out) {
    if (s.empty()) return false;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size() && !std::isnan(out);
}

}  // namespace

std::string_view decide_script() {
    return kDecideScript;
}
std::string_view clear_hold_script() {
    return kClearHoldScript;
}

ScriptCall encode_decide(const Request& request, std::optional<double> now) {
    ScriptCall call;
    const bool has_volume = !request.volume_key.empty();
    call.keys.reserve(request.checks.size() + 1 + request.first_seen.size());
    for (const auto& c : request.checks)
        call.keys.push_back(c.key);
    if (has_volume) call.keys.push_back(request.volume_key);
    for (const auto& k : request.first_seen)
        call.keys.push_back(k);

    const auto& s = request.spike;
    call.args = {number(std::uint64_t{request.checks.size()}),
                 has_volume ? "1" : "0",
                 number(std::uint64_t{request.first_seen.size()}),
                 now ? number(*now) : std::string(),
                 number(request.first_seen_ttl),
                 number(s.bucket_seconds),
                 number(std::uint64_t{s.slots}),
                 number(s.alpha),
                 number(s.multiple),
                 number(s.min_messages),
                 number(request.volume_count)};
    for (const auto& c : request.checks) {
        call.args.push_back(number(c.interval));
        call.args.push_back(number(c.tolerance));
        call.args.push_back(number(c.cost));
        call.args.push_back(mode_arg(c.mode));
    }
    return call;
}

std::optional<Outcome> decode_decide(const Request& request,
                                     const std::vector<std::string>& reply) {
    const std::size_t n = request.checks.size();
    const bool has_volume = !request.volume_key.empty();
    const std::size_t m = request.first_seen.size();
    if (reply.size() != 4 + n + (has_volume ? 4 : 0) + m) return std::nullopt;

    Outcome out;
    std::size_t at = 0;
    std::uint64_t denied = 0;
    if (!parse_flag(reply[at++], out.allowed)) return std::nullopt;
    if (!parse_u64(reply[at++], denied)) return std::nullopt;
    const std::string& retry = reply[at++];
    if (retry == "inf") {
        out.retry_after = std::numeric_limits<double>::infinity();
    } else if (!parse_double(retry, out.retry_after) || !std::isfinite(out.retry_after)) {
        return std::nullopt;
    }
    if (out.retry_after < 0) return std::nullopt;
    if (out.allowed ? (denied != 0 || out.retry_after != 0) : denied >= n) return std::nullopt;
    out.denied = static_cast<std::size_t>(denied);
    if (!parse_flag(reply[at++], out.leased) || (out.leased && !out.allowed)) return std::nullopt;

    out.remaining.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        if (!parse_u64(reply[at++], out.remaining[i])) return std::nullopt;

    if (has_volume) {
        if (!parse_flag(reply[at++], out.spike)) return std::nullopt;
        if (!parse_flag(reply[at++], out.held)) return std::nullopt;
        if (!parse_u64(reply[at++], out.volume) || out.volume == 0) return std::nullopt;
        if (!parse_double(reply[at++], out.baseline) || !std::isfinite(out.baseline))
            return std::nullopt;
        if (out.spike && !out.held) return std::nullopt;
    }

    out.first_seen_new.resize(m);
    for (std::size_t j = 0; j < m; ++j) {
        bool fresh = false;
        if (!parse_flag(reply[at++], fresh)) return std::nullopt;
        out.first_seen_new[j] = fresh;
    }
    return out;
}

ScriptCall encode_clear_hold(const std::string& volume_key) {
    ScriptCall call;
    call.keys.push_back(volume_key);
    return call;
}

}  // namespace relaygate::ratelimit
