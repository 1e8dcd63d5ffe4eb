// Tests for gateway/dns/packet: queries built here parse back with ldns;
// responses are built with ldns (TXT multi-string, CNAME chains and loops,
// negative answers with and without SOA, rcodes, TC) and every mismatch
// rule is exercised; every prefix of a response and garbage bytes must give
// an error, never a crash.
#include "gateway/dns/packet.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gateway/dns/ldns.hpp"

using namespace relaygate::dns;

namespace {

struct Reply {
    std::uint16_t id = 0x1234;
    bool qr = true;
    ldns_pkt_opcode opcode = LDNS_PACKET_QUERY;
    ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR;
    bool tc = false;
    std::vector<std::string> question{"example.com. IN TXT"};
    std::vector<std::string> answer;
    std::vector<std::string> authority;
};

void push(ldns_pkt* pkt, ldns_pkt_section section, const std::string& text, bool question) {
    ldns_rr* rr = nullptr;
    const ldns_status st = question
                               ? ldns_rr_new_question_frm_str(&rr, text.c_str(), nullptr, nullptr)
                               : ldns_rr_new_frm_str(&rr, text.c_str(), 3600, nullptr, nullptr);
    REQUIRE_MESSAGE(st == LDNS_STATUS_OK, text);
    REQUIRE(ldns_pkt_push_rr(pkt, section, rr));
}

std::vector<std::uint8_t> wire(const Reply& r) {
    PktPtr pkt(ldns_pkt_new());
    ldns_pkt_set_id(pkt.get(), r.id);
    ldns_pkt_set_qr(pkt.get(), r.qr);
    ldns_pkt_set_rd(pkt.get(), true);
    ldns_pkt_set_ra(pkt.get(), true);
    ldns_pkt_set_tc(pkt.get(), r.tc);
    ldns_pkt_set_opcode(pkt.get(), r.opcode);
    ldns_pkt_set_rcode(pkt.get(), r.rcode);
    for (const auto& q : r.question)
        push(pkt.get(), LDNS_SECTION_QUESTION, q, true);
    for (const auto& a : r.answer)
        push(pkt.get(), LDNS_SECTION_ANSWER, a, false);
    for (const auto& a : r.authority)
        push(pkt.get(), LDNS_SECTION_AUTHORITY, a, false);
    std::uint8_t* raw = nullptr;
    std::size_t size = 0;
    REQUIRE(ldns_pkt2wire(&raw, pkt.get(), &size) == LDNS_STATUS_OK);
    WirePtr owned(raw);
    return {raw, raw + size};
}

Query txt_query(std::string name = "example.com") {
    return Query{std::move(name), RrType::txt, 0x1234};
}

Answer parse_ok(const Reply& r, const Query& q) {
    const auto w = wire(r);
    auto a = parse_response(w, q);
    REQUIRE_MESSAGE(a.ok(), a.error());
    return *a;
}

const char* kSoa =
    "example.com. 600 IN SOA ns.example.com. host.example.com. 1 7200 3600 86400 300";

}  // namespace

TEST_CASE("type and status names") {
    CHECK(to_string(RrType::txt) == "TXT");
    CHECK(to_string(RrType::aaaa) == "AAAA");
    CHECK(rr_type_from_string("cname") == RrType::cname);
    CHECK(rr_type_from_string("Ptr") == RrType::ptr);
    CHECK_FALSE(rr_type_from_string("MX"));
    CHECK(to_string(Status::nxdomain) == "nxdomain");
    CHECK(to_string(Status::timeout) == "timeout");
    CHECK(normalize_name("Mail.Example.COM.") == "mail.example.com");
}

TEST_CASE("build_query parses back with ldns") {
    for (bool tcp : {false, true}) {
        auto q = build_query(Query{"Selector._DomainKey.Example.com.", RrType::txt, 0xbeef}, tcp);
        REQUIRE(q.ok());
        std::span<const std::uint8_t> bytes(*q);
        if (tcp) {
            REQUIRE(bytes.size() > 2);
            CHECK(((bytes[0] << 8) | bytes[1]) == bytes.size() - 2);
            bytes = bytes.subspan(2);
        }
        ldns_pkt* raw = nullptr;
        REQUIRE(ldns_wire2pkt(&raw, bytes.data(), bytes.size()) == LDNS_STATUS_OK);
        PktPtr pkt(raw);
        CHECK(ldns_pkt_id(pkt.get()) == 0xbeef);
        CHECK_FALSE(ldns_pkt_qr(pkt.get()));
        CHECK(ldns_pkt_rd(pkt.get()));
        CHECK(ldns_pkt_get_opcode(pkt.get()) == LDNS_PACKET_QUERY);
        CHECK(ldns_pkt_qdcount(pkt.get()) == 1);
        CHECK(ldns_pkt_edns(pkt.get()));
        CHECK(ldns_pkt_edns_udp_size(pkt.get()) == 1232);
        const ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(pkt.get()), 0);
        CStrPtr owner(ldns_rdf2str(ldns_rr_owner(question)));
        CHECK(std::string(owner.get()) == "selector._domainkey.example.com.");
        CHECK(ldns_rr_get_type(question) == LDNS_RR_TYPE_TXT);
        CHECK(ldns_rr_get_class(question) == LDNS_RR_CLASS_IN);
    }
    auto ptr = build_query(Query{"4.3.2.1.in-addr.arpa", RrType::ptr, 1});
    CHECK(ptr.ok());
}

TEST_CASE("build_query rejects invalid names") {
    for (std::string bad : {std::string(""), std::string("."), std::string("a..b"),
                            std::string(".a"), std::string("a b.example"), std::string("a\x80"),
                            std::string("tab\t.example"), std::string(64, 'x') + ".example"}) {
        CAPTURE(bad);
        CHECK_FALSE(build_query(Query{bad, RrType::a, 1}).ok());
    }
    CHECK(build_query(Query{std::string(63, 'x') + ".example", RrType::a, 1}).ok());
    // 4 labels of 63 plus their length octets and the root: 257 > 255.
    std::string long_name;
    for (int i = 0; i < 4; ++i)
        long_name += std::string(63, 'a') + ".";
    CHECK_FALSE(build_query(Query{long_name, RrType::a, 1}).ok());
    long_name = std::string(63, 'a') + "." + std::string(63, 'a') + "." + std::string(63, 'a') +
                "." + std::string(61, 'a');  // exactly 255 octets on the wire
    CHECK(build_query(Query{long_name, RrType::a, 1}).ok());
}

TEST_CASE("TXT with several character-strings is concatenated per record") {
    Reply r;
    r.answer = {"example.com. 300 IN TXT \"v=spf1 \" \"include:a.example\" \" -all\"",
                "example.com. 120 IN TXT \"second\""};
    const Answer a = parse_ok(r, txt_query());
    CHECK(a.status == Status::ok);
    REQUIRE(a.records.size() == 2);
    CHECK(a.records[0] == "v=spf1 include:a.example -all");
    CHECK(a.records[1] == "second");
    CHECK(a.ttl == 120);
    CHECK(a.cname_target.empty());
    CHECK_FALSE(a.follow);
    CHECK_FALSE(a.truncated);
}

TEST_CASE("TXT keeps raw bytes") {
    Reply r;
    r.answer = {"example.com. 300 IN TXT \"a\\000b\\255\""};
    const Answer a = parse_ok(r, txt_query());
    REQUIRE(a.records.size() == 1);
    CHECK(a.records[0] == std::string("a\0b\xff", 4));
}

TEST_CASE("A, AAAA, PTR and CNAME records") {
    Reply r;
    r.question = {"Host.Example.com. IN A"};
    r.answer = {"host.example.com. 60 IN A 192.0.2.1", "HOST.example.com. 30 IN A 192.0.2.2"};
    Answer a = parse_ok(r, Query{"host.example.com.", RrType::a, 0x1234});
    CHECK(a.records == std::vector<std::string>{"192.0.2.1", "192.0.2.2"});
    CHECK(a.ttl == 30);

    r.question = {"host.example.com. IN AAAA"};
    r.answer = {"host.example.com. 60 IN AAAA 2001:db8::1"};
    a = parse_ok(r, Query{"host.example.com", RrType::aaaa, 0x1234});
    CHECK(a.records == std::vector<std::string>{"2001:db8::1"});

    r.question = {"1.2.0.192.in-addr.arpa. IN PTR"};
    r.answer = {"1.2.0.192.in-addr.arpa. 60 IN PTR Mail.Example.COM."};
    a = parse_ok(r, Query{"1.2.0.192.in-addr.arpa", RrType::ptr, 0x1234});
    CHECK(a.records == std::vector<std::string>{"mail.example.com"});

    // Asking for the CNAME itself returns it and does not follow it.
    r.question = {"www.example.com. IN CNAME"};
    r.answer = {"www.example.com. 60 IN CNAME Host.Example.com.",
                "host.example.com. 60 IN A 192.0.2.1"};
    a = parse_ok(r, Query{"www.example.com", RrType::cname, 0x1234});
    CHECK(a.status == Status::ok);
    CHECK(a.records == std::vector<std::string>{"host.example.com"});
    CHECK(a.cname_target.empty());
}

TEST_CASE("CNAME chains inside one answer are followed") {
    Reply r;
    r.answer = {"example.com. 300 IN CNAME b.example.net.",
                "b.example.net. 200 IN CNAME C.example.org.", "c.example.org. 400 IN TXT \"final\"",
                "unrelated.example. 1 IN TXT \"not ours\""};
    Answer a = parse_ok(r, txt_query());
    CHECK(a.status == Status::ok);
    CHECK(a.records == std::vector<std::string>{"final"});
    CHECK(a.cname_target == "c.example.org");
    CHECK(a.ttl == 200);
    CHECK_FALSE(a.follow);

    SUBCASE("chain ending without records: follow") {
        r.answer = {"example.com. 300 IN CNAME b.example.net."};
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::nodata);
        CHECK(a.follow);
        CHECK(a.cname_target == "b.example.net");
        CHECK(a.records.empty());
    }
    SUBCASE("loop") {
        r.answer = {"example.com. 300 IN CNAME b.example.net.",
                    "b.example.net. 300 IN CNAME example.com."};
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::error);
        CHECK(a.detail == "CNAME loop");
        CHECK(a.records.empty());
    }
    SUBCASE("self loop") {
        r.answer = {"example.com. 300 IN CNAME EXAMPLE.com."};
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::error);
    }
    SUBCASE("a target that is not a host name is not followed") {
        r.answer = {"example.com. 300 IN CNAME a\\.b.example.", "a\\.b.example. 300 IN TXT \"x\""};
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::error);
        CHECK(a.detail == "CNAME target is not a host name");
    }
    SUBCASE("eight hops are followed, nine are not") {
        r.answer.clear();
        std::string from = "example.com.";
        for (int i = 1; i <= 9; ++i) {
            const std::string to = "n" + std::to_string(i) + ".example.";
            r.answer.push_back(from + " 300 IN CNAME " + to);
            from = to;
        }
        r.answer.push_back(from + " 300 IN TXT \"deep\"");
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::error);
        CHECK(a.detail == "CNAME chain too long");
        r.answer.erase(r.answer.begin() + 8);  // n8 -> n9 gone: n8 has no TXT
        r.answer.back() = "n8.example. 300 IN TXT \"deep\"";
        a = parse_ok(r, txt_query());
        CHECK(a.status == Status::ok);
        CHECK(a.cname_target == "n8.example");
    }
}

TEST_CASE("negative answers") {
    Reply r;
    SUBCASE("NXDOMAIN with SOA: min(SOA TTL, MINIMUM)") {
        r.rcode = LDNS_RCODE_NXDOMAIN;
        r.authority = {kSoa};
        const Answer a = parse_ok(r, txt_query());
        CHECK(a.status == Status::nxdomain);
        CHECK(a.ttl == 300);
        CHECK(a.records.empty());
    }
    SUBCASE("NXDOMAIN with a SOA TTL below MINIMUM") {
        r.rcode = LDNS_RCODE_NXDOMAIN;
        r.authority = {"example.com. 60 IN SOA ns. host. 1 7200 3600 86400 300"};
        CHECK(parse_ok(r, txt_query()).ttl == 60);
    }
    SUBCASE("NXDOMAIN without SOA: not cacheable") {
        r.rcode = LDNS_RCODE_NXDOMAIN;
        const Answer a = parse_ok(r, txt_query());
        CHECK(a.status == Status::nxdomain);
        CHECK(a.ttl == 0);
    }
    SUBCASE("NODATA") {
        r.authority = {kSoa};
        r.answer = {"example.com. 300 IN A 192.0.2.1"};  // another type
        const Answer a = parse_ok(r, txt_query());
        CHECK(a.status == Status::nodata);
        CHECK_FALSE(a.follow);
        CHECK(a.ttl == 300);
    }
    SUBCASE("NXDOMAIN at the end of a CNAME chain") {
        r.rcode = LDNS_RCODE_NXDOMAIN;
        r.answer = {"example.com. 300 IN CNAME gone.example.net."};
        r.authority = {kSoa};
        const Answer a = parse_ok(r, txt_query());
        CHECK(a.status == Status::nxdomain);
        CHECK(a.cname_target == "gone.example.net");
        CHECK_FALSE(a.follow);
    }
}

TEST_CASE("rcodes") {
    Reply r;
    r.rcode = LDNS_RCODE_SERVFAIL;
    CHECK(parse_ok(r, txt_query()).status == Status::servfail);
    r.rcode = LDNS_RCODE_REFUSED;
    Answer a = parse_ok(r, txt_query());
    CHECK(a.status == Status::error);
    CHECK(a.detail == "rcode REFUSED");
    r.rcode = LDNS_RCODE_FORMERR;
    CHECK(parse_ok(r, txt_query()).status == Status::error);
    // Records in a REFUSED answer are not used.
    r.rcode = LDNS_RCODE_REFUSED;
    r.answer = {"example.com. 300 IN TXT \"x\""};
    a = parse_ok(r, txt_query());
    CHECK(a.records.empty());
}

TEST_CASE("TC bit") {
    Reply r;
    r.tc = true;
    const Answer a = parse_ok(r, txt_query());
    CHECK(a.truncated);
}

TEST_CASE("mismatches are errors") {
    const Query q = txt_query();
    auto check_mismatch = [&](const Reply& r) {
        const auto w = wire(r);
        CHECK_FALSE(parse_response(w, q).ok());
    };
    Reply r;
    r.answer = {"example.com. 300 IN TXT \"x\""};
    SUBCASE("id") {
        r.id = 0x1235;
        check_mismatch(r);
    }
    SUBCASE("QR=0") {
        r.qr = false;
        check_mismatch(r);
    }
    SUBCASE("opcode") {
        r.opcode = LDNS_PACKET_STATUS;
        check_mismatch(r);
    }
    SUBCASE("question name") {
        r.question = {"example.org. IN TXT"};
        check_mismatch(r);
    }
    SUBCASE("question type") {
        r.question = {"example.com. IN A"};
        check_mismatch(r);
    }
    SUBCASE("question class") {
        r.question = {"example.com. CH TXT"};
        check_mismatch(r);
    }
    SUBCASE("no question") {
        r.question.clear();
        check_mismatch(r);
    }
    SUBCASE("two questions") {
        r.question.push_back("example.com. IN TXT");
        check_mismatch(r);
    }
    SUBCASE("question name in other case matches") {
        r.question = {"EXAMPLE.Com. IN TXT"};
        const auto w = wire(r);
        CHECK(parse_response(w, q).ok());
    }
}

TEST_CASE("every prefix of a response and garbage bytes: an error, no crash") {
    Reply r;
    r.answer = {"example.com. 300 IN CNAME b.example.net.",
                "b.example.net. 300 IN TXT \"a\" \"b\""};
    r.authority = {kSoa};
    const auto w = wire(r);
    const Query q = txt_query();
    REQUIRE(parse_response(w, q).ok());
    for (std::size_t n = 0; n < w.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(parse_response(std::span(w.data(), n), q).ok());
    }
    // Every byte replaced by a few values: whatever parses must be coherent.
    for (std::size_t i = 0; i < w.size(); ++i) {
        for (std::uint8_t v : {0x00, 0x01, 0x3f, 0xc0, 0xff}) {
            auto copy = w;
            copy[i] = v;
            auto a = parse_response(copy, q);
            if (a.ok()) CHECK((a->status == Status::ok) == !a->records.empty());
        }
    }
    const std::vector<std::uint8_t> garbage(512, 0xff);
    CHECK_FALSE(parse_response(garbage, q).ok());
    CHECK_FALSE(parse_response({}, q).ok());
}
