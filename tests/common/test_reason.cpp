// Tests for the reason table: codes, enhanced codes and labels are consistent.
#include "gateway/common/reason.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace relaygate;

TEST_CASE("every reason has a distinct label and a consistent reply") {
    std::set<std::string_view> labels;
    for (const auto& row : all_reasons()) {
        CAPTURE(row.label);
        CHECK(labels.insert(row.label).second);
        CHECK(row.smtp_code >= 200);
        CHECK(row.smtp_code < 600);
        // Enhanced status class must match the reply class (RFC 3463 2).
        REQUIRE(row.enhanced.size() >= 5);
        CHECK(row.enhanced[0] - '0' == row.smtp_code / 100);
        CHECK_FALSE(row.text.empty());
        // Labels are Prometheus-safe: [a-z_]+.
        for (char c : row.label)
            CHECK(((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9')));
        CHECK(reason_from_label(row.label) == row.reason);
    }
}

TEST_CASE("infrastructure faults are temporary") {
    for (auto r :
         {Reason::upstream_unavailable, Reason::upstream_failed, Reason::upstream_timeout,
          Reason::dns_tempfail, Reason::local_error, Reason::shutting_down, Reason::timeout})
        CHECK(is_tempfail(r));
    CHECK_FALSE(is_tempfail(Reason::tenant_unknown));
    CHECK(info(Reason::tls_required).smtp_code == 530);
    CHECK(info(Reason::auth_failed).enhanced == "5.7.8");
}
