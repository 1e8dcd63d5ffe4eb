// Policy reload: validate fully, then swap; never a half-loaded policy.
#include "gateway/server/policy_holder.hpp"

#include "gateway/metrics/metrics.hpp"
#include "gateway/server/log.hpp"

namespace relaygate::server {

bool PolicyHolder::reload() {
    auto loaded = policy::Policy::load_file(file_);
    if (!loaded) {
        for (const auto& e : loaded.error())
            log_error("policy_error", {{"file", file_.string()},
                                       {"path", e.path},
                                       {"line", e.line},
                                       {"column", e.column},
                                       {"rule", e.rule},
                                       {"message", e.message}});
        const bool had_one = get() != nullptr;
        metrics_.policy_reload("failure");
        log_error("policy_reload_failed", {{"file", file_.string()},
                                           {"errors", loaded.error().size()},
                                           {"keeping_previous", had_one}});
        return false;
    }
    auto p = std::move(loaded).value();
    for (const auto& w : p->warnings())
        log_warn("policy_warning", {{"path", w.path},
                                    {"line", w.line},
                                    {"column", w.column},
                                    {"rule", w.rule},
                                    {"message", w.message}});
    metrics_.policy_loaded(p->hash(), p->tenant_count(), p->domain_count());
    const std::size_t removed = metrics_.retain_tenants(p->tenant_ids());
    metrics_.policy_reload("success");
    log_info("policy_loaded", {{"file", file_.string()},
                               {"hash", p->hash()},
                               {"tenants", p->tenant_count()},
                               {"domains", p->domain_count()},
                               {"metric_series_removed", removed}});
    std::lock_guard lock(mutex_);
    current_ = std::move(p);
    return true;
}

}  // namespace relaygate::server
