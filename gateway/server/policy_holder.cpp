// Policy reload: validate fully, then swap; never a half-loaded policy.
#include "gateway/server/policy_holder.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "gateway/metrics/metrics.hpp"
#include "gateway/server/log.hpp"

namespace relaygate::server {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

bool PolicyHolder::reload() {
    const auto started = std::chrono::steady_clock::now();
    const auto previous = get();  // held: the new policy may share its tables
    auto loaded = policy::load_policy(source_, previous.get());
    return adopt(std::move(loaded),
                 source_.url.empty() ? source_.describe() : source_.file.string(),
                 seconds_since(started));
}

bool PolicyHolder::reload_text(std::string_view text, const std::string& origin) {
    const auto started = std::chrono::steady_clock::now();
    const auto previous = get();
    auto loaded = policy::load_policy_text(source_, text, previous.get());
    return adopt(std::move(loaded), origin, seconds_since(started));
}

bool PolicyHolder::reload_descriptor(int fd, const std::filesystem::path& name,
                                     const std::string& origin) {
    const auto started = std::chrono::steady_clock::now();
    const auto previous = get();
    auto loaded = policy::load_policy_descriptor(source_, fd, name, previous.get());
    return adopt(std::move(loaded), origin, seconds_since(started));
}

bool PolicyHolder::adopt(policy::LoadResult loaded, const std::string& source,
                         double load_seconds) {
    if (!loaded) {
        for (const auto& e : loaded.error())
            log_error("policy_error", {{"file", e.file.empty() ? source : e.file},
                                       {"path", e.path},
                                       {"line", e.line},
                                       {"column", e.column},
                                       {"rule", e.rule},
                                       {"message", e.message}});
        const bool had_one = get() != nullptr;
        metrics_.policy_reload("failure");
        if (!loaded.error().empty()) {
            const auto& first = loaded.error().front();
            set_error((first.file.empty() ? source + ": " : "") + policy::format_diagnostic(first));
        }
        log_error(
            "policy_reload_failed",
            {{"file", source}, {"errors", loaded.error().size()}, {"keeping_previous", had_one}});
        return false;
    }
    auto p = std::move(loaded).value();
    for (const auto& w : p->warnings())
        log_warn("policy_warning", {{"file", w.file.empty() ? source : w.file},
                                    {"path", w.path},
                                    {"line", w.line},
                                    {"column", w.column},
                                    {"rule", w.rule},
                                    {"message", w.message}});
    metrics_.policy_loaded(p->hash(), p->tenant_count(), p->domain_count(), load_seconds);
    const std::size_t removed =
        metrics_.retain_tenants([&p](std::string_view t) { return p->has_tenant(t); });
    metrics_.policy_reload("success");
    // How much of the domain index an incremental reload shares with the
    // policy it replaces (0 after a full load).
    const auto previous = get();
    log_info("policy_loaded",
             {{"file", source},
              {"load_seconds", load_seconds},
              {"hash", p->hash()},
              {"tenants", p->tenant_count()},
              {"domains", p->domain_count()},
              {"domain_shards", p->domain_index().shard_count()},
              {"domain_shards_shared",
               previous ? p->domain_index().shards_shared_with(previous->domain_index()) : 0},
              {"metric_series_removed", removed}});
    {
        std::lock_guard lock(mutex_);
        current_.swap(p);
        loaded_at_ = std::chrono::steady_clock::now();
        last_error_.clear();
    }
    // `p` now holds the previous policy: freed here, outside the lock, if
    // no session still holds it (tens of MB at 100k tenants).
    return true;
}

void PolicyHolder::set_error(std::string error) {
    std::lock_guard lock(mutex_);
    last_error_ = std::move(error);
}

void PolicyHolder::status(nlohmann::json& out) const {
    std::lock_guard lock(mutex_);
    out["policy_source"] = source_.kind();
    out["policy_origin"] = source_.describe();
    out["policy_hash"] = current_ ? current_->hash() : "";
    out["policy_age_seconds"] = current_ ? std::floor(seconds_since(loaded_at_)) : 0.0;
    out["policy_last_error"] = last_error_;
}

}  // namespace relaygate::server
