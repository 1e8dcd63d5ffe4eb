#include "gateway/common/https_url.hpp"

#include <doctest/doctest.h>

using relaygate::parse_https_url;

TEST_CASE("parse_https_url: host, port and target") {
    auto u = parse_https_url("https://policy.example/bundles/relaygate.json?v=1");
    REQUIRE(u);
    CHECK(u->host == "policy.example");
    CHECK(u->port == 443);
    CHECK(u->target == "/bundles/relaygate.json?v=1");

    u = parse_https_url("HTTPS://127.0.0.1:8443");
    REQUIRE(u);
    CHECK(u->host == "127.0.0.1");
    CHECK(u->port == 8443);
    CHECK(u->target == "/");

    u = parse_https_url("https://[::1]:9443/p.json");
    REQUIRE(u);
    CHECK(u->host == "::1");
    CHECK(u->port == 9443);

    u = parse_https_url("https://p.example?x");
    REQUIRE(u);
    CHECK(u->target == "/?x");

    for (const char* bad :
         {"http://p.example/", "https://", "https:///p", "https://user@p.example/",
          "https://p.example:0/", "https://p.example:65536/", "https://p.example:/",
          "https://p.example:80x/", "https://[::1/", "https://[p.example]/",
          "https://p.example/a b", "https://p.example/#frag", "ftp://p.example/"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_https_url(bad));
    }
}
