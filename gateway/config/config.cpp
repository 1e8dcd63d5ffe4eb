// Config parsing: the shared JSON reader (gateway/json) parses the text,
// then one walk records every error with its RFC 6901 path and position,
// and only returns a Config when there are none. Bounds come from bounds.hpp.
#include "gateway/config/config.hpp"

#include "gateway/common/domain.hpp"
#include "gateway/common/file.hpp"
#include "gateway/dns/resolv_conf.hpp"
#include "gateway/json/document.hpp"
#include "gateway/redis/address.hpp"
#include "policy/engine/ip_address.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace relaygate::config {

using json_reader::pointer;

namespace {

using nlohmann::json;

class Reader {
  public:
    std::vector<ConfigError> errors;

    void error(const std::string& path, std::string message) {
        errors.push_back({path, std::move(message)});
    }

    // Checks that `obj` is an object with only `allowed` keys.
    bool object(const json& obj, const std::string& path,
                std::initializer_list<std::string_view> allowed) {
        if (!obj.is_object()) {
            error(path, "must be an object");
            return false;
        }
        for (const auto& [key, _] : obj.items())
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
                error(pointer(path, key), json_reader::unknown_key(key, allowed));
        return true;
    }

    void string(const json& obj, const std::string& path, const char* key, std::string& out) {
        if (!obj.contains(key)) return;
        const auto& v = obj.at(key);
        if (!v.is_string() || v.get_ref<const std::string&>().empty())
            error(pointer(path, key), "must be a non-empty string");
        else
            out = v.get<std::string>();
    }

    void boolean(const json& obj, const std::string& path, const char* key, bool& out) {
        if (!obj.contains(key)) return;
        const auto& v = obj.at(key);
        if (!v.is_boolean())
            error(pointer(path, key), "must be true or false");
        else
            out = v.get<bool>();
    }

    // A numeric key of kBounds: `name` is its row ("limits.max_recipients"),
    // whose last part is the key in `obj`.
    template <class T>
    void integer(const json& obj, const std::string& path, std::string_view name, T& out) {
        const Bound* bound = find_bound(name);
        if (!bound) throw std::logic_error(fmt::format("config key {} has no bound", name));
        const std::string key(name.substr(name.rfind('.') + 1));
        if (!obj.contains(key)) return;
        const auto& v = obj.at(key);
        if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
            error(pointer(path, key), "must be a non-negative integer");
            return;
        }
        auto n = v.get<std::uint64_t>();
        if (n < bound->min || n > bound->max) {
            error(pointer(path, key),
                  bound->why.empty()
                      ? fmt::format("must be between {} and {}", bound->min, bound->max)
                      : fmt::format("must be between {} and {} ({})", bound->min, bound->max,
                                    bound->why));
            return;
        }
        out = static_cast<T>(n);
    }

    template <class Duration>
    void duration(const json& obj, const std::string& path, std::string_view name, Duration& out) {
        auto n = static_cast<std::uint64_t>(out.count());
        integer(obj, path, name, n);
        out = Duration(n);
    }
};

template <class E>
void enumeration(Reader& r, const json& j, const std::string& path, const char* key, E& out,
                 std::initializer_list<std::pair<const char*, E>> values) {
    if (!j.contains(key)) return;
    const auto& v = j.at(key);
    std::string names;
    for (const auto& [name, value] : values) {
        if (v.is_string() && v.get_ref<const std::string&>() == name) {
            out = value;
            return;
        }
        names += names.empty() ? name : std::string(", ") + name;
    }
    r.error(pointer(path, key), "must be one of: " + names);
}

void read_dns(Reader& r, const json& j, Dns& d) {
    if (!r.object(j, "/dns", {"servers", "timeout_ms", "attempts", "cache_entries"})) return;
    if (j.contains("servers")) {
        const auto& s = j.at("servers");
        if (!s.is_array()) r.error("/dns/servers", "must be an array of \"ip\" or \"ip:port\"");
        for (std::size_t i = 0; s.is_array() && i < s.size(); ++i) {
            if (!s[i].is_string() || !dns::parse_server(s[i].get<std::string>()))
                r.error(pointer("/dns/servers", i),
                        "must be an IP address, \"ip:port\" or \"[ipv6]:port\"");
            else
                d.servers.push_back(s[i].get<std::string>());
        }
    }
    r.integer(j, "/dns", "dns.timeout_ms", d.timeout_ms);
    r.integer(j, "/dns", "dns.attempts", d.attempts);
    r.integer(j, "/dns", "dns.cache_entries", d.cache_entries);
}

// RFC 8601 2.2: an authserv-id is an RFC 2045 value; configured ids must be
// tokens (US-ASCII without SPACE, controls or tspecials), such as host names.
void read_authserv_ids(Reader& r, const json& j, std::vector<std::string>& out) {
    constexpr std::size_t kMaxIds = 64;
    if (!j.is_array() || j.size() > kMaxIds) {
        r.error("/authserv_ids", fmt::format("must be an array of at most {} strings", kMaxIds));
        return;
    }
    auto token_char = [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c > 0x20 && c < 0x7f &&
               std::string_view("()<>@,;:\\\"/[]?=").find(ch) == std::string_view::npos;
    };
    for (std::size_t i = 0; i < j.size(); ++i) {
        const std::string* id = j[i].is_string() ? &j[i].get_ref<const std::string&>() : nullptr;
        if (!id || id->empty() || !std::all_of(id->begin(), id->end(), token_char))
            r.error(pointer("/authserv_ids", i),
                    "must be an authserv-id token (RFC 8601 2.2), such as a host name");
        else
            out.push_back(*id);
    }
}

void read_listener(Reader& r, const json& j, const std::string& path, Listener& l) {
    if (!r.object(
            j, path,
            {"address", "port", "starttls", "implicit_tls", "request_client_certificate", "auth",
             "proxy_protocol", "trusted_proxies", "proxy_timeout_seconds", "reuse_port"}))
        return;
    r.string(j, path, "address", l.address);
    r.integer(j, path, "listeners[].port", l.port);
    enumeration(
        r, j, path, "starttls", l.starttls,
        {{"off", StartTls::off}, {"offered", StartTls::offered}, {"required", StartTls::required}});
    r.boolean(j, path, "implicit_tls", l.implicit_tls);
    r.boolean(j, path, "request_client_certificate", l.request_client_certificate);
    enumeration(r, j, path, "auth", l.auth,
                {{"off", Auth::off}, {"tls_only", Auth::tls_only}, {"always", Auth::always}});
    enumeration(r, j, path, "proxy_protocol", l.proxy_protocol,
                {{"off", ProxyProtocol::off},
                 {"v1", ProxyProtocol::v1},
                 {"v2", ProxyProtocol::v2},
                 {"any", ProxyProtocol::any}});
    r.duration(j, path, "listeners[].proxy_timeout_seconds", l.proxy_timeout);
    r.boolean(j, path, "reuse_port", l.reuse_port);
    if (j.contains("trusted_proxies")) {
        const auto& t = j.at("trusted_proxies");
        if (!t.is_array()) {
            r.error(pointer(path, "trusted_proxies"), "must be an array of CIDRs");
        } else {
            for (std::size_t i = 0; i < t.size(); ++i) {
                const auto p = pointer(pointer(path, "trusted_proxies"), i);
                if (!t[i].is_string() || !policy::parse_cidr(t[i].get<std::string>()).cidr)
                    r.error(p, "must be a CIDR such as 10.0.0.0/8 (host bits clear)");
                else
                    l.trusted_proxies.push_back(t[i].get<std::string>());
            }
        }
    }
    if (l.proxy_protocol != ProxyProtocol::off && l.trusted_proxies.empty())
        r.error(pointer(path, "trusted_proxies"),
                "required with proxy_protocol: the header is accepted only from these networks");
    if (l.implicit_tls && l.starttls != StartTls::off)
        r.error(pointer(path, "starttls"), "must be off with implicit_tls");
}

void read_upstream(Reader& r, const json& j, Upstream& u) {
    const std::string path = "/upstream";
    if (!r.object(j, path,
                  {"host", "port", "xclient", "pipelining", "defer_mail", "chunking",
                   "connect_timeout_seconds", "reply_timeout_seconds",
                   "final_reply_timeout_seconds", "data_block_seconds", "quit_seconds",
                   "idle_timeout_seconds", "pool_size", "starttls", "ca_file", "verify_name"}))
        return;
    r.string(j, path, "host", u.host);
    r.integer(j, path, "upstream.port", u.port);
    r.boolean(j, path, "xclient", u.xclient);
    r.boolean(j, path, "pipelining", u.pipelining);
    r.boolean(j, path, "defer_mail", u.defer_mail);
    r.boolean(j, path, "chunking", u.chunking);
    r.duration(j, path, "upstream.connect_timeout_seconds", u.connect_timeout);
    r.duration(j, path, "upstream.reply_timeout_seconds", u.reply_timeout);
    r.duration(j, path, "upstream.final_reply_timeout_seconds", u.final_reply_timeout);
    r.duration(j, path, "upstream.data_block_seconds", u.data_block_timeout);
    r.duration(j, path, "upstream.quit_seconds", u.quit_timeout);
    r.duration(j, path, "upstream.idle_timeout_seconds", u.idle_timeout);
    r.integer(j, path, "upstream.pool_size", u.pool_size);
    enumeration(r, j, path, "starttls", u.starttls,
                {{"off", UpstreamTls::off},
                 {"opportunistic", UpstreamTls::opportunistic},
                 {"required", UpstreamTls::required}});
    r.string(j, path, "ca_file", u.ca_file);
    r.string(j, path, "verify_name", u.verify_name);
}

void read_limits(Reader& r, const json& j, Limits& l) {
    const std::string path = "/limits";
    if (!r.object(j, path,
                  {"max_message_bytes", "max_recipients", "max_command_line", "max_text_line",
                   "max_header_bytes", "max_errors", "max_connections",
                   "max_connections_per_client", "max_transactions_per_session"}))
        return;
    // Minimums are the RFC 5321 4.5.3.1 floors; going below breaks senders.
    r.integer(j, path, "limits.max_message_bytes", l.max_message_bytes);
    r.integer(j, path, "limits.max_recipients", l.max_recipients);
    r.integer(j, path, "limits.max_command_line", l.max_command_line);
    r.integer(j, path, "limits.max_text_line", l.max_text_line);
    r.integer(j, path, "limits.max_header_bytes", l.max_header_bytes);
    r.integer(j, path, "limits.max_errors", l.max_errors);
    r.integer(j, path, "limits.max_connections", l.max_connections);
    r.integer(j, path, "limits.max_connections_per_client", l.max_connections_per_client);
    r.integer(j, path, "limits.max_transactions_per_session", l.max_transactions_per_session);
}

void read_timeouts(Reader& r, const json& j, Timeouts& t) {
    const std::string path = "/timeouts";
    if (!r.object(j, path,
                  {"command_seconds", "data_block_seconds", "data_grace_seconds",
                   "min_data_rate_bytes_per_second", "session_seconds"}))
        return;
    r.duration(j, path, "timeouts.command_seconds", t.command);
    r.duration(j, path, "timeouts.data_block_seconds", t.data_block);
    r.duration(j, path, "timeouts.data_grace_seconds", t.data_grace);
    r.integer(j, path, "timeouts.min_data_rate_bytes_per_second", t.min_data_rate);
    r.duration(j, path, "timeouts.session_seconds", t.session);
}

void read_auth_throttle(Reader& r, const json& j, AuthThrottle& a) {
    const std::string path = "/auth_throttle";
    if (!r.object(j, path,
                  {"client_failures", "user_failures", "window_seconds", "entries",
                   "failure_delay_ms", "max_pending"}))
        return;
    r.integer(j, path, "auth_throttle.client_failures", a.client_failures);
    r.integer(j, path, "auth_throttle.user_failures", a.user_failures);
    r.duration(j, path, "auth_throttle.window_seconds", a.window);
    r.integer(j, path, "auth_throttle.entries", a.entries);
    r.duration(j, path, "auth_throttle.failure_delay_ms", a.failure_delay);
    r.integer(j, path, "auth_throttle.max_pending", a.max_pending);
}

void read_rate_limit(Reader& r, const json& j, RateLimit& rl) {
    const std::string path = "/rate_limit";
    if (!r.object(j, path,
                  {"store", "report_only", "memory_entries", "address", "username", "password_file",
                   "key_prefix", "tls", "connect_timeout_ms", "timeout_ms", "on_error", "replicas",
                   "recipient_lease", "batch_ms", "block_percent", "seen_cache_entries"}))
        return;
    enumeration(r, j, path, "store", rl.store,
                {{"memory", RateLimitStore::memory}, {"redis", RateLimitStore::redis}});
    r.boolean(j, path, "report_only", rl.report_only);
    r.integer(j, path, "rate_limit.memory_entries", rl.memory_entries);
    if (j.contains("address")) {
        const auto& a = j.at("address");
        if (!a.is_string() || !resp::parse_host_port(a.get<std::string>()))
            r.error(pointer(path, "address"), "must be \"host:port\" or \"[ipv6]:port\"");
        else
            rl.address = a.get<std::string>();
    }
    r.string(j, path, "username", rl.username);
    r.string(j, path, "password_file", rl.password_file);
    if (j.contains("key_prefix")) {
        // Redis Cluster hashes only the first {...} of a key: a brace in
        // the prefix would put a tenant's keys in different slots, and one
        // script could no longer touch them all.
        const auto& k = j.at("key_prefix");
        const std::string* v = k.is_string() ? &k.get_ref<const std::string&>() : nullptr;
        if (!v || v->size() > 64 || std::any_of(v->begin(), v->end(), [](char c) {
                return c <= ' ' || c >= 127 || c == '{' || c == '}';
            }))
            r.error(pointer(path, "key_prefix"),
                    "must be at most 64 printable characters without '{', '}' or spaces");
        else
            rl.key_prefix = *v;
    }
    if (j.contains("tls")) {
        const auto& t = j.at("tls");
        const std::string tp = pointer(path, "tls");
        if (r.object(t, tp, {"enabled", "ca_file", "verify_name", "cert_file", "key_file"})) {
            r.boolean(t, tp, "enabled", rl.tls.enabled);
            r.string(t, tp, "ca_file", rl.tls.ca_file);
            r.string(t, tp, "verify_name", rl.tls.verify_name);
            r.string(t, tp, "cert_file", rl.tls.cert_file);
            r.string(t, tp, "key_file", rl.tls.key_file);
            if (rl.tls.cert_file.empty() != rl.tls.key_file.empty())
                r.error(tp, "cert_file and key_file go together");
        }
    }
    r.duration(j, path, "rate_limit.connect_timeout_ms", rl.connect_timeout);
    r.duration(j, path, "rate_limit.timeout_ms", rl.timeout);
    enumeration(
        r, j, path, "on_error", rl.on_error,
        {{"fail_open", StoreFailure::fail_open}, {"fail_closed", StoreFailure::fail_closed}});
    r.integer(j, path, "rate_limit.replicas", rl.replicas);
    r.integer(j, path, "rate_limit.recipient_lease", rl.recipient_lease);
    r.duration(j, path, "rate_limit.batch_ms", rl.batch);
    r.integer(j, path, "rate_limit.block_percent", rl.block_percent);
    r.integer(j, path, "rate_limit.seen_cache_entries", rl.seen_cache_entries);
    if (!rl.username.empty() && rl.password_file.empty())
        r.error(pointer(path, "username"), "needs password_file (AUTH <username> <password>)");
}

void read_anomalies(Reader& r, const json& j, Anomalies& a) {
    const std::string path = "/anomalies";
    if (!r.object(j, path,
                  {"enabled", "first_seen", "first_seen_ttl_seconds", "spike_multiple",
                   "spike_min_messages", "bucket_seconds", "seasonal_slots", "alpha_percent",
                   "tenant_label"}))
        return;
    r.boolean(j, path, "enabled", a.enabled);
    r.boolean(j, path, "first_seen", a.first_seen);
    r.duration(j, path, "anomalies.first_seen_ttl_seconds", a.first_seen_ttl);
    r.integer(j, path, "anomalies.spike_multiple", a.spike_multiple);
    r.integer(j, path, "anomalies.spike_min_messages", a.spike_min_messages);
    r.duration(j, path, "anomalies.bucket_seconds", a.bucket);
    r.integer(j, path, "anomalies.seasonal_slots", a.seasonal_slots);
    r.integer(j, path, "anomalies.alpha_percent", a.alpha_percent);
    r.boolean(j, path, "tenant_label", a.tenant_label);
}

Config read_config(Reader& r, const json& root, const std::filesystem::path& base_dir);

}  // namespace

Result<Config, std::vector<ConfigError>> parse_config(std::string_view json_text,
                                                      const std::filesystem::path& base_dir) {
    Reader r;
    auto parsed = json_reader::parse(json_text);
    if (!parsed) {
        for (const auto& e : parsed.error())
            r.errors.push_back({e.path, e.message, e.position.line, e.position.column});
        return unexpected(std::move(r.errors));
    }
    Config c = read_config(r, *parsed, base_dir);
    if (r.errors.empty()) return c;
    // Every error gets the line and column of its value: one more pass over
    // the text, only for a config that is refused anyway.
    std::vector<std::string> paths;
    for (const auto& e : r.errors)
        paths.push_back(e.path);
    const auto positions = json_reader::locate(json_text, paths);
    for (std::size_t i = 0; i < positions.size(); ++i) {
        r.errors[i].line = positions[i].line;
        r.errors[i].column = positions[i].column;
    }
    return unexpected(std::move(r.errors));
}

std::string format_error(const ConfigError& e) {
    return json_reader::where(e.path, {e.line, e.column}) + ": " + e.message;
}

namespace {

void read_policy_url(Reader& r, const json& root, const std::filesystem::path& base_dir,
                     Config& c) {
    if (!root.contains("policy_url")) {
        r.error("/policy_fetch", "policy_fetch needs policy_url");
        return;
    }
    r.string(root, "", "policy_url", c.policy_url);
    if (root.contains("policy_file") || root.contains("policy_dir"))
        r.error("/policy_url", "give one of policy_file, policy_dir and policy_url");
    else if (c.policy_url.rfind("https://", 0) != 0)
        r.error("/policy_url", "must be an https:// URL (the policy decides who may sign)");
    auto& f = c.policy_fetch;
    const std::string path = "/policy_fetch";
    if (root.contains("policy_fetch")) {
        const auto& j = root.at("policy_fetch");
        if (r.object(j, path,
                     {"ca_file", "verify_name", "bearer_token_file", "public_key_file",
                      "signature_url", "cache_file", "poll_seconds", "timeout_seconds", "max_bytes",
                      "backoff_max_seconds"})) {
            r.string(j, path, "ca_file", f.ca_file);
            r.string(j, path, "verify_name", f.verify_name);
            r.string(j, path, "bearer_token_file", f.bearer_token_file);
            r.string(j, path, "public_key_file", f.public_key_file);
            r.string(j, path, "signature_url", f.signature_url);
            r.string(j, path, "cache_file", f.cache_file);
            r.duration(j, path, "policy_fetch.poll_seconds", f.poll);
            r.duration(j, path, "policy_fetch.timeout_seconds", f.timeout);
            r.integer(j, path, "policy_fetch.max_bytes", f.max_bytes);
            r.duration(j, path, "policy_fetch.backoff_max_seconds", f.backoff_max);
        }
    }
    if (f.cache_file.empty())
        r.error(path + "/cache_file",
                "is required with policy_url: the last good policy is kept there, so a restart "
                "serves while the source is down");
    if (f.signature_url.empty() && !c.policy_url.empty()) f.signature_url = c.policy_url + ".sig";
    for (auto* file : {&f.ca_file, &f.bearer_token_file, &f.public_key_file, &f.cache_file})
        if (!file->empty() && std::filesystem::path(*file).is_relative())
            *file = (base_dir / *file).string();
    c.policy_file = f.cache_file;
}

Config read_config(Reader& r, const json& root, const std::filesystem::path& base_dir) {
    Config c;
    if (!r.object(root, "",
                  {"listeners",
                   "upstream",
                   "policy_file",
                   "policy_dir",
                   "credentials_file",
                   "policy_url",
                   "policy_fetch",
                   "admin",
                   "limits",
                   "timeouts",
                   "threads",
                   "hostname",
                   "verdict_header",
                   "audit_log",
                   "drain_timeout_seconds",
                   "tls",
                   "policy_poll_seconds",
                   "dns",
                   "auth_throttle",
                   "authserv_ids",
                   "rate_limit",
                   "anomalies",
                   "metrics"}))
        return c;

    if (root.contains("listeners")) {
        const auto& ls = root.at("listeners");
        if (!ls.is_array() || ls.empty()) {
            r.error("/listeners", "must be a non-empty array");
        } else {
            c.listeners.clear();
            for (std::size_t i = 0; i < ls.size(); ++i) {
                Listener l;
                read_listener(r, ls[i], pointer("/listeners", i), l);
                c.listeners.push_back(l);
            }
        }
    }
    if (root.contains("upstream")) read_upstream(r, root.at("upstream"), c.upstream);
    std::string policy_file = c.policy_file.string();
    r.string(root, "", "policy_file", policy_file);
    c.policy_file = policy_file;
    if (c.policy_file.is_relative()) c.policy_file = base_dir / c.policy_file;
    if (root.contains("policy_dir")) {
        std::string dir;
        r.string(root, "", "policy_dir", dir);
        if (root.contains("policy_file"))
            r.error("/policy_dir", "give policy_file or policy_dir, not both");
        else if (dir.empty())
            r.error("/policy_dir", "must name a directory");
        c.policy_dir = dir;
        if (c.policy_dir.is_relative()) c.policy_dir = base_dir / c.policy_dir;
        c.policy_file.clear();
    }
    if (root.contains("policy_url") || root.contains("policy_fetch"))
        read_policy_url(r, root, base_dir, c);
    std::string credentials;
    r.string(root, "", "credentials_file", credentials);
    c.credentials_file = credentials;
    if (!credentials.empty() && c.credentials_file.is_relative())
        c.credentials_file = base_dir / c.credentials_file;
    if (root.contains("admin")) {
        const auto& a = root.at("admin");
        if (r.object(a, "/admin", {"enabled", "address", "port"})) {
            r.boolean(a, "/admin", "enabled", c.admin.enabled);
            r.string(a, "/admin", "address", c.admin.address);
            r.integer(a, "/admin", "admin.port", c.admin.port);
        }
    }
    if (root.contains("limits")) read_limits(r, root.at("limits"), c.limits);
    if (root.contains("timeouts")) read_timeouts(r, root.at("timeouts"), c.timeouts);
    if (root.contains("dns")) read_dns(r, root.at("dns"), c.dns);
    if (root.contains("auth_throttle"))
        read_auth_throttle(r, root.at("auth_throttle"), c.auth_throttle);
    if (root.contains("rate_limit")) read_rate_limit(r, root.at("rate_limit"), c.rate_limit);
    if (root.contains("anomalies")) read_anomalies(r, root.at("anomalies"), c.anomalies);
    if (root.contains("metrics")) {
        const auto& m = root.at("metrics");
        if (r.object(m, "/metrics", {"tenant_label", "tenant_label_max_tenants"})) {
            enumeration(
                r, m, "/metrics", "tenant_label", c.metrics.tenant_label,
                {{"auto", TenantLabel::auto_}, {"on", TenantLabel::on}, {"off", TenantLabel::off}});
            r.integer(m, "/metrics", "metrics.tenant_label_max_tenants",
                      c.metrics.tenant_label_max_tenants);
        }
    }
    r.integer(root, "", "threads", c.threads);
    r.string(root, "", "hostname", c.hostname);
    r.string(root, "", "verdict_header", c.verdict_header);
    if (root.contains("authserv_ids"))
        read_authserv_ids(r, root.at("authserv_ids"), c.authserv_ids);
    r.string(root, "", "audit_log", c.audit_log);
    r.duration(root, "", "drain_timeout_seconds", c.drain_timeout);
    r.duration(root, "", "policy_poll_seconds", c.policy_poll);
    if (root.contains("tls")) {
        const auto& t = root.at("tls");
        if (r.object(t, "/tls", {"cert_file", "key_file"})) {
            r.string(t, "/tls", "cert_file", c.tls.cert_file);
            r.string(t, "/tls", "key_file", c.tls.key_file);
        }
    }
    // Like policy_file, files named in the config are relative to it.
    auto resolve = [&](std::string& f) {
        if (!f.empty() && std::filesystem::path(f).is_relative()) f = (base_dir / f).string();
    };
    resolve(c.tls.cert_file);
    resolve(c.tls.key_file);
    resolve(c.upstream.ca_file);
    resolve(c.rate_limit.password_file);
    resolve(c.rate_limit.tls.ca_file);
    resolve(c.rate_limit.tls.cert_file);
    resolve(c.rate_limit.tls.key_file);
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
        const auto& l = c.listeners[i];
        if ((l.starttls != StartTls::off || l.implicit_tls) &&
            (c.tls.cert_file.empty() || c.tls.key_file.empty()))
            r.error(pointer("/listeners", i), "TLS needs tls.cert_file and tls.key_file");
    }

    // RFC 5322 3.6.8: field names are printable ASCII except colon.
    if (std::any_of(c.verdict_header.begin(), c.verdict_header.end(),
                    [](char ch) { return ch <= ' ' || ch >= 127 || ch == ':'; }))
        r.error("/verdict_header", "must be a valid header field name (RFC 5322 3.6.8)");
    if (!normalize_domain(c.hostname, false).ok()) r.error("/hostname", "must be a domain name");
    return c;
}

}  // namespace

Result<Config, std::vector<ConfigError>> load_config(const std::filesystem::path& file) {
    const auto text = read_file(file);
    if (!text) return unexpected(std::vector<ConfigError>{{"", "cannot read " + file.string()}});
    return parse_config(*text, file.has_parent_path() ? file.parent_path() : ".");
}

std::uint64_t descriptors_needed(const Config& c) {
    constexpr std::uint64_t kHeadroom = 64;  // stdio, logs, policy reads, DNS, admin clients
    return std::uint64_t{c.limits.max_connections} * 2 + c.upstream.pool_size + c.listeners.size() +
           kHeadroom;
}

std::vector<std::string> config_warnings(const Config& c, std::uint64_t descriptor_limit) {
    std::vector<std::string> w;
    if (const auto need = descriptors_needed(c); descriptor_limit < need)
        w.push_back(fmt::format(
            "RLIMIT_NOFILE is {} but limits.max_connections {} needs {} descriptors (a client "
            "and an upstream socket each, the upstream pool, plus headroom): raise the limit "
            "(systemd LimitNOFILE=, "
            "ulimit -n, the container runtime's nofile) or lower limits.max_connections to {}",
            descriptor_limit, c.limits.max_connections, need,
            descriptor_limit > need - std::uint64_t{c.limits.max_connections} * 2
                ? (descriptor_limit - (need - std::uint64_t{c.limits.max_connections} * 2)) / 2
                : 0));
    if (c.upstream.final_reply_timeout < std::chrono::seconds(600))
        w.push_back(fmt::format(
            "upstream.final_reply_timeout_seconds is {} (RFC 5321 4.5.3.2.6 says 10 minutes): a "
            "relay slower than that may queue a message the client was told to retry, and the "
            "message is delivered twice (RFC 1047)",
            c.upstream.final_reply_timeout.count()));
    // RFC 5321 4.5.3.2 gives these as SHOULDs from experience with busy
    // relays; shorter cuts off senders on slow or congested paths.
    if (c.timeouts.command < std::chrono::seconds(300))
        w.push_back(fmt::format(
            "timeouts.command_seconds is {} (RFC 5321 4.5.3.2.7 says at least 5 minutes): a "
            "sender on a slow path may be disconnected in the middle of a transaction",
            c.timeouts.command.count()));
    if (c.timeouts.data_block < std::chrono::seconds(180))
        w.push_back(fmt::format(
            "timeouts.data_block_seconds is {} (RFC 5321 4.5.3.2.5 says 3 minutes): a sender "
            "on a slow path may be disconnected in the middle of its message",
            c.timeouts.data_block.count()));
    return w;
}

}  // namespace relaygate::config
