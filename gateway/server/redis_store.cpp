// RedisStore implementation: builds the script call (redis_script), sends
// it (RedisClient), reads the reply back (decode_decide), and on any
// failure falls back as configured. Every call is timed and every failure
// counted by kind.
#include "gateway/server/redis_store.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "gateway/common/ascii.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/ratelimit/memory_store.hpp"
#include "gateway/ratelimit/redis_script.hpp"

namespace relaygate::server {

using ratelimit::Outcome;
using ratelimit::Request;
using Clock = std::chrono::steady_clock;

namespace {

// EVALSHA names a script by the SHA-1 of its text, lower-case hex.
std::string sha1_hex(std::string_view text) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_Digest(text.data(), text.size(), md, &n, EVP_sha1(), nullptr) != 1)
        throw std::runtime_error("SHA-1 unavailable");
    return ascii::hex(md, n);
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The script's reply as decode_decide reads it: a flat array, integers in
// decimal, nil as "". Anything else (nested arrays) is not our script.
bool flatten(const resp::Value& v, std::vector<std::string>& out) {
    if (v.type != resp::Type::array) return false;
    out.reserve(v.elements.size());
    for (const auto& e : v.elements) {
        switch (e.type) {
            case resp::Type::integer:
                out.push_back(std::to_string(e.integer));
                break;
            case resp::Type::nil:
                out.emplace_back();
                break;
            case resp::Type::string:
            case resp::Type::status:
                out.push_back(e.text);
                break;
            default:
                return false;
        }
    }
    return true;
}

std::vector<std::string> script_argv(bool load, std::string_view script, const std::string& sha,
                                     const ratelimit::ScriptCall& call) {
    std::vector<std::string> argv;
    argv.reserve(3 + call.keys.size() + call.args.size());
    argv.emplace_back(load ? "EVAL" : "EVALSHA");
    argv.emplace_back(load ? std::string(script) : sha);
    argv.push_back(std::to_string(call.keys.size()));
    argv.insert(argv.end(), call.keys.begin(), call.keys.end());
    argv.insert(argv.end(), call.args.begin(), call.args.end());
    return argv;
}

}  // namespace

Result<RedisStoreOptions, std::string> redis_store_options(const config::RateLimit& rl) {
    RedisStoreOptions o;
    o.client.address = rl.address;
    o.client.username = rl.username;
    if (!rl.password_file.empty()) {
        auto pw = read_password_file(rl.password_file);
        if (!pw) return unexpected("rate_limit.password_file: " + pw.error());
        o.client.password = std::move(*pw);
    }
    o.client.tls = rl.tls.enabled;
    o.client.ca_file = rl.tls.ca_file;
    o.client.verify_name = rl.tls.verify_name;
    o.client.cert_file = rl.tls.cert_file;
    o.client.key_file = rl.tls.key_file;
    o.client.connect_timeout = rl.connect_timeout;
    o.client.command_timeout = rl.timeout;
    o.key_prefix = rl.key_prefix;
    o.on_error = rl.on_error;
    o.replicas = rl.replicas;
    o.fallback_entries = rl.memory_entries;
    return o;
}

struct RedisStore::Impl : std::enable_shared_from_this<RedisStore::Impl> {
    struct Decide {
        Request request;
        ratelimit::ScriptCall script;  // keys prefixed
        std::function<void(Outcome)> done;
        Clock::time_point start = Clock::now();
    };
    struct Clear {
        ratelimit::ScriptCall script;
        std::function<void(bool)> done;
        Clock::time_point start = Clock::now();
    };

    Impl(RedisStoreOptions o, metrics::Metrics& m)
        : options(std::move(o)),
          metrics(m),
          decide_sha(sha1_hex(ratelimit::decide_script())),
          clear_sha(sha1_hex(ratelimit::clear_hold_script())),
          fallback(
              [] { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); },
              options.fallback_entries) {}

    RedisStoreOptions options;
    metrics::Metrics& metrics;
    std::string decide_sha;
    std::string clear_sha;
    ratelimit::MemoryStore fallback;
    struct Connection {
        net::asio::io_context::executor_type executor;
        std::shared_ptr<RedisClient> client;
    };
    std::vector<Connection> connections;
    std::atomic<std::size_t> next{0};  // for calls from a thread of none
    std::mutex up_mutex;
    std::size_t up = 0;  // connections ready

    RedisClient& client() {
        for (auto& c : connections)
            if (c.executor.running_in_this_thread()) return *c.client;
        return *connections[next.fetch_add(1, std::memory_order_relaxed) % connections.size()]
                    .client;
    }

    // The gauge says whether every connection is ready.
    void on_state(bool is_up) {
        std::lock_guard lock(up_mutex);
        up = is_up ? up + 1 : up - 1;
        metrics.rate_limit_store_up(up == connections.size());
    }

    void prefix(ratelimit::ScriptCall& call) const {
        for (auto& k : call.keys)
            k.insert(0, options.key_prefix);
    }

    void send(std::shared_ptr<Decide> d, bool load) {
        auto argv = script_argv(load, ratelimit::decide_script(), decide_sha, d->script);
        auto on_reply = [self = shared_from_this(), d, load](Result<resp::Value, std::string> r) {
            if (!r) return self->failed(*d, redis_error_kind(r.error()), r.error());
            const resp::Value& v = *r;
            if (v.is_error()) {
                // A restarted or failed-over Redis has lost its script
                // cache: EVAL sends the text, which also loads it.
                if (!load && v.text.starts_with("NOSCRIPT")) return self->send(d, true);
                return self->failed(*d, "reply", "Redis replied: " + v.text);
            }
            std::vector<std::string> elements;
            std::optional<Outcome> out;
            if (flatten(v, elements)) out = ratelimit::decode_decide(d->request, elements);
            if (!out) return self->failed(*d, "protocol", "the decide script's reply is malformed");
            self->metrics.rate_limit_store_latency("redis", seconds_since(d->start));
            d->done(std::move(*out));
        };
        client().call(std::move(argv), std::move(on_reply));
    }

    void failed(Decide& d, std::string_view kind, std::string error) {
        metrics.rate_limit_store_error(kind);
        metrics.rate_limit_store_latency("redis", seconds_since(d.start));
        Outcome out;
        if (options.on_error == config::StoreFailure::fail_open) {
            out = fallback.decide(RedisStore::divided(d.request, options.replicas));
            out.fallback = true;
            out.first_seen_new.assign(d.request.first_seen.size(), false);
            metrics.rate_limit_fallback();
        } else {
            out.status = Outcome::Status::store_error;
            out.allowed = false;  // a caller that ignores status still refuses
            out.error = std::move(error);
        }
        d.done(std::move(out));
    }

    void send(std::shared_ptr<Clear> c, bool load) {
        auto argv = script_argv(load, ratelimit::clear_hold_script(), clear_sha, c->script);
        auto on_reply = [self = shared_from_this(), c, load](Result<resp::Value, std::string> r) {
            std::string_view kind;
            if (!r) {
                kind = redis_error_kind(r.error());
            } else if (r->is_error()) {
                if (!load && r->text.starts_with("NOSCRIPT")) return self->send(c, true);
                kind = "reply";
            } else if (r->type != resp::Type::integer) {
                kind = "protocol";
            }
            self->metrics.rate_limit_store_latency("redis", seconds_since(c->start));
            if (!kind.empty()) {
                self->metrics.rate_limit_store_error(kind);
                return c->done(false);
            }
            c->done(r->integer == 1);
        };
        client().call(std::move(argv), std::move(on_reply));
    }
};

RedisStore::RedisStore(std::vector<net::asio::io_context::executor_type> executors,
                       RedisStoreOptions options, metrics::Metrics& metrics) {
    if (options.key_prefix.find_first_of("{}") != std::string::npos)
        throw std::runtime_error("rate_limit.key_prefix must not contain '{' or '}'");
    if (executors.empty()) throw std::runtime_error("RedisStore needs an executor");
    if (options.replicas == 0) options.replicas = 1;
    metrics.rate_limit_store_up(false);
    impl_ = std::make_shared<Impl>(std::move(options), metrics);
    // Weak: the clients live in impl_ and may report after ~RedisStore.
    impl_->options.client.on_state = [weak = std::weak_ptr<Impl>(impl_)](bool up) {
        if (auto impl = weak.lock()) impl->on_state(up);
    };
    for (const auto& ex : executors)
        impl_->connections.push_back({ex, RedisClient::create(ex, impl_->options.client)});
}

RedisStore::~RedisStore() {
    for (auto& c : impl_->connections)
        c.client->close();
}

bool RedisStore::connected() const {
    return std::all_of(impl_->connections.begin(), impl_->connections.end(),
                       [](const auto& c) { return c.client->connected(); });
}

void RedisStore::submit(Request request, std::function<void(Outcome)> done) {
    auto d = std::make_shared<Impl::Decide>();
    d->script = ratelimit::encode_decide(request);
    impl_->prefix(d->script);
    d->request = std::move(request);
    d->done = std::move(done);
    impl_->send(std::move(d), false);
}

void RedisStore::clear_hold(std::string volume_key, std::function<void(bool ok)> done) {
    auto c = std::make_shared<Impl::Clear>();
    c->script = ratelimit::encode_clear_hold(volume_key);
    impl_->prefix(c->script);
    c->done = std::move(done);
    impl_->send(std::move(c), false);
}

Request RedisStore::divided(const Request& request, std::uint32_t replicas) {
    Request out;
    out.checks = request.checks;
    const double r = replicas == 0 ? 1.0 : double(replicas);
    for (auto& c : out.checks) {
        c.interval *= r;
        c.tolerance = std::max(c.tolerance, c.interval);
        // No lease from the fallback (a refund of it could reach Redis
        // later), and a refund of a Redis lease is not the fallback's to
        // give: both become questions of nothing, in place, so that the
        // outcome's indices still match the request's.
        if (c.mode == ratelimit::Check::Mode::lease || c.mode == ratelimit::Check::Mode::refund) {
            c.mode = ratelimit::Check::Mode::ask;
            c.cost = 0;
        }
    }
    return out;  // volume_key and first_seen left empty on purpose
}

}  // namespace relaygate::server
