// The gateway's runtime configuration (relaygate run --config FILE): parsed
// once into an immutable struct; numeric defaults and bounds are bounds.hpp.
// Pure: reads JSON text, never sockets; unknown keys are errors (typos in an
// operator's file must not silently fall back to defaults).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gateway/common/result.hpp"
#include "gateway/config/bounds.hpp"
#include "policy/engine/policy_source.hpp"

namespace relaygate::config {

// off: never; offered: advertised; required: 530 5.7.0 before MAIL.
enum class StartTls { off, offered, required };
// PROXY protocol header required on the listener (HAProxy spec), or off.
enum class ProxyProtocol { off, v1, v2, any };
// When SMTP AUTH is offered: never, only over TLS (RFC 4954 4), or always
// (for loopback tests only: passwords in clear text).
enum class Auth { off, tls_only, always };

struct Listener {
    std::string address = "127.0.0.1";
    std::uint16_t port = default_of("listeners[].port");
    StartTls starttls = StartTls::off;
    bool implicit_tls = false;  // TLS from the first byte (port 465 style, RFC 8314)
    bool request_client_certificate = true;
    Auth auth = Auth::tls_only;
    ProxyProtocol proxy_protocol = ProxyProtocol::off;
    std::vector<std::string> trusted_proxies;  // CIDRs allowed to send the header
    std::chrono::seconds proxy_timeout{default_of("listeners[].proxy_timeout_seconds")};
    // One listening socket per thread (SO_REUSEPORT): a connection is served
    // by the thread whose socket the kernel gave it to, with no hand-off.
    bool reuse_port = true;
};

struct Tls {
    std::string cert_file;  // PEM chain, reloaded on SIGHUP
    std::string key_file;
};

// STARTTLS towards the relay.
enum class UpstreamTls { off, opportunistic, required };

struct Upstream {
    std::string host = "127.0.0.1";
    std::uint16_t port = default_of("upstream.port");
    bool xclient = true;  // use XCLIENT when offered
    // RFC 2920: MAIL and the client's first RCPT in one write, when offered.
    bool pipelining = true;
    // With pipelining: the client's MAIL is answered once the policy passed
    // and goes to the relay with its first RCPT (see the README).
    bool defer_mail = true;
    // RFC 3030: a message whose whole content is here by its end goes to a
    // relay that offers CHUNKING as one BDAT LAST (see the README).
    bool chunking = true;
    std::chrono::seconds connect_timeout{default_of("upstream.connect_timeout_seconds")};
    std::chrono::seconds reply_timeout{default_of("upstream.reply_timeout_seconds")};
    // RFC 5321 4.5.3.2.6: 10 min. Shorter risks duplicates (RFC 1047): the
    // relay may have queued a message whose reply we stopped waiting for.
    std::chrono::seconds final_reply_timeout{default_of("upstream.final_reply_timeout_seconds")};
    // RFC 5321 4.5.3.2.5: 3 minutes to send each block of message data.
    std::chrono::seconds data_block_timeout{default_of("upstream.data_block_seconds")};
    // The polite QUIT at the end; its 221 is never waited for.
    std::chrono::seconds quit_timeout{default_of("upstream.quit_seconds")};
    // An upstream connection idle between transactions is closed after
    // this (it costs a descriptor and memory on both sides).
    std::chrono::seconds idle_timeout{default_of("upstream.idle_timeout_seconds")};
    // Idle connections kept after a client session for the next one (all
    // threads together; 0: every session opens its own). Reused only after
    // RSET and, with XCLIENT, announcing the new client.
    std::uint32_t pool_size = default_of("upstream.pool_size");
    UpstreamTls starttls = UpstreamTls::off;
    std::string ca_file;      // verify the relay's certificate against it when set
    std::string verify_name;  // and its name (defaults to host when ca_file is set)
};

struct Admin {
    bool enabled = true;
    std::string address = "127.0.0.1";
    std::uint16_t port = default_of("admin.port");
};

struct Limits {
    std::uint64_t max_message_bytes = default_of("limits.max_message_bytes");  // SIZE (RFC 1870)
    std::uint32_t max_recipients = default_of("limits.max_recipients");
    std::uint32_t max_command_line = default_of("limits.max_command_line");
    std::uint32_t max_text_line = default_of("limits.max_text_line");
    std::uint32_t max_header_bytes = default_of("limits.max_header_bytes");
    std::uint32_t max_errors = default_of("limits.max_errors");  // then 421 and close
    std::uint32_t max_connections = default_of("limits.max_connections");
    std::uint32_t max_connections_per_client = default_of("limits.max_connections_per_client");
    // then 421: reconnect
    std::uint32_t max_transactions_per_session = default_of("limits.max_transactions_per_session");
};

struct Timeouts {
    std::chrono::seconds command{default_of("timeouts.command_seconds")};  // RFC 5321 4.5.3.2.7
    std::chrono::seconds data_block{
        default_of("timeouts.data_block_seconds")};  // RFC 5321 4.5.3.2.5
    // slowloris: grace before the rate applies
    std::chrono::seconds data_grace{default_of("timeouts.data_grace_seconds")};
    // bytes per second, averaged over DATA
    std::uint32_t min_data_rate = default_of("timeouts.min_data_rate_bytes_per_second");
    // A session's whole life: NOOPs cannot keep a slot (and an old policy
    // snapshot's connection state) forever.
    std::chrono::seconds session{default_of("timeouts.session_seconds")};
};

// Failed SMTP AUTH attempts, counted across connections (gateway/session/
// auth_throttle.hpp): per client address (IPv6: /64) and per user name.
struct AuthThrottle {
    std::uint32_t client_failures = default_of("auth_throttle.client_failures");
    std::uint32_t user_failures = default_of("auth_throttle.user_failures");
    // a full count drains in this time
    std::chrono::seconds window{default_of("auth_throttle.window_seconds")};
    // tracked keys per table (memory bound)
    std::uint32_t entries = default_of("auth_throttle.entries");
    // before a 535 (Postfix: 1 s)
    std::chrono::milliseconds failure_delay{default_of("auth_throttle.failure_delay_ms")};
    // password checks queued or running on the hashing pool, all sessions
    // together; AUTH beyond that gets 454 4.7.0 unchecked (memory bound)
    std::uint32_t max_pending = default_of("auth_throttle.max_pending");
};

// The resolver for DNS-verified domains and DKIM keys.
struct Dns {
    std::vector<std::string> servers;  // "ip", "ip:port", "[v6]:port"; empty = /etc/resolv.conf
    std::uint32_t timeout_ms = default_of("dns.timeout_ms");  // per attempt and server
    std::uint32_t attempts = default_of("dns.attempts");      // rounds over all servers
    std::uint32_t cache_entries = default_of("dns.cache_entries");
};

// Volume control's store (issue 15): "memory" in this process (the
// default), or "redis" shared by every replica.
enum class RateLimitStore { memory, redis };
// When Redis fails: decide on per-process counters with each limit divided
// by `replicas` (fail_open), or tempfail (fail_closed: 451 4.3.0).
enum class StoreFailure { fail_open, fail_closed };

struct RedisTls {
    bool enabled = false;
    std::string ca_file;      // empty: the system's trust store
    std::string verify_name;  // empty: the host of `address`
    std::string cert_file;    // client certificate and key: both or neither
    std::string key_file;
};

struct RateLimit {
    RateLimitStore store = RateLimitStore::memory;
    bool report_only = false;  // log and count limits, refuse nothing
    std::uint64_t memory_entries = default_of("rate_limit.memory_entries");
    std::string address = "127.0.0.1:6379";  // "host:port", "[v6]:port"
    std::string username;                    // ACL user; empty: AUTH <password>
    std::string password_file;               // empty: no AUTH
    // Before every key; no '{' or '}', which would move the hash tag.
    std::string key_prefix = "relaygate:";
    RedisTls tls;
    std::chrono::milliseconds connect_timeout{default_of("rate_limit.connect_timeout_ms")};
    std::chrono::milliseconds timeout{default_of("rate_limit.timeout_ms")};
    StoreFailure on_error = StoreFailure::fail_open;
    std::uint32_t replicas = default_of("rate_limit.replicas");  // expected gateway replicas
    // Recipient units leased with each MAIL FROM decision (0: no lease).
    std::uint64_t recipient_lease = default_of("rate_limit.recipient_lease");
    // Redis only (ratelimit/batch_store.hpp): how long units taken ahead
    // and volume counts wait in this process (0: every decision calls
    // Redis), the block taken with each call (percent of each limit's
    // burst), and the first-seen marks remembered so as not to send them.
    std::chrono::milliseconds batch{default_of("rate_limit.batch_ms")};
    std::uint32_t block_percent = default_of("rate_limit.block_percent");
    std::uint64_t seen_cache_entries = default_of("rate_limit.seen_cache_entries");
};

// Anomaly signals: first-seen pairs and per-tenant volume spikes.
struct Anomalies {
    bool enabled = true;
    bool first_seen = true;
    std::chrono::seconds first_seen_ttl{default_of("anomalies.first_seen_ttl_seconds")};
    std::uint32_t spike_multiple = default_of("anomalies.spike_multiple");
    std::uint64_t spike_min_messages = default_of("anomalies.spike_min_messages");
    std::chrono::seconds bucket{default_of("anomalies.bucket_seconds")};
    std::uint32_t seasonal_slots = default_of("anomalies.seasonal_slots");
    std::uint32_t alpha_percent = default_of("anomalies.alpha_percent");  // EWMA weight
    bool tenant_label = false;  // relaygate_anomalies_total gets a tenant label
};

// Per-tenant labels on the transaction and relayed-message counters: "on",
// "off" (the label is "(all)" for every tenant, "none" still for no
// tenant), or "auto": on while the policy has at most max_tenants tenants.
enum class TenantLabel : std::uint8_t { auto_, on, off };
struct MetricsConfig {
    TenantLabel tenant_label = TenantLabel::auto_;
    std::uint32_t tenant_label_max_tenants = default_of("metrics.tenant_label_max_tenants");
};

// policy_url: the policy fetched over HTTPS (OPA-bundle style), polled
// with If-None-Match; the last good bundle is kept in cache_file so a
// restart serves while the source is down.
struct PolicyFetch {
    std::string ca_file;            // verify the server against it (default: system CAs)
    std::string verify_name;        // the name its certificate must carry (default: URL host)
    std::string bearer_token_file;  // "Authorization: Bearer <file content>", re-read per fetch
    std::string public_key_file;    // Ed25519 PEM: a detached signature is required
    std::string signature_url;      // default: policy_url + ".sig"
    std::string cache_file;         // required with policy_url
    std::chrono::seconds poll{default_of("policy_fetch.poll_seconds")};
    std::chrono::seconds timeout{default_of("policy_fetch.timeout_seconds")};
    std::uint64_t max_bytes = default_of("policy_fetch.max_bytes");
    std::chrono::seconds backoff_max{default_of("policy_fetch.backoff_max_seconds")};
};

struct Config {
    std::vector<Listener> listeners{Listener{}};
    Upstream upstream;
    Tls tls;
    // The policy: one file, or every *.json in policy_dir merged (then
    // policy_file is empty); SASL hashes may come from credentials_file
    // (a "user:hash" file or a directory of one file per user).
    std::filesystem::path policy_file = "policy.json";
    std::filesystem::path policy_dir;
    std::filesystem::path credentials_file;
    // Or fetched over HTTPS (then policy_file is policy_fetch.cache_file).
    std::string policy_url;
    PolicyFetch policy_fetch;
    policy::PolicySource policy_source() const {
        return {policy_file, policy_dir, credentials_file, policy_url};
    }
    Admin admin;
    Limits limits;
    Timeouts timeouts;
    Dns dns;
    AuthThrottle auth_throttle;
    unsigned threads = default_of("threads");  // 0 = one per core
    std::string hostname = "relaygate.local";  // greeting, EHLO and Received
    std::string verdict_header = "X-Relaygate-Verdict";
    // RFC 8601 authserv-ids of this gateway and of the signer behind it: a
    // message whose Authentication-Results or ARC-Authentication-Results claims
    // one of them is refused (authentication_results_forged). `hostname` is
    // always added by the session.
    std::vector<std::string> authserv_ids;
    std::string audit_log = "-";  // "-" = stderr, else a file path
    // SIGTERM: finish sessions within this
    std::chrono::seconds drain_timeout{default_of("drain_timeout_seconds")};
    // file-change check for hot reload (0 = off)
    std::chrono::seconds policy_poll{default_of("policy_poll_seconds")};
    RateLimit rate_limit;
    Anomalies anomalies;
    MetricsConfig metrics;
};

struct ConfigError {
    std::string path;  // RFC 6901 pointer, e.g. "/listeners/0/port"; "" for the file
    std::string message;
    std::size_t line = 0;  // of the value in the file (1-based); 0 when not in it
    std::size_t column = 0;
};
// "/upstream/port (line 3, column 12): must be ..."
std::string format_error(const ConfigError& e);

// Parses JSON text. Relative policy_file paths are resolved against base_dir.
Result<Config, std::vector<ConfigError>> parse_config(std::string_view json_text,
                                                      const std::filesystem::path& base_dir);
Result<Config, std::vector<ConfigError>> load_config(const std::filesystem::path& file);

// Descriptors the gateway may need at once: a client and an upstream socket
// per connection, plus listeners, admin, DNS, files and headroom.
std::uint64_t descriptors_needed(const Config& c);
// Warnings about a valid config in its environment: `run` logs them at
// start, `check --config` prints them. `descriptor_limit` is RLIMIT_NOFILE
// as `run` will have it (the hard limit: run raises the soft one to it).
std::vector<std::string> config_warnings(const Config& c, std::uint64_t descriptor_limit);

}  // namespace relaygate::config
