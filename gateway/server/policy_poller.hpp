// policy_url: keeps the policy in step with an HTTPS source. At start it
// serves the last good copy (policy_fetch.cache_file, its signature checked
// again) or, without one, fetches once and refuses to start when that
// fails. Then it polls every poll_seconds with If-None-Match; a failure
// keeps the current policy and backs off exponentially. A fetched policy
// goes through the same load-lint-swap as a file (PolicyHolder) on the
// policy loader thread, and only a policy that loaded is written to the
// cache, with its ETag and signature.
#pragma once

#include <memory>
#include <optional>
#include <random>
#include <string>

#include "gateway/common/file.hpp"
#include "gateway/common/result.hpp"
#include "gateway/config/config.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/server/policy_fetch.hpp"

namespace relaygate::metrics {
class Metrics;
}

namespace relaygate::server {

class PolicyHolder;

// What policy_url and policy_fetch configure, checked: the URLs parsed, the
// CA file and the public key loaded (`check --config` runs it too).
struct PolicyUrlSetup {
    HttpsUrl url, signature_url;
    std::shared_ptr<net::asio::ssl::context> tls;
    std::optional<SignatureKey> key;
};
Result<PolicyUrlSetup, std::string> policy_url_setup(const config::Config& config);

class PolicyPoller {
  public:
    PolicyPoller(const config::Config& config, PolicyUrlSetup setup, PolicyHolder& holder,
                 metrics::Metrics& metrics, net::asio::thread_pool& loader);
    // Before the listeners open (blocks): the cached copy, else one fetch.
    // Returns whether a policy is loaded.
    bool start_up();
    // Polls on `ex` until stop().
    void start(net::asio::any_io_executor ex);
    // SIGHUP: fetch now instead of at the end of the current wait.
    void fetch_now();
    void stop();

  private:
    net::awaitable<void> loop();
    // One fetch: 304, or 200 + signature + load + cache; false on failure.
    net::awaitable<bool> fetch_once();
    net::awaitable<bool> fail(std::string_view kind, const std::string& error);
    bool load_cache();
    bool load_cache(int fd);
    // Loads a fetched, verified body from the cache's temporary file and
    // makes it the cache once it loaded.
    bool load_fetched(StagedWriter& body, const std::string& signature, const std::string& etag);

    const config::PolicyFetch& options_;
    const std::string url_text_;
    PolicyHolder& holder_;
    metrics::Metrics& metrics_;
    net::asio::thread_pool& loader_;
    const PolicyUrlSetup setup_;
    std::string etag_;  // of the loaded policy; sent as If-None-Match
    // SHA-256 of the loaded policy's bytes: a server that sends no ETag
    // (or a new one for the same bytes) does not cost a reload per poll.
    std::string digest_;
    unsigned failures_ = 0;
    std::optional<net::asio::steady_timer> timer_;
    bool stopped_ = false;
    std::minstd_rand jitter_{std::random_device{}()};
};

}  // namespace relaygate::server
