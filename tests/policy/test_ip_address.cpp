// Tests for IpAddress, Cidr parsing and the longest-prefix CidrIndex.
#include "policy/engine/ip_address.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <array>
#include <random>
#include <string>
#include <vector>

#include "policy/engine/cidr_index.hpp"

using namespace relaygate::policy;

TEST_CASE("addresses parse and print") {
    CHECK(IpAddress::parse("192.0.2.1")->to_string() == "192.0.2.1");
    CHECK(IpAddress::parse("2001:DB8::1")->to_string() == "2001:db8::1");
    CHECK_FALSE(IpAddress::parse(""));
    CHECK_FALSE(IpAddress::parse("192.0.2.256"));
    CHECK_FALSE(IpAddress::parse("192.0.2"));
    CHECK_FALSE(IpAddress::parse("[::1]"));
    CHECK_FALSE(IpAddress::parse("fe80::1%eth0"));
    CHECK_FALSE(IpAddress::parse(std::string(100, '1')));
}

TEST_CASE("IPv4 prints as inet_ntop does, for edge and random addresses; networks append") {
    std::mt19937 rng(7);
    std::vector<std::array<unsigned, 4>> cases{
        {0, 0, 0, 0}, {255, 255, 255, 255}, {10, 0, 0, 1}, {1, 22, 100, 9}};
    auto octet = [&rng] { return static_cast<unsigned>(rng() % 256); };
    for (int i = 0; i < 2000; ++i)
        cases.push_back({octet(), octet(), octet(), octet()});
    for (const auto& b : cases) {
        const unsigned char raw[4] = {
            static_cast<unsigned char>(b[0]), static_cast<unsigned char>(b[1]),
            static_cast<unsigned char>(b[2]), static_cast<unsigned char>(b[3])};
        char expected[INET_ADDRSTRLEN];
        REQUIRE(inet_ntop(AF_INET, raw, expected, sizeof expected));
        auto ip = IpAddress::parse(expected);
        REQUIRE(ip);
        CHECK(ip->to_string() == expected);
    }
    std::string out = "network ";
    parse_cidr("198.51.100.0/24").cidr->append_to(out);
    parse_cidr("2001:db8::/32").cidr->append_to(out);
    CHECK(out == "network 198.51.100.0/242001:db8::/32");
}

TEST_CASE("IPv4-mapped IPv6 is the IPv4 address") {
    auto mapped = IpAddress::parse("::ffff:40.92.1.2");
    REQUIRE(mapped);
    CHECK(mapped->is_v4());
    CHECK(*mapped == *IpAddress::parse("40.92.1.2"));
    auto c = parse_cidr("::ffff:40.92.0.0/111");
    REQUIRE(c.cidr);
    CHECK(c.cidr->to_string() == "40.92.0.0/15");
    CHECK(parse_cidr("::ffff:0:0/95").error == CidrError::prefix_length);
}

TEST_CASE("CIDR parsing refuses host bits and bad lengths") {
    CHECK(parse_cidr("198.51.100.0/24").cidr->to_string() == "198.51.100.0/24");
    CHECK(parse_cidr("198.51.100.7").cidr->to_string() == "198.51.100.7/32");
    CHECK(parse_cidr("2001:db8::/32").cidr->to_string() == "2001:db8::/32");
    CHECK(parse_cidr("198.51.100.7/24").error == CidrError::host_bits_set);
    CHECK(parse_cidr("2001:db8::1/64").error == CidrError::host_bits_set);
    CHECK(parse_cidr("198.51.100.0/33").error == CidrError::prefix_length);
    CHECK(parse_cidr("198.51.100.0/").error == CidrError::prefix_length);
    CHECK(parse_cidr("198.51.100.0/-1").error == CidrError::prefix_length);
    CHECK(parse_cidr("198.51.100.0/024").error == std::nullopt);  // leading zero is still 24
    CHECK(parse_cidr("::/129").error == CidrError::prefix_length);
    CHECK(parse_cidr("example.com/24").error == CidrError::syntax);
    CHECK(parse_cidr("0.0.0.0/0").cidr->prefix_len == 0);
}

TEST_CASE("overlap is containment either way, never across families") {
    auto a = *parse_cidr("40.92.0.0/15").cidr;
    CHECK(a.overlaps(*parse_cidr("40.93.4.0/24").cidr));
    CHECK(parse_cidr("40.0.0.0/8").cidr->overlaps(a));
    CHECK_FALSE(a.overlaps(*parse_cidr("40.94.0.0/16").cidr));
    CHECK_FALSE(parse_cidr("::/0").cidr->overlaps(a));
}

TEST_CASE("longest prefix wins") {
    CidrIndex idx;
    CHECK(idx.insert(*parse_cidr("10.0.0.0/8").cidr, 0) == 0);
    CHECK(idx.insert(*parse_cidr("10.1.0.0/16").cidr, 1) == 1);
    CHECK(idx.insert(*parse_cidr("10.1.2.0/24").cidr, 2) == 2);
    CHECK(idx.insert(*parse_cidr("10.1.0.0/16").cidr, 9) == 1);  // existing slot returned
    CHECK(idx.insert(*parse_cidr("2001:db8::/32").cidr, 3) == 3);
    CHECK(idx.longest_match(*IpAddress::parse("10.1.2.3"))->slot == 2);
    CHECK(idx.longest_match(*IpAddress::parse("10.1.3.3"))->slot == 1);
    CHECK(idx.longest_match(*IpAddress::parse("10.2.3.3"))->slot == 0);
    CHECK_FALSE(idx.longest_match(*IpAddress::parse("11.0.0.1")));
    CHECK(idx.longest_match(*IpAddress::parse("2001:db8:1::1"))->slot == 3);
    CHECK_FALSE(idx.longest_match(*IpAddress::parse("2001:db9::1")));
    std::vector<std::uint32_t> all;
    idx.for_each_match(*IpAddress::parse("10.1.2.3"),
                       [&](const CidrIndex::Match& m) { all.push_back(m.slot); });
    CHECK(all == std::vector<std::uint32_t>{2, 1, 0});
    CHECK(idx.size() == 4);
}
