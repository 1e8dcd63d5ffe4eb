// Tests for gateway/dns/resolv_conf: resolv.conf files written here, and
// every accepted and rejected server string form.
#include "gateway/dns/resolv_conf.hpp"

#include <doctest/doctest.h>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace relaygate::dns;

namespace {

std::filesystem::path write_temp(const std::string& content) {
    std::string templ =
        (std::filesystem::temp_directory_path() / "relaygate-resolv-XXXXXX").string();
    const int fd = mkstemp(templ.data());
    REQUIRE(fd >= 0);
    close(fd);
    std::ofstream(templ) << content;
    return templ;
}

}  // namespace

TEST_CASE("nameservers in order") {
    const auto path = write_temp(
        "# comment\n"
        "search example.com\n"
        "nameserver 192.0.2.53\n"
        "options ndots:1\n"
        "nameserver 2001:db8::53\n");
    auto servers = read_resolv_conf(path);
    std::filesystem::remove(path);
    REQUIRE_MESSAGE(servers.ok(), servers.error());
    CHECK(*servers == std::vector<std::string>{"192.0.2.53", "2001:db8::53"});
}

TEST_CASE("no nameserver, missing file") {
    const auto path = write_temp("search example.com\n");
    CHECK_FALSE(read_resolv_conf(path).ok());
    std::filesystem::remove(path);
    CHECK_FALSE(read_resolv_conf("/nonexistent/relaygate/resolv.conf").ok());
}

TEST_CASE("server strings") {
    auto e = parse_server("1.2.3.4");
    REQUIRE(e.ok());
    CHECK(e->address == "1.2.3.4");
    CHECK(e->port == 53);
    e = parse_server("1.2.3.4:5353");
    REQUIRE(e.ok());
    CHECK(e->port == 5353);
    e = parse_server("::1");
    REQUIRE(e.ok());
    CHECK(e->address == "::1");
    CHECK(e->port == 53);
    e = parse_server("[2001:db8::1]:5353");
    REQUIRE(e.ok());
    CHECK(e->address == "2001:db8::1");
    CHECK(e->port == 5353);
    for (const char* bad :
         {"", "1.2.3", "host.example", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:53x",
          "[::1]", "[::1]:", "[1.2.3.4]:53", "[::1:53", "::g", "1.2.3.4:-1"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_server(bad).ok());
    }
}
