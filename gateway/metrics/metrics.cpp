// Metric definitions. Names follow Prometheus conventions: relaygate_ prefix,
// base units (seconds, bytes), _total for counters.
#include "gateway/metrics/metrics.hpp"

#include "gateway/common/string_map.hpp"
#include "gateway/config/config.hpp"
#include "gateway/server/version.hpp"
#include "policy/engine/policy.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace relaygate::metrics {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

namespace {
const Histogram::BucketBoundaries kFastBuckets{0.000001, 0.000005, 0.00001, 0.00005, 0.0001,
                                               0.0005,   0.001,    0.005,   0.01};
// A store call: a memory decision takes microseconds, a Redis round trip
// on a LAN under a millisecond; a second is far past any sane timeout_ms.
const Histogram::BucketBoundaries kStoreBuckets{
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
const Histogram::BucketBoundaries kNetBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};
}  // namespace

// prometheus-cpp 1.0's Family::Add constructs a metric before it looks up
// the labels, so every call allocates (a whole Histogram for histograms).
// Children are therefore looked up once per label set and cached here.
template <class T>
class ChildCache {
  public:
    template <class Make>
    T& get(const std::string& key, Make&& make) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(key);
        if (it != map_.end()) return *it->second;
        T& child = make();
        map_.emplace(key, &child);
        return child;
    }

  private:
    std::mutex mutex_;
    std::unordered_map<std::string, T*> map_;
};

// The children of a family with one label whose values are known at start:
// found without a lock or an allocation (Family::Add makes a label map).
class FixedCounters {
  public:
    FixedCounters(prometheus::Family<Counter>& family, std::string label,
                  std::initializer_list<std::string_view> values)
        : family_(&family), label_(std::move(label)) {
        for (auto v : values)
            children_.push_back({v, &family.Add({{label_, std::string(v)}})});
    }
    // A value not given at start (none is, today) still counts, the slow way.
    Counter& operator[](std::string_view value) {
        for (const auto& c : children_)
            if (c.value == value) return *c.counter;
        return family_->Add({{label_, std::string(value)}});
    }

  private:
    struct Child {
        std::string_view value;  // a literal
        Counter* counter;
    };
    prometheus::Family<Counter>* family_;
    std::string label_;
    std::vector<Child> children_;
};

// The children of a family with one label whose values are known at start,
// each made at its first use (a series appears when it first counts, as
// with ChildCache) and then found without a lock, a string or a hash: a
// few of these are on the data path several times per message.
template <class T>
class LazyChildren {
  public:
    using Make = std::function<T&(std::string_view)>;
    LazyChildren(std::initializer_list<std::string_view> values, Make make)
        : values_(values), children_(values_.size()), make_(std::move(make)) {}

    T& operator[](std::string_view value) {
        for (std::size_t i = 0; i < values_.size(); ++i) {
            if (values_[i] != value) continue;
            if (T* c = children_[i].load(std::memory_order_acquire)) return *c;
            std::lock_guard lock(mutex_);
            T* c = children_[i].load(std::memory_order_relaxed);
            if (!c) children_[i].store(c = &make_(value), std::memory_order_release);
            return *c;
        }
        // A value not given at start still counts, the slow way (the family
        // hands out the child it already has for the same labels).
        return make_(value);
    }

  private:
    std::vector<std::string_view> values_;  // literals
    std::vector<std::atomic<T*>> children_;
    std::mutex mutex_;
    Make make_;
};

// The counters labelled by tenant, by tenant, so that a tenant's series can
// be removed when it leaves the policy. The increment happens under the
// lock: a series is never incremented after its removal.
class TenantCounters {
  public:
    template <class Make>
    void increment(std::string_view tenant, std::string_view key, double by, Make&& make) {
        std::lock_guard lock(mutex_);
        auto t = tenants_.find(tenant);
        if (t == tenants_.end())
            t = tenants_.emplace(std::string(tenant), StringMap<Series>{}).first;
        auto& series = t->second;
        auto it = series.find(key);
        if (it == series.end()) it = series.emplace(std::string(key), make()).first;
        it->second.counter->Increment(by);
    }
    struct Series {
        prometheus::Family<Counter>* family;
        Counter* counter;
    };
    // Removes every tenant's series for which keep(tenant) is false;
    // returns how many series went.
    template <class Keep>
    std::size_t retain(Keep&& keep) {
        std::lock_guard lock(mutex_);
        std::size_t removed = 0;
        for (auto it = tenants_.begin(); it != tenants_.end();) {
            if (keep(it->first)) {
                ++it;
                continue;
            }
            for (auto& [key, s] : it->second)
                s.family->Remove(s.counter);
            removed += it->second.size();
            it = tenants_.erase(it);
        }
        return removed;
    }

  private:
    std::mutex mutex_;
    StringMap<StringMap<Series>> tenants_;
};

struct Metrics::Impl {
    ChildCache<Counter> counters;
    // The child of a counter family with one label, cached under `tag`,
    // a NUL (no other cached key has one there) and the value.
    Counter& one_label(prometheus::Family<Counter>& family, std::string_view tag, const char* label,
                       std::string_view value) {
        std::string key(tag);
        key += '\0';
        key += value;
        return counters.get(key, [&]() -> Counter& {
            return family.Add({{label, std::string(value)}});
        });
    }
    TenantCounters tenant_counters;
    config::MetricsConfig config;
    std::atomic<bool> tenant_labels{true};
    ChildCache<Histogram> histograms;

    prometheus::Registry registry;
    prometheus::Family<Counter>& connections =
        BuildCounter()
            .Name("relaygate_connections_total")
            .Help("Client connections by result (accepted, rejected_limit, rejected_draining)")
            .Register(registry);
    // Pre-created: the zero series dashboards and alerts rely on, so that
    // rate() has a baseline before the first event.
    FixedCounters connection_results{
        connections,
        "result",
        {"accepted", "rejected_limit", "rejected_draining", "rejected_proxy"}};
    prometheus::Family<Gauge>& connections_active = BuildGauge()
                                                        .Name("relaygate_connections_active")
                                                        .Help("Client connections currently open")
                                                        .Register(registry);
    prometheus::Family<Counter>& transactions =
        BuildCounter()
            .Name("relaygate_transactions_total")
            .Help("Finished transactions by tenant, reason code and policy mode")
            .Register(registry);
    prometheus::Family<Counter>& relayed =
        BuildCounter()
            .Name("relaygate_messages_relayed_total")
            .Help("Messages accepted by the upstream relay, by tenant")
            .Register(registry);
    prometheus::Family<Counter>& relayed_bytes =
        BuildCounter()
            .Name("relaygate_relayed_bytes_total")
            .Help("Message bytes accepted by the upstream relay, by tenant")
            .Register(registry);
    prometheus::Family<Counter>& replies =
        BuildCounter()
            .Name("relaygate_smtp_replies_total")
            .Help("SMTP replies sent to clients by reply class (2xx, 3xx, 4xx, 5xx)")
            .Register(registry);
    prometheus::Family<Histogram>& decision = BuildHistogram()
                                                  .Name("relaygate_decision_duration_seconds")
                                                  .Help("Policy evaluation time by decision point")
                                                  .Register(registry);
    LazyChildren<Counter> reply_classes{{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"},
                                        [this](std::string_view c) -> Counter& {
                                            return replies.Add({{"class", std::string(c)}});
                                        }};
    LazyChildren<Histogram> decision_points{
        {"mail_from", "header", "end_of_data"}, [this](std::string_view p) -> Histogram& {
            return decision.Add({{"point", std::string(p)}}, kFastBuckets);
        }};
    prometheus::Family<Histogram>& upstream_connect =
        BuildHistogram()
            .Name("relaygate_upstream_connect_duration_seconds")
            .Help("Time to connect to the upstream relay and finish EHLO")
            .Register(registry);
    prometheus::Family<Histogram>& upstream_reply =
        BuildHistogram()
            .Name("relaygate_upstream_reply_duration_seconds")
            .Help("Upstream reply latency by command")
            .Register(registry);
    LazyChildren<Histogram> upstream_commands{
        {"greeting", "ehlo", "starttls", "xclient", "mail", "rcpt", "data", "dot", "rset"},
        [this](std::string_view c) -> Histogram& {
            return upstream_reply.Add({{"command", std::string(c)}}, kNetBuckets);
        }};
    prometheus::Family<Counter>& upstream_errors =
        BuildCounter()
            .Name("relaygate_upstream_errors_total")
            .Help("Upstream failures by kind (connect, timeout, reset, protocol, refused)")
            .Register(registry);
    Counter& upstream_pipelined = BuildCounter()
                                      .Name("relaygate_upstream_pipelined_total")
                                      .Help(
                                          "MAIL commands written to the relay together with the "
                                          "first RCPT (RFC 2920 pipelining)")
                                      .Register(registry)
                                      .Add({});
    Counter& upstream_chunked = BuildCounter()
                                    .Name("relaygate_upstream_chunked_total")
                                    .Help(
                                        "Messages written to the relay as one BDAT LAST "
                                        "(RFC 3030 CHUNKING) instead of DATA")
                                    .Register(registry)
                                    .Add({});
    prometheus::Family<Gauge>& upstream_pool_idle =
        BuildGauge()
            .Name("relaygate_upstream_pool_idle_connections")
            .Help("Idle upstream connections kept for the next client session")
            .Register(registry);
    prometheus::Family<Counter>& upstream_pool_checkouts =
        BuildCounter()
            .Name("relaygate_upstream_pool_checkouts_total")
            .Help("Upstream connections wanted from the pool, by result (reused, stale, empty)")
            .Register(registry);
    prometheus::Family<Counter>& upstream_pool_closed =
        BuildCounter()
            .Name("relaygate_upstream_pool_closed_total")
            .Help(
                "Upstream connections closed instead of kept, by reason (idle_timeout, full, "
                "unusable, drain, relay_busy)")
            .Register(registry);
    FixedCounters pool_checkout_results{
        upstream_pool_checkouts, "result", {"reused", "stale", "empty"}};
    FixedCounters pool_closed_reasons{upstream_pool_closed,
                                      "reason",
                                      {"idle_timeout", "full", "unusable", "drain", "relay_busy"}};
    Gauge& pool_idle = upstream_pool_idle.Add({});
    prometheus::Family<Gauge>& tls_expiry =
        BuildGauge()
            .Name("relaygate_tls_certificate_expiry_timestamp_seconds")
            .Help(
                "notAfter of the server certificate (tls.cert_file), Unix time; absent without "
                "one")
            .Register(registry);
    prometheus::Family<Gauge>& tenant_labels_family =
        BuildGauge()
            .Name("relaygate_metrics_tenant_labels")
            .Help(
                "1 while the tenant label of the transaction and relayed counters names each "
                "tenant; 0 when it is \"(all)\" (metrics.tenant_label)")
            .Register(registry);
    Gauge& tenant_labels_on = tenant_labels_family.Add({});
    prometheus::Family<Gauge>& build_info =
        BuildGauge()
            .Name("relaygate_build_info")
            .Help("Always 1; the version and source revision of the running binary")
            .Register(registry);
    prometheus::Family<Gauge>& policy_info =
        BuildGauge()
            .Name("relaygate_policy_info")
            .Help("The loaded policy (value 1), labelled with its hash")
            .Register(registry);
    prometheus::Family<Gauge>& policy_tenants = BuildGauge()
                                                    .Name("relaygate_policy_tenants")
                                                    .Help("Tenants in the loaded policy")
                                                    .Register(registry);
    prometheus::Family<Gauge>& policy_domains = BuildGauge()
                                                    .Name("relaygate_policy_domains")
                                                    .Help("Domain grants in the loaded policy")
                                                    .Register(registry);
    Gauge& policy_last_success =
        BuildGauge()
            .Name("relaygate_policy_last_reload_success_timestamp_seconds")
            .Help("Unix time of the last successful policy load (start or reload)")
            .Register(registry)
            .Add({});
    Gauge& policy_load_duration =
        BuildGauge()
            .Name("relaygate_policy_load_duration_seconds")
            .Help("Wall time the last successful policy load took (read, parse, lint, index)")
            .Register(registry)
            .Add({});
    prometheus::Family<Counter>& policy_fetches =
        BuildCounter()
            .Name("relaygate_policy_fetches_total")
            .Help("policy_url fetches by result (updated, not_modified, or what failed)")
            .Register(registry);
    prometheus::Family<Gauge>& policy_last_fetch =
        BuildGauge()
            .Name("relaygate_policy_last_fetch_success_timestamp_seconds")
            .Help("Unix time of the last policy_url fetch that succeeded (200 or 304)")
            .Register(registry);
    prometheus::Family<Counter>& policy_reloads =
        BuildCounter()
            .Name("relaygate_policy_reloads_total")
            .Help("Policy reload attempts by result (success, failure)")
            .Register(registry);

    prometheus::Family<Counter>& tls_handshakes =
        BuildCounter()
            .Name("relaygate_tls_handshakes_total")
            .Help("Server-side TLS handshakes (STARTTLS or implicit) by result")
            .Register(registry);
    prometheus::Family<Counter>& auths =
        BuildCounter()
            .Name("relaygate_auth_attempts_total")
            .Help("SMTP AUTH attempts by result (success, failure, throttled, busy)")
            .Register(registry);
    prometheus::Family<Counter>& auth_throttled =
        BuildCounter()
            .Name("relaygate_auth_throttled_total")
            .Help(
                "SMTP AUTH attempts refused unchecked by the failure throttle, by scope "
                "(client, user)")
            .Register(registry);
    prometheus::Family<Gauge>& auth_pending =
        BuildGauge()
            .Name("relaygate_auth_pending_checks")
            .Help("SMTP AUTH password checks queued or running on the hashing pool")
            .Register(registry);
    prometheus::Family<Gauge>& auth_throttle_entries =
        BuildGauge()
            .Name("relaygate_auth_throttle_entries")
            .Help("Client addresses and user names the AUTH failure throttle tracks")
            .Register(registry);
    prometheus::Family<Counter>& accept_errors =
        BuildCounter()
            .Name("relaygate_accept_errors_total")
            .Help(
                "Failed accept() calls by kind (descriptors: out of file descriptors or "
                "memory, accepting paused; other)")
            .Register(registry);
    prometheus::Family<Counter>& dns_queries =
        BuildCounter()
            .Name("relaygate_dns_queries_total")
            .Help("DNS queries sent to a server, by record type and result")
            .Register(registry);
    prometheus::Family<Histogram>& dns_query_duration =
        BuildHistogram()
            .Name("relaygate_dns_query_duration_seconds")
            .Help("DNS query round-trip time by record type (UDP, plus TCP after truncation)")
            .Register(registry);
    prometheus::Family<Counter>& dns_cache_lookups =
        BuildCounter()
            .Name("relaygate_dns_cache_lookups_total")
            .Help("DNS cache lookups by result (hit, miss)")
            .Register(registry);
    prometheus::Family<Counter>& domain_proofs =
        BuildCounter()
            .Name("relaygate_domain_proof_lookups_total")
            .Help(
                "TXT _relaygate.<domain> lookups for DNS-verified grants, by result (found, "
                "missing, error)")
            .Register(registry);
    prometheus::Family<Counter>& dkim_signatures =
        BuildCounter()
            .Name("relaygate_dkim_signatures_total")
            .Help(
                "DKIM signatures verified at end of data, by result (pass, fail, temperror, "
                "permerror)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_decisions =
        BuildCounter()
            .Name("relaygate_rate_limit_decisions_total")
            .Help("Volume-limit decisions by result (allowed, limited, store_error)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limited =
        BuildCounter()
            .Name("relaygate_rate_limited_total")
            .Help(
                "Volume limits exceeded, by limit (messages, recipients, bytes, spike_hold) and "
                "action (refused, reported)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_store_errors =
        BuildCounter()
            .Name("relaygate_rate_limit_store_errors_total")
            .Help("Rate-limit store failures by kind (connect, timeout, reply, protocol)")
            .Register(registry);
    prometheus::Family<Histogram>& rate_limit_store_duration =
        BuildHistogram()
            .Name("relaygate_rate_limit_store_duration_seconds")
            .Help("Rate-limit store call latency by store (memory, redis)")
            .Register(registry);
    prometheus::Family<Gauge>& rate_limit_store_up =
        BuildGauge()
            .Name("relaygate_rate_limit_store_up")
            .Help("1 when the rate-limit store can answer (Redis connected; memory always)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_fallback =
        BuildCounter()
            .Name("relaygate_rate_limit_fallback_total")
            .Help("Decisions taken by fail_open's per-process fallback while Redis failed")
            .Register(registry);
    prometheus::Family<Gauge>& rate_limit_store_entries =
        BuildGauge()
            .Name("relaygate_rate_limit_store_entries")
            .Help("Entries held by the memory rate-limit store")
            .Register(registry);
    prometheus::Family<Gauge>& rate_limit_batch_entries =
        BuildGauge()
            .Name("relaygate_rate_limit_batch_entries")
            .Help(
                "Entries the batch store in front of Redis holds (blocks, tenants' volume counts, "
                "remembered first-seen marks)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_lease_units =
        BuildCounter()
            .Name("relaygate_rate_limit_lease_units_total")
            .Help(
                "Recipient-lease units by result (granted at MAIL FROM, used by a RCPT, refunded, "
                "lost: a refund the store did not get)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_batch_decisions =
        BuildCounter()
            .Name("relaygate_rate_limit_batch_decisions_total")
            .Help(
                "Volume-control decisions by where they were made (process: from units and counts "
                "this process holds; store: a call to the shared store)")
            .Register(registry);
    prometheus::Family<Counter>& rate_limit_block_units =
        BuildCounter()
            .Name("relaygate_rate_limit_block_units_total")
            .Help(
                "Units of process blocks by result (taken from the shared store, returned to it, "
                "lost: a return the store did not get)")
            .Register(registry);
    prometheus::Family<Counter>& anomalies =
        BuildCounter()
            .Name("relaygate_anomalies_total")
            .Help(
                "Anomaly signals by kind (first_seen_domain, first_seen_network, volume_spike); "
                "by tenant too when anomalies.tenant_label is on")
            .Register(registry);

    Gauge& active = connections_active.Add({});
    std::mutex policy_mutex;
    Gauge* policy_info_current = nullptr;
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
    impl_->tenant_labels_on.Set(1);
    impl_->build_info
        .Add({{"version", std::string(server::version())},
              {"revision", std::string(server::revision())}})
        .Set(1);
    // Pre-create the zero series dashboards and alerts rely on, so that
    // rate() has a baseline before the first event.
    for (auto k : {"connect", "timeout", "reset", "protocol", "refused", "tls"})
        impl_->upstream_errors.Add({{"kind", k}});
    for (auto r : {"success", "failure"}) {
        impl_->policy_reloads.Add({{"result", r}});
        impl_->tls_handshakes.Add({{"result", r}});
        impl_->auths.Add({{"result", r}});
    }
    impl_->auths.Add({{"result", "throttled"}});
    impl_->auths.Add({{"result", "busy"}});
    for (auto s : {"client", "user"})
        impl_->auth_throttled.Add({{"scope", s}});
    impl_->auth_throttle_entries.Add({});
    impl_->auth_pending.Add({});
    for (auto k : {"descriptors", "other"})
        impl_->accept_errors.Add({{"kind", k}});
    for (auto r : {"hit", "miss"})
        impl_->dns_cache_lookups.Add({{"result", r}});
    for (auto r : {"found", "missing", "error"})
        impl_->domain_proofs.Add({{"result", r}});
    for (auto r : {"pass", "fail", "temperror", "permerror"})
        impl_->dkim_signatures.Add({{"result", r}});
    for (auto r : {"allowed", "limited", "store_error"})
        impl_->rate_limit_decisions.Add({{"result", r}});
    for (auto l : {"messages", "recipients", "bytes", "spike_hold"})
        for (auto a : {"refused", "reported"})
            impl_->rate_limited.Add({{"limit", l}, {"action", a}});
    for (auto k : {"connect", "timeout", "reply", "protocol"})
        impl_->rate_limit_store_errors.Add({{"kind", k}});
    impl_->rate_limit_fallback.Add({});
    for (auto r : {"granted", "used", "refunded", "lost"})
        impl_->rate_limit_lease_units.Add({{"result", r}});
    for (auto w : {"process", "store"})
        impl_->rate_limit_batch_decisions.Add({{"where", w}});
    for (auto r : {"taken", "returned", "lost"})
        impl_->rate_limit_block_units.Add({{"result", r}});
    for (auto k : {"first_seen_domain", "first_seen_network", "volume_spike"})
        impl_->anomalies.Add({{"kind", k}});
    for (auto t : {"A", "AAAA", "CNAME", "PTR", "TXT"}) {
        for (auto r : {"ok", "nxdomain", "nodata", "servfail", "error", "timeout"})
            impl_->dns_queries.Add({{"type", t}, {"result", r}});
        impl_->dns_query_duration.Add({{"type", t}}, kNetBuckets);
    }
}

Metrics::~Metrics() = default;

void Metrics::connection_opened(std::string_view result) {
    impl_->connection_results[result].Increment();
    if (result == "accepted") impl_->active.Increment();
}

void Metrics::connection_closed() {
    impl_->active.Decrement();
}

std::string_view Metrics::tenant_label(std::string_view tenant) const {
    if (tenant.empty()) return policy::kNoTenantLabel;
    if (!impl_->tenant_labels.load(std::memory_order_relaxed)) return kAllTenants;
    return tenant;
}

void Metrics::transaction(std::string_view tenant, Reason reason, bool report_only) {
    const std::string_view t = tenant_label(tenant);
    const std::string_view r = label(reason);
    const std::string_view mode = report_only ? "report" : "enforce";
    // The series' key within the tenant, "accepted/enforce", on the stack.
    std::array<char, 96> buf;
    const auto key = fmt::format_to_n(buf.data(), buf.size(), "{}/{}", r, mode);
    impl_->tenant_counters.increment(t, std::string_view(buf.data(), key.out - buf.data()), 1, [&] {
        auto& fam = impl_->transactions;
        return TenantCounters::Series{&fam, &fam.Add({{"tenant", std::string(t)},
                                                      {"reason", std::string(r)},
                                                      {"mode", std::string(mode)}})};
    });
}

void Metrics::message_relayed(std::string_view tenant, std::size_t bytes) {
    const std::string_view t = tenant_label(tenant);
    impl_->tenant_counters.increment(t, "messages", 1, [&] {
        return TenantCounters::Series{&impl_->relayed,
                                      &impl_->relayed.Add({{"tenant", std::string(t)}})};
    });
    impl_->tenant_counters.increment(t, "bytes", static_cast<double>(bytes), [&] {
        return TenantCounters::Series{&impl_->relayed_bytes,
                                      &impl_->relayed_bytes.Add({{"tenant", std::string(t)}})};
    });
}

void Metrics::configure(const config::MetricsConfig& config) {
    impl_->config = config;
}

std::size_t Metrics::retain_tenants(const std::function<bool(std::string_view)>& in_policy) {
    const bool labels = impl_->tenant_labels.load();
    return impl_->tenant_counters.retain([&](const std::string& t) {
        return t == policy::kNoTenantLabel || (labels ? in_policy(t) : t == kAllTenants);
    });
}

void Metrics::smtp_reply(int code) {
    static constexpr std::string_view kClass[] = {"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"};
    int c = code / 100;
    if (c < 0 || c > 5) c = 0;
    impl_->reply_classes[kClass[c]].Increment();
}

void Metrics::decision_latency(std::string_view point, double seconds) {
    impl_->decision_points[point].Observe(seconds);
}

void Metrics::upstream_connect_latency(double seconds) {
    impl_->histograms
        .get("uc", [&]() -> Histogram& { return impl_->upstream_connect.Add({}, kNetBuckets); })
        .Observe(seconds);
}

void Metrics::upstream_reply_latency(std::string_view command, double seconds) {
    impl_->upstream_commands[command].Observe(seconds);
}

void Metrics::upstream_error(std::string_view kind) {
    impl_->upstream_errors.Add({{"kind", std::string(kind)}}).Increment();
}

void Metrics::policy_loaded(const std::string& hash, std::size_t tenants, std::size_t domains,
                            double load_seconds) {
    std::lock_guard lock(impl_->policy_mutex);
    impl_->policy_load_duration.Set(load_seconds);
    impl_->policy_last_success.SetToCurrentTime();
    if (impl_->policy_info_current) impl_->policy_info.Remove(impl_->policy_info_current);
    impl_->policy_info_current = &impl_->policy_info.Add({{"hash", hash}});
    impl_->policy_info_current->Set(1);
    impl_->policy_tenants.Add({}).Set(static_cast<double>(tenants));
    const auto& c = impl_->config;
    const bool labels =
        c.tenant_label == config::TenantLabel::on ||
        (c.tenant_label == config::TenantLabel::auto_ && tenants <= c.tenant_label_max_tenants);
    impl_->tenant_labels.store(labels);
    impl_->tenant_labels_on.Set(labels ? 1 : 0);
    impl_->policy_domains.Add({}).Set(static_cast<double>(domains));
}

void Metrics::tls_certificate_expiry(double unix_time) {
    impl_->tls_expiry.Add({}).Set(unix_time);
}

void Metrics::tls_handshake(std::string_view result) {
    impl_->tls_handshakes.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::auth(std::string_view result) {
    impl_->auths.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::auth_throttled(std::string_view scope) {
    impl_->auth_throttled.Add({{"scope", std::string(scope)}}).Increment();
}

void Metrics::upstream_pool_idle(double delta) {
    impl_->pool_idle.Increment(delta);
}

void Metrics::upstream_pipelined() {
    impl_->upstream_pipelined.Increment();
}

void Metrics::upstream_chunked() {
    impl_->upstream_chunked.Increment();
}

void Metrics::upstream_pool_checkout(std::string_view result) {
    impl_->pool_checkout_results[result].Increment();
}

void Metrics::upstream_pool_closed(std::string_view reason) {
    impl_->pool_closed_reasons[reason].Increment();
}

void Metrics::auth_pending(std::size_t n) {
    impl_->auth_pending.Add({}).Set(static_cast<double>(n));
}

void Metrics::auth_throttle_entries(std::size_t n) {
    impl_->auth_throttle_entries.Add({}).Set(static_cast<double>(n));
}

void Metrics::accept_error(std::string_view kind) {
    impl_->accept_errors.Add({{"kind", std::string(kind)}}).Increment();
}

void Metrics::policy_fetch_start() {
    for (auto r : {"updated", "not_modified", "unchanged", "network", "timeout", "tls", "http",
                   "too_large", "truncated", "bad_signature", "invalid", "token", "cache"})
        impl_->policy_fetches.Add({{"result", r}});
    impl_->policy_last_fetch.Add({});
}

void Metrics::policy_fetch(std::string_view result) {
    impl_->policy_fetches.Add({{"result", std::string(result)}}).Increment();
    if (result == "updated" || result == "not_modified" || result == "unchanged")
        impl_->policy_last_fetch.Add({}).SetToCurrentTime();
}

void Metrics::policy_reload(std::string_view result) {
    impl_->policy_reloads.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::dns_query(std::string_view type, std::string_view result, double seconds) {
    const std::string t(type);
    const std::string r(result);
    impl_->counters
        .get("dq\0" + t + '\0' + r,
             [&]() -> Counter& {
                 return impl_->dns_queries.Add({{"type", t}, {"result", r}});
             })
        .Increment();
    impl_->histograms
        .get("dd\0" + t,
             [&]() -> Histogram& {
                 return impl_->dns_query_duration.Add({{"type", t}}, kNetBuckets);
             })
        .Observe(seconds);
}

void Metrics::dns_cache(std::string_view result) {
    impl_->dns_cache_lookups.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::domain_proof(std::string_view result) {
    impl_->domain_proofs.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::dkim_signature(std::string_view result) {
    impl_->dkim_signatures.Add({{"result", std::string(result)}}).Increment();
}

void Metrics::rate_limit_decision(std::string_view result) {
    impl_->one_label(impl_->rate_limit_decisions, "rld", "result", result).Increment();
}

void Metrics::rate_limited(std::string_view limit, bool reported) {
    const std::string l(limit);
    const std::string a = reported ? "reported" : "refused";
    impl_->counters
        .get(std::string("rlim\0", 5) + l + '\0' + a,
             [&]() -> Counter& {
                 return impl_->rate_limited.Add({{"limit", l}, {"action", a}});
             })
        .Increment();
}

void Metrics::rate_limit_store_error(std::string_view kind) {
    impl_->rate_limit_store_errors.Add({{"kind", std::string(kind)}}).Increment();
}

void Metrics::rate_limit_store_latency(std::string_view store, double seconds) {
    const std::string s(store);
    impl_->histograms
        .get(std::string("rls\0", 4) + s,
             [&]() -> Histogram& {
                 return impl_->rate_limit_store_duration.Add({{"store", s}}, kStoreBuckets);
             })
        .Observe(seconds);
}

void Metrics::rate_limit_store_up(bool up) {
    impl_->rate_limit_store_up.Add({}).Set(up ? 1 : 0);
}

void Metrics::rate_limit_fallback() {
    impl_->rate_limit_fallback.Add({}).Increment();
}

void Metrics::rate_limit_store_entries(std::size_t n) {
    impl_->rate_limit_store_entries.Add({}).Set(static_cast<double>(n));
}

void Metrics::rate_limit_batch_entries(std::size_t n) {
    impl_->rate_limit_batch_entries.Add({}).Set(static_cast<double>(n));
}

void Metrics::rate_limit_lease(std::string_view result, std::uint64_t units) {
    impl_->one_label(impl_->rate_limit_lease_units, "rll", "result", result)
        .Increment(static_cast<double>(units));
}

void Metrics::rate_limit_batch_decision(bool in_process) {
    impl_
        ->one_label(impl_->rate_limit_batch_decisions, "rlb", "where",
                    in_process ? "process" : "store")
        .Increment();
}

void Metrics::rate_limit_block(std::string_view result, std::uint64_t units) {
    impl_->one_label(impl_->rate_limit_block_units, "rlk", "result", result)
        .Increment(static_cast<double>(units));
}

void Metrics::anomaly(std::string_view kind, std::string_view tenant) {
    if (tenant.empty())
        impl_->anomalies.Add({{"kind", std::string(kind)}}).Increment();
    else
        impl_->anomalies.Add({{"kind", std::string(kind)}, {"tenant", std::string(tenant)}})
            .Increment();
}

std::string Metrics::serialize() const {
    std::ostringstream out;
    prometheus::TextSerializer{}.Serialize(out, impl_->registry.Collect());
    return out.str();
}

}  // namespace relaygate::metrics
