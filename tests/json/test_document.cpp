// Tests for gateway/json: RFC 6901 pointers, duplicate keys, and the line
// and column of any value, at any depth and split across lines.
#include "gateway/json/document.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>
#include <tuple>
#include <vector>

using namespace relaygate::json_reader;

TEST_CASE("pointers escape ~ and / (RFC 6901 3)") {
    CHECK(pointer("", "a") == "/a");
    CHECK(pointer("/a", "b/c") == "/a/b~1c");
    CHECK(pointer("", "~x~/") == "/~0x~0~1");
    CHECK(pointer("", "") == "/");
    CHECK(pointer("/list", std::size_t{12}) == "/list/12");
}

TEST_CASE("a valid document parses") {
    auto doc = parse(R"({"a": [1, {"b": null}], "c": "d"})");
    REQUIRE(doc);
    CHECK((*doc)["a"][1].contains("b"));
    CHECK((*doc)["c"] == "d");
}

TEST_CASE("syntax errors have a line and column") {
    auto doc = parse("{\n  \"a\": 1,\n  \"b\": tru\n}");
    REQUIRE_FALSE(doc);
    REQUIRE(doc.error().size() == 1);
    const auto& e = doc.error()[0];
    CHECK(e.rule == "json_syntax");
    CHECK(e.path.empty());
    CHECK(e.position.line == 3);
    CHECK(e.position.column >= 8);
}

TEST_CASE("duplicate keys are refused with the path and position of the second") {
    auto doc = parse("{\"x\": {\"k\": 1,\n       \"k\": 2}, \"y\": [{\"a/b\": 0, \"a/b\": 1}]}");
    REQUIRE_FALSE(doc);
    REQUIRE(doc.error().size() == 2);
    CHECK(doc.error()[0].rule == "duplicate_key");
    CHECK(doc.error()[0].path == "/x/k");
    CHECK(doc.error()[0].position.line == 2);
    CHECK(doc.error()[0].position.column == 13);
    CHECK(doc.error()[1].path == "/y/0/a~1b");
    CHECK(doc.error()[1].position.line == 2);
    CHECK(doc.error()[1].position.column == 41);
}

TEST_CASE("locate: every kind of value, deep, after numbers and across lines") {
    const std::string text =
        "{\n"
        "  \"n\": 12,\"s\" : \"x\",\n"
        "  \"deep\": {\"list\": [10, 20 ,\n"
        "     {\"t\": true, \"f\": false, \"z\": null, \"e\": {}, \"a\": []}]},\n"
        "  \"~/\": -1.5e3\n"
        "}\n";
    const std::vector<std::string> paths = {"",
                                            "/n",
                                            "/s",
                                            "/deep",
                                            "/deep/list",
                                            "/deep/list/0",
                                            "/deep/list/1",
                                            "/deep/list/2",
                                            "/deep/list/2/t",
                                            "/deep/list/2/f",
                                            "/deep/list/2/z",
                                            "/deep/list/2/e",
                                            "/deep/list/2/a",
                                            "/~0~1",
                                            "/missing",
                                            "/deep/list/3"};
    const auto p = locate(text, paths);
    REQUIRE(p.size() == paths.size());
    auto at = [&](std::size_t i) { return std::pair(p[i].line, p[i].column); };
    CHECK(at(0) == std::pair<std::size_t, std::size_t>(1, 1));
    CHECK(at(1) == std::pair<std::size_t, std::size_t>(2, 8));
    CHECK(at(2) == std::pair<std::size_t, std::size_t>(2, 17));
    CHECK(at(3) == std::pair<std::size_t, std::size_t>(3, 11));
    CHECK(at(4) == std::pair<std::size_t, std::size_t>(3, 20));
    CHECK(at(5) == std::pair<std::size_t, std::size_t>(3, 21));
    CHECK(at(6) == std::pair<std::size_t, std::size_t>(3, 25));
    CHECK(at(7) == std::pair<std::size_t, std::size_t>(4, 6));
    CHECK(at(8) == std::pair<std::size_t, std::size_t>(4, 12));
    CHECK(at(9) == std::pair<std::size_t, std::size_t>(4, 23));
    CHECK(at(10) == std::pair<std::size_t, std::size_t>(4, 35));
    CHECK(at(11) == std::pair<std::size_t, std::size_t>(4, 46));
    CHECK(at(12) == std::pair<std::size_t, std::size_t>(4, 55));
    CHECK(at(13) == std::pair<std::size_t, std::size_t>(5, 9));
    CHECK_FALSE(p[14].known());
    CHECK_FALSE(p[15].known());
}

TEST_CASE("columns count characters, not bytes") {
    const auto p = locate("{\"caf\xC3\xA9\": 1, \"b\": 2}", {"/b"});
    CHECK(p[0].line == 1);
    CHECK(p[0].column == 18);
}

TEST_CASE("locate on invalid text finds nothing and does not throw") {
    const auto p = locate("{\"a\": [1, 2", {"/a/0", "/a"});
    CHECK(p.size() == 2);
}

TEST_CASE("where, describe and unknown_key") {
    CHECK(where("", {}) == "/");
    CHECK(where("/a", {3, 7}) == "/a (line 3, column 7)");
    CHECK(describe(nlohmann::json::array()) == "an array");
    CHECK(describe(nlohmann::json(1.5)) == "a number");
    CHECK(unknown_key("prot", {"host", "port"}) == "unknown key \"prot\" (allowed: host, port)");
}

namespace {

// Scans `text` fed as the given pieces; nullopt when it is not plain.
std::optional<MemberScanner> scan_pieces(std::string_view text, std::vector<std::size_t> cuts) {
    MemberScanner scan("tenants");
    std::size_t at = 0;
    cuts.push_back(text.size());
    for (auto cut : cuts) {
        if (!scan.feed(text.substr(at, cut - at))) return std::nullopt;
        at = cut;
    }
    if (!scan.finish()) return std::nullopt;
    return scan;
}
std::optional<MemberScanner> scan_text(std::string_view text) {
    return scan_pieces(text, {});
}
std::string_view range_text(std::string_view text, const MemberScanner::Range& r) {
    return text.substr(r.offset, r.length);
}

}  // namespace

TEST_CASE("first_token: the first reference token, unescaped, and its length") {
    CHECK(first_token("/tenants/acme/x") == std::pair<std::string, std::size_t>{"tenants", 8});
    CHECK(first_token("/a~1b~0c") == std::pair<std::string, std::size_t>{"a/b~c", 8});
    CHECK(first_token("/") == std::pair<std::string, std::size_t>{"", 1});
    CHECK(first_token("//x") == std::pair<std::string, std::size_t>{"", 1});
    CHECK_FALSE(first_token(""));
    CHECK_FALSE(first_token("tenants"));
}

TEST_CASE("MemberScanner: members and the nested object's members as ranges, split anywhere") {
    const std::string text =
        " {\"version\": 1, \"tenants\": {\"a\": {\"x\": \"}\\\"{\"}, \"b\" :[1, {\"c\": 2}],\n"
        " \"\u00e9t\u00e9\": true}, \"empty\": {}, \"s\": \"v,}\" , \"n\": -1.5e3}\n";
    auto check = [&](const MemberScanner& m) {
        REQUIRE(m.members().size() == 5);
        REQUIRE(m.has_nested());
        CHECK(m.members()[0].key == "version");
        CHECK(range_text(text, m.members()[0].value) == "1");
        CHECK(m.members()[1].key == "tenants");
        CHECK(m.is_nested(m.members()[1]));
        CHECK(range_text(text, m.members()[1].value).starts_with("{\"a\""));
        CHECK(range_text(text, m.members()[1].value).ends_with("true}"));
        CHECK(range_text(text, m.members()[2].value) == "{}");
        CHECK(range_text(text, m.members()[3].value) == "\"v,}\"");
        CHECK(range_text(text, m.members()[4].value) == "-1.5e3");
        REQUIRE(m.nested().size() == 3);
        CHECK(m.nested()[0].key == "a");
        CHECK(range_text(text, m.nested()[0].value) == "{\"x\": \"}\\\"{\"}");
        CHECK(m.nested()[1].key == "b");
        CHECK(range_text(text, m.nested()[1].value) == "[1, {\"c\": 2}]");
        CHECK(m.nested()[2].key == "\u00e9t\u00e9");
        CHECK(range_text(text, m.nested()[2].value) == "true");
        for (const auto* list : {&m.members(), &m.nested()})
            for (const auto& member : *list) {
                const auto p = position_at(text, member.value.offset);
                CHECK(member.value.position.line == p.line);
                CHECK(member.value.position.column == p.column);
            }
        CHECK(m.start().line == 1);
        CHECK(m.start().column == 2);
        CHECK(m.nested()[2].value.position.line == 2);
        CHECK(m.nested()[2].value.position.column == 9);  // characters, not octets (11)
    };
    auto whole = scan_text(text);
    REQUIRE(whole);
    check(*whole);
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        CAPTURE(cut);
        auto split = scan_pieces(text, {cut});
        REQUIRE(split);
        check(*split);
    }
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < text.size(); ++i)
        every.push_back(i);
    auto bytes = scan_pieces(text, every);
    REQUIRE(bytes);
    check(*bytes);
}

TEST_CASE("MemberScanner: what is not plain") {
    for (const char* bad :
         {"[1]", "{\"a\": 1, \"a\": 2}", "{\"\\u0061\": 1}", "{\"a\": {}", "{\"a\": 1} x",
          "{\"a\" 1}", "{\"a\": }", "", "{\"a\": 1,}", "{,}", "{\"a\": 1 \"b\": 2}",
          "{\"tenants\": {\"x\": 1, \"x\": 2}}", "{\"tenants\": {\"\\u0078\": 1}}",
          "{\"tenants\": {\"x\": }}", "{\"a\": [}", "{\"a\": \"open}"}) {
        CAPTURE(bad);
        CHECK_FALSE(scan_text(bad));
    }
    auto empty = scan_text(" { } ");
    REQUIRE(empty);
    CHECK(empty->members().empty());
    CHECK_FALSE(empty->has_nested());
    // "tenants" that is not an object is an ordinary member.
    auto list = scan_text(R"({"tenants": [1], "x": {"tenants": {}}})");
    REQUIRE(list);
    CHECK_FALSE(list->has_nested());
    CHECK(list->members().size() == 2);
    // Escapes inside values are fine; only keys must be plain.
    CHECK(scan_text(R"({"a": "\"\\", "tenants": {"t": {"k\\u0041": "\u00e9"}}})"));
}

TEST_CASE("MemberScanner: distinct keys among many, in file order") {
    std::string text = "{\"tenants\": {";
    for (int i = 999; i >= 0; --i)
        text += fmt::format("{}\"k{}\": {{\"v\": {}}}", i == 999 ? "" : ",", i, i);
    auto m = scan_text(text + "}}");
    REQUIRE(m);
    REQUIRE(m->nested().size() == 1000);
    CHECK(m->nested()[0].key == "k999");
    CHECK(range_text(text, m->nested()[999].value) == "{\"v\": 0}");
    // A repeated key anywhere among them (here the first and the middle).
    CHECK_FALSE(scan_text(text + ",\"k999\": 1}}"));
    CHECK_FALSE(scan_text(text + ",\"k500\": 1}}"));
}

TEST_CASE("MemberScanner: a sink gets the nested members as their values end") {
    const std::string text =
        " {\"version\": 1, \"tenants\": {\"a\": {\"x\": \"}\\\"{\"}, \"b\" :[1, {\"c\": 2}],\n"
        " \"\u00e9t\u00e9\": true, \"n\": -2 , \"s\": \"q\"}, \"s\": \"v,}\" , \"n\": -1.5e3}\n";
    using Seen = std::tuple<std::string, std::uint64_t, std::uint64_t, std::size_t, std::size_t>;
    auto seen = [](const MemberScanner::Member& m) {
        return Seen{m.key, m.value.offset, m.value.length, m.value.position.line,
                    m.value.position.column};
    };
    auto stored = scan_text(text);
    REQUIRE(stored);
    REQUIRE(stored->nested().size() == 5);
    std::vector<Seen> expected;
    for (const auto& m : stored->nested())
        expected.push_back(seen(m));
    // Fed whole, split once anywhere, and one octet at a time.
    std::vector<std::vector<std::size_t>> splits = {{}};
    for (std::size_t cut = 0; cut <= text.size(); ++cut)
        splits.push_back({cut});
    splits.emplace_back();
    for (std::size_t i = 1; i < text.size(); ++i)
        splits.back().push_back(i);
    for (const auto& cuts : splits) {
        CAPTURE(cuts.size() == 1 ? cuts[0] : cuts.size());
        MemberScanner scan("tenants");
        std::vector<Seen> got;
        scan.on_nested([&](const MemberScanner::Member& m) {
            got.push_back(seen(m));
            return true;
        });
        std::size_t at = 0;
        bool ok = true;
        for (auto cut : cuts) {
            ok = ok && scan.feed(std::string_view(text).substr(at, cut - at));
            at = cut;
        }
        ok = ok && scan.feed(std::string_view(text).substr(at)) && scan.finish();
        REQUIRE(ok);
        CHECK(got == expected);
        CHECK(scan.nested().empty());
        REQUIRE(scan.members().size() == 4);
        CHECK(scan.is_nested(scan.members()[1]));
        CHECK(range_text(text, scan.members()[3].value) == "-1.5e3");
    }
    // A sink that refuses stops the scan; repeated keys are the sink's to find.
    MemberScanner refused("tenants");
    int calls = 0;
    refused.on_nested([&](const MemberScanner::Member&) { return ++calls < 2; });
    const bool accepted = refused.feed(text) && refused.finish();
    CHECK_FALSE(accepted);
    CHECK(calls == 2);
    MemberScanner repeated("tenants");
    std::vector<std::string> keys;
    repeated.on_nested([&](const MemberScanner::Member& m) {
        keys.push_back(m.key);
        return true;
    });
    const bool plain = repeated.feed(R"({"tenants": {"x": 1, "x": 2}})") && repeated.finish();
    CHECK(plain);
    CHECK(keys == std::vector<std::string>{"x", "x"});
}

TEST_CASE("MemberScanner: positions after long values, lines and UTF-8 inside them") {
    // The scan skips over the inside of values in bulk; the position of the
    // next member must count every line and character it skipped.
    std::string text = "{\"tenants\": {";
    for (int i = 0; i < 40; ++i)
        text += fmt::format(
            "{}\n  \"t{}\": {{\"d\": [\"\u00e9{}\",\n \"x\\\"y\"], \"s\": \"{}\u00fc\"}}",
            i ? "," : "", i, std::string(static_cast<std::size_t>(i) * 37, 'a'), i);
    text += "},\n \"after\": \"\u00e9\u00e9\"}";
    auto check = [&](const MemberScanner& m) {
        REQUIRE(m.nested().size() == 40);
        REQUIRE(m.members().size() == 2);
        for (const auto* list : {&m.members(), &m.nested()})
            for (const auto& member : *list) {
                CAPTURE(member.key);
                const auto p = position_at(text, member.value.offset);
                CHECK(member.value.position.line == p.line);
                CHECK(member.value.position.column == p.column);
            }
        CHECK(range_text(text, m.members()[1].value) == "\"\u00e9\u00e9\"");
        CHECK(m.members()[1].value.position.line == 82);
        CHECK(m.members()[1].value.position.column == 11);
    };
    auto whole = scan_text(text);
    REQUIRE(whole);
    check(*whole);
    for (std::size_t piece : {1, 2, 3, 7, 64, 1000}) {
        CAPTURE(piece);
        std::vector<std::size_t> cuts;
        for (std::size_t at = piece; at < text.size(); at += piece)
            cuts.push_back(at);
        auto split = scan_pieces(text, cuts);
        REQUIRE(split);
        check(*split);
    }
}

TEST_CASE("append_canonical writes what nlohmann's dump() does") {
    const auto doc = nlohmann::json::parse(R"({
        "z": [1, -2, 18446744073709551615, -9223372036854775808, 0, 1.5, -0.0, 1e300, 2.0],
        "a": {"b": {}, "c": [], "d": [[], {}], "e": null, "f": true, "g": false},
        "plain": "example.com", "empty": "",
        "escapes": "quote \" backslash \\ tab \t nl \n nul \u0000 del \u007f",
        "quote": "\"", "backslash": "\\", "tab": "\t", "nul": "\u0000", "del": "\u007f",
        "unit": "\u001f", "tilde": "~",
        "utf8": "b\u00fccher \u2603 \ud83d\ude00",
        "\u00e9 key": 1, "k\"ey": 2, "": 3})");
    std::string out = "prefix:";
    append_canonical(doc, out);
    CHECK(out == "prefix:" + doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    // Invalid UTF-8 is replaced the same way (U+FFFD).
    const nlohmann::json bad = std::string(
        "a\xff\xc3"
        "b");
    std::string bad_out;
    append_canonical(bad, bad_out);
    CHECK(bad_out == bad.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    CHECK(bad_out.find("\xef\xbf\xbd") != std::string::npos);
    // Every scalar alone, too.
    for (const auto& [key, value] : doc.items()) {
        std::string one;
        append_canonical(value, one);
        CHECK(one == value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
}
