// PolicyHolder: load-lint-swap from text (a fetched policy), and the
// status /readyz shows.
#include "gateway/server/policy_holder.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "gateway/metrics/metrics.hpp"

using namespace relaygate;

TEST_CASE("PolicyHolder: a fetched policy is swapped in only when it loads") {
    metrics::Metrics metrics;
    policy::PolicySource source;
    source.file = "/nonexistent/cache.json";
    source.url = "https://policy.example/p.json";
    server::PolicyHolder holder(source, metrics);

    nlohmann::json status;
    holder.status(status);
    CHECK(status["policy_source"] == "url");
    CHECK(status["policy_origin"] == "https://policy.example/p.json");
    CHECK(status["policy_hash"] == "");

    const std::string good = R"({"version": 1, "tenants": {"demo": {"domains": ["demo.example"],
        "identities": [{"networks": ["192.0.2.0/24"]}]}}})";
    REQUIRE(holder.reload_text(good, source.url));
    const auto loaded = holder.get();
    REQUIRE(loaded);
    holder.status(status);
    CHECK(status["policy_hash"] == loaded->hash());
    CHECK(status["policy_last_error"] == "");
    CHECK(status["policy_age_seconds"] == 0.0);

    // Not a policy: the old one stays, the error is shown with its path.
    CHECK_FALSE(holder.reload_text(R"({"version": 1, "tenants": {"demo": {}}})", source.url));
    CHECK(holder.get() == loaded);
    holder.status(status);
    CHECK(status["policy_hash"] == loaded->hash());
    const std::string error = status["policy_last_error"];
    CHECK(error.find("https://policy.example/p.json: /tenants/demo") == 0);

    // A fetch error is shown until a load (or a 304) clears it.
    holder.set_error("policy.example:443 answered HTTP 500");
    holder.status(status);
    CHECK(status["policy_last_error"] == "policy.example:443 answered HTTP 500");
    REQUIRE(holder.reload_text(good, source.url));
    holder.status(status);
    CHECK(status["policy_last_error"] == "");

    // reload() reads the cached copy: missing here, so it fails and keeps.
    CHECK_FALSE(holder.reload());
    CHECK(holder.get() != nullptr);
}
