// The data path's metrics with labels known at start (reply class,
// decision point, upstream command): each series appears at its first use
// and only then, counts every call from every thread, and a value not
// known at start still counts.
#include "gateway/metrics/metrics.hpp"

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

using relaygate::metrics::Metrics;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("reply classes: counted by class, a series only once used") {
    Metrics m;
    m.smtp_reply(250);
    m.smtp_reply(221);
    m.smtp_reply(550);
    m.smtp_reply(999);  // no such class: counted as 0xx
    const std::string text = m.serialize();
    CHECK(has_line(text, R"(relaygate_smtp_replies_total{class="2xx"} 2)"));
    CHECK(has_line(text, R"(relaygate_smtp_replies_total{class="5xx"} 1)"));
    CHECK(has_line(text, R"(relaygate_smtp_replies_total{class="0xx"} 1)"));
    CHECK(text.find(R"(class="3xx")") == std::string::npos);
    CHECK(text.find(R"(class="4xx")") == std::string::npos);
}

TEST_CASE("decision points and upstream commands, known at start or not") {
    Metrics m;
    m.decision_latency("header", 0.001);
    m.decision_latency("header", 0.002);
    m.decision_latency("rcpt", 0.003);  // not one of the three: the slow way
    m.upstream_reply_latency("dot", 0.01);
    m.upstream_reply_latency("bdat", 0.02);
    const std::string text = m.serialize();
    CHECK(has_line(text, R"(relaygate_decision_duration_seconds_count{point="header"} 2)"));
    CHECK(has_line(text, R"(relaygate_decision_duration_seconds_count{point="rcpt"} 1)"));
    CHECK(text.find(R"(point="mail_from")") == std::string::npos);
    CHECK(has_line(text, R"(relaygate_upstream_reply_duration_seconds_count{command="dot"} 1)"));
    CHECK(has_line(text, R"(relaygate_upstream_reply_duration_seconds_count{command="bdat"} 1)"));
    CHECK(text.find(R"(command="ehlo")") == std::string::npos);
}

TEST_CASE("threads that make the same series at once count into one") {
    Metrics m;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&m] {
            for (int i = 0; i < 5000; ++i) {
                m.smtp_reply(250);
                m.decision_latency("mail_from", 0.0001);
            }
        });
    for (auto& t : threads)
        t.join();
    const std::string text = m.serialize();
    CHECK(has_line(text, R"(relaygate_smtp_replies_total{class="2xx"} 20000)"));
    CHECK(has_line(text, R"(relaygate_decision_duration_seconds_count{point="mail_from"} 20000)"));
}
