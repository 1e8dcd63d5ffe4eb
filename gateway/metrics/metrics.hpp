// Every relaygate metric, declared in one place (Envoy-style stats list).
// Label values come only from fixed sets: reason labels from the reason
// table, tenant ids from the loaded policy, fixed kind strings. Never
// addresses or free text. Thread-safe (prometheus-cpp counters are atomic).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/reason.hpp"

namespace prometheus {
class Registry;
template <class T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace relaygate::config {
struct MetricsConfig;
}

namespace relaygate::metrics {

// The tenant label value of every tenant while per-tenant labels are off
// (not a valid tenant id, so it cannot collide with one).
inline constexpr std::string_view kAllTenants = "(all)";

class Metrics {
  public:
    Metrics();
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // Connections. result: accepted | rejected_limit | rejected_draining | rejected_proxy
    void connection_opened(std::string_view result);
    void connection_closed();

    // metrics.tenant_label; takes effect at the next policy_loaded().
    void configure(const config::MetricsConfig& config);
    // After a policy load: removes the tenant-labelled series of tenants
    // `in_policy` does not know (all of them while per-tenant labels are
    // off); returns how many series went. A session still running on the
    // old policy may bring one back until the next load.
    std::size_t retain_tenants(const std::function<bool(std::string_view)>& in_policy);

    // One finished transaction (accepted, rejected or tempfailed).
    // mode: enforce | report (report = rejected by policy but passed).
    void transaction(std::string_view tenant, Reason reason, bool report_only);
    void message_relayed(std::string_view tenant, std::size_t bytes);
    void smtp_reply(int code);

    // point: mail_from | header | end_of_data
    void decision_latency(std::string_view point, double seconds);
    void upstream_connect_latency(double seconds);
    // command: greeting | ehlo | starttls | xclient | mail | rcpt | data | dot | rset
    void upstream_reply_latency(std::string_view command, double seconds);
    // kind: connect | timeout | reset | protocol | refused | tls
    void upstream_error(std::string_view kind);
    // A MAIL and its first RCPT written to the relay together (RFC 2920).
    void upstream_pipelined();
    // A message written to the relay as one BDAT LAST (RFC 3030).
    void upstream_chunked();
    // The upstream connection pool (server/upstream_pool.hpp): idle
    // connections (+1 kept, -1 taken or closed); a checkout's result:
    // reused | stale | empty; a close instead of keeping, reason:
    // idle_timeout | full | unusable | drain
    void upstream_pool_idle(double delta);
    void upstream_pool_checkout(std::string_view result);
    void upstream_pool_closed(std::string_view reason);

    // result: success | failure
    void tls_handshake(std::string_view result);
    // notAfter of the server certificate (Unix time), at start and reloads.
    void tls_certificate_expiry(double unix_time);
    void auth(std::string_view result);
    // An AUTH refused unchecked by the failure throttle. scope: client | user
    void auth_throttled(std::string_view scope);
    // Keys the AUTH failure throttle tracks (both tables).
    void auth_throttle_entries(std::size_t n);
    // Password checks queued or running on the hashing pool.
    void auth_pending(std::size_t n);
    // accept() failed. kind: descriptors (EMFILE/ENFILE/ENOBUFS/ENOMEM) | other
    void accept_error(std::string_view kind);

    // A policy was loaded (at start or by a reload) in `load_seconds`.
    void policy_loaded(const std::string& hash, std::size_t tenants, std::size_t domains,
                       double load_seconds);
    // result: success | failure
    void policy_reload(std::string_view result);
    // policy_url: one fetch's result (updated | not_modified | unchanged |
    // network | timeout | tls | http | too_large | truncated |
    // bad_signature | invalid | token); the first three also set the time
    // of the last good fetch. policy_fetch_start() creates every series at 0.
    void policy_fetch_start();
    void policy_fetch(std::string_view result);

    // One DNS query on the network. type: A | AAAA | CNAME | PTR | TXT;
    // result: ok | nxdomain | nodata | servfail | error | timeout
    void dns_query(std::string_view type, std::string_view result, double seconds);
    // result: hit | miss
    void dns_cache(std::string_view result);
    // A _relaygate.<domain> TXT lookup for a DNS-verified grant.
    // result: found | missing | error
    void domain_proof(std::string_view result);
    // One DKIM signature verified at end of data (identities that require
    // it). result: pass | fail | temperror | permerror
    void dkim_signature(std::string_view result);

    // Volume control (rate limits, gateway/ratelimit). result: allowed |
    // limited | store_error
    void rate_limit_decision(std::string_view result);
    // A limit exceeded. limit: messages | recipients | bytes | spike_hold;
    // reported: report-only mode (counted, not refused)
    void rate_limited(std::string_view limit, bool reported);
    // The shared store failed. kind: connect | timeout | reply | protocol
    void rate_limit_store_error(std::string_view kind);
    // One store call, submit to answer. store: memory | redis
    void rate_limit_store_latency(std::string_view store, double seconds);
    // The store can answer: Redis connected (memory: always true).
    void rate_limit_store_up(bool up);
    // A decision taken by fail_open's per-process fallback.
    void rate_limit_fallback();
    // Entries the memory store holds (cells, volume states, first-seen marks).
    void rate_limit_store_entries(std::size_t n);
    // Recipient-lease units. result: granted | used | refunded | lost
    void rate_limit_lease(std::string_view result, std::uint64_t units);
    // rate_limit.batch_ms: a decision answered in this process or by the store.
    void rate_limit_batch_decision(bool in_process);
    // Units of process blocks: taken | returned | lost.
    void rate_limit_block(std::string_view result, std::uint64_t units);
    // Entries the batch store holds (blocks, volume states, marks).
    void rate_limit_batch_entries(std::size_t n);
    // An anomaly signal. kind: first_seen_domain | first_seen_network |
    // volume_spike. `tenant` non-empty adds a tenant label: pass it only
    // when the operator turned anomalies.tenant_label on (one series per
    // policy tenant), else "".
    void anomaly(std::string_view kind, std::string_view tenant);

    // Prometheus text exposition format (version 0.0.4).
    std::string serialize() const;

  private:
    std::string_view tenant_label(std::string_view tenant) const;

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace relaygate::metrics
