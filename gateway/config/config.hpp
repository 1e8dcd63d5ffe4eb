// The gateway's runtime configuration (relaygate run --config FILE): parsed
// once into an immutable struct with every default and bound in this file.
// Pure: reads JSON text, never sockets; unknown keys are errors (typos in an
// operator's file must not silently fall back to defaults).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gateway/common/result.hpp"

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
    std::uint16_t port = 2525;
    StartTls starttls = StartTls::off;
    bool implicit_tls = false;  // TLS from the first byte (port 465 style, RFC 8314)
    bool request_client_certificate = true;
    Auth auth = Auth::tls_only;
    ProxyProtocol proxy_protocol = ProxyProtocol::off;
    std::vector<std::string> trusted_proxies;  // CIDRs allowed to send the header
    std::chrono::seconds proxy_timeout{5};
};

struct Tls {
    std::string cert_file;  // PEM chain, reloaded on SIGHUP
    std::string key_file;
};

// STARTTLS towards the relay.
enum class UpstreamTls { off, opportunistic, required };

struct Upstream {
    std::string host = "127.0.0.1";
    std::uint16_t port = 10025;
    bool xclient = true;  // use XCLIENT when offered
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds reply_timeout{300};  // RFC 5321 4.5.3.2.2-4: 5 min
    // RFC 5321 4.5.3.2.6: 10 min. Shorter risks duplicates (RFC 1047): the
    // relay may have queued a message whose reply we stopped waiting for.
    std::chrono::seconds final_reply_timeout{600};
    // RFC 5321 4.5.3.2.5: 3 minutes to send each block of message data.
    std::chrono::seconds data_block_timeout{180};
    // The polite QUIT at the end; its 221 is never waited for.
    std::chrono::seconds quit_timeout{5};
    // An upstream connection idle between transactions is closed after
    // this (it costs a descriptor and memory on both sides).
    std::chrono::seconds idle_timeout{30};
    UpstreamTls starttls = UpstreamTls::off;
    std::string ca_file;      // verify the relay's certificate against it when set
    std::string verify_name;  // and its name (defaults to host when ca_file is set)
};

struct Admin {
    bool enabled = true;
    std::string address = "127.0.0.1";
    std::uint16_t port = 9025;
};

struct Limits {
    std::uint64_t max_message_bytes = 52428800;  // advertised in SIZE (RFC 1870)
    std::uint32_t max_recipients = 100;          // RFC 5321 4.5.3.1.8 minimum
    std::uint32_t max_command_line = 512;        // RFC 5321 4.5.3.1.4
    std::uint32_t max_text_line = 1000;          // RFC 5321 4.5.3.1.6
    std::uint32_t max_header_bytes = 256 * 1024;
    std::uint32_t max_errors = 10;  // then 421 and close
    std::uint32_t max_connections = 1000;
    std::uint32_t max_connections_per_client = 50;
    std::uint32_t max_transactions_per_session = 1000;  // then 421: reconnect
};

struct Timeouts {
    std::chrono::seconds command{300};     // RFC 5321 4.5.3.2.7 server timeout
    std::chrono::seconds data_block{180};  // RFC 5321 4.5.3.2.5
    std::chrono::seconds data_grace{30};   // slowloris: grace before the rate applies
    std::uint32_t min_data_rate = 1024;    // bytes per second, averaged over DATA
    // A session's whole life: NOOPs cannot keep a slot (and an old policy
    // snapshot's connection state) forever.
    std::chrono::seconds session{3600};
};

// Failed SMTP AUTH attempts, counted across connections (gateway/session/
// auth_throttle.hpp): per client address (IPv6: /64) and per user name.
struct AuthThrottle {
    std::uint32_t client_failures = 10;
    std::uint32_t user_failures = 30;
    std::chrono::seconds window{600};               // a full count drains in this time
    std::uint32_t entries = 100000;                 // tracked keys per table (memory bound)
    std::chrono::milliseconds failure_delay{1000};  // before a 535 (Postfix: 1 s)
};

// The resolver for DNS-verified domains and DKIM keys.
struct Dns {
    std::vector<std::string> servers;  // "ip", "ip:port", "[v6]:port"; empty = /etc/resolv.conf
    std::uint32_t timeout_ms = 2000;   // per attempt and server
    std::uint32_t attempts = 2;        // rounds over all servers
    std::uint32_t cache_entries = 10000;
};

struct Config {
    std::vector<Listener> listeners{Listener{}};
    Upstream upstream;
    Tls tls;
    std::filesystem::path policy_file = "policy.json";
    Admin admin;
    Limits limits;
    Timeouts timeouts;
    Dns dns;
    AuthThrottle auth_throttle;
    unsigned threads = 0;                      // 0 = one per core
    std::string hostname = "relaygate.local";  // greeting, EHLO and Received
    std::string verdict_header = "X-Relaygate-Verdict";
    // RFC 8601 authserv-ids of this gateway and of the signer behind it: a
    // message whose Authentication-Results or ARC-Authentication-Results claims
    // one of them is refused (authentication_results_forged). `hostname` is
    // always added by the session.
    std::vector<std::string> authserv_ids;
    std::string audit_log = "-";             // "-" = stderr, else a file path
    std::chrono::seconds drain_timeout{30};  // SIGTERM: finish sessions within this
    std::chrono::seconds policy_poll{2};     // file-change check for hot reload (0 = off)
};

struct ConfigError {
    std::string path;  // JSON pointer-ish path, e.g. "listeners[0].port"
    std::string message;
};

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
