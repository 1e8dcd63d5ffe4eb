// policy_dir: every *.json of a directory merged into one policy, with each
// diagnostic naming the file (and line) it is about.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "policy/engine/policy_source.hpp"
#include "policy_test_util.hpp"
#include "tests/common/temp_dir.hpp"

using namespace relaygate::policy;
using namespace relaygate::policy::test;
namespace fs = std::filesystem;
using relaygate::test::TempDir;

namespace {

const Diagnostic* find_rule(const std::vector<Diagnostic>& ds, std::string_view rule) {
    for (const auto& d : ds)
        if (d.rule == rule) return &d;
    return nullptr;
}

constexpr const char* kDefaults = R"({"version": 1, "description": "defaults",
  "limits": {"messages": [{"count": 1000, "per": "1h"}]},
  "tenants": {}})";
constexpr const char* kAcme = R"({"version": 1, "description": "team A",
  "tenants": {"acme": {"domains": ["acme.example"],
                       "identities": [{"networks": ["192.0.2.0/24"]}]}}})";
constexpr const char* kBeta = R"({"version": 1,
  "tenants": {"beta": {"domains": ["beta.example"],
                       "identities": [{"networks": ["198.51.100.0/24"]}]}}})";

}  // namespace

TEST_CASE("policy_dir: the files' tenants and keys form one policy") {
    TempDir dir;
    dir.write("00-defaults.json", kDefaults);
    dir.write("acme.json", kAcme);
    dir.write("beta.json", kBeta);
    dir.write("notes.txt", "not JSON, not a *.json: ignored");
    dir.write(".hidden.json", "{broken");  // kubelet's ..data style entries
    auto p = load_dir(dir.path);
    REQUIRE(p);
    CHECK((*p)->tenant_ids() == std::vector<std::string>{"acme", "beta"});
    CHECK((*p)->uses_limits());
    // The same policy in one file has the same hash (descriptions aside,
    // which are per file and not part of the merged policy).
    auto single = Policy::load_text(R"({"version": 1,
      "limits": {"messages": [{"count": 1000, "per": "1h"}]},
      "tenants": {"acme": {"domains": ["acme.example"], "identities": [{"networks": ["192.0.2.0/24"]}]},
                  "beta": {"domains": ["beta.example"], "identities": [{"networks": ["198.51.100.0/24"]}]}}})");
    REQUIRE(single);
    CHECK((*p)->hash() == (*single)->hash());
    // Through the source, as the gateway loads it.
    auto via = load_policy({{}, dir.path, {}, {}});
    REQUIRE(via);
    CHECK((*via)->hash() == (*p)->hash());
}

TEST_CASE("policy_dir: a tenant in two files names both") {
    TempDir dir;
    dir.write("a.json", kAcme);
    dir.write("b.json", std::string(kBeta).replace(std::string(kBeta).find("beta\":"), 4, "acme"));
    auto r = load_dir(dir.path);
    REQUIRE(!r);
    const auto* d = find_rule(r.error(), "duplicate_tenant");
    REQUIRE(d != nullptr);
    CHECK(d->file == (dir.path / "b.json").string());
    CHECK(d->path == "/tenants/acme");
    CHECK(d->line == 2);
    CHECK(d->message.find((dir.path / "a.json").string()) != std::string::npos);
    CHECK(format_diagnostic(*d).starts_with((dir.path / "b.json").string() + ": /tenants/acme"));
}

TEST_CASE("policy_dir: top-level keys in one file only, versions agree") {
    TempDir dir;
    dir.write("a.json", kDefaults);
    dir.write("b.json", R"({"version": 2, "limits": {}, "tenants": {}})");
    auto r = load_dir(dir.path);
    REQUIRE(!r);
    const auto* dup = find_rule(r.error(), "duplicate_key");
    REQUIRE(dup != nullptr);
    CHECK(dup->path == "/limits");
    CHECK(dup->file == (dir.path / "b.json").string());
    const auto* version = find_rule(r.error(), "version");
    REQUIRE(version != nullptr);
    CHECK(version->file == (dir.path / "b.json").string());
}

TEST_CASE("policy_dir: compile errors and warnings point into their own file") {
    TempDir dir;
    dir.write("a.json", kAcme);
    dir.write("b.json", R"({"version": 1,
  "tenants": {"beta": {"domains": ["beta.example"],
                       "identities": [{"networks": ["198.51.100.1/24"]}]}}})");
    auto r = load_dir(dir.path);
    REQUIRE(!r);
    const auto* d = find_rule(r.error(), "network_host_bits");
    REQUIRE(d != nullptr);
    CHECK(d->file == (dir.path / "b.json").string());
    CHECK(d->line == 3);

    // A warning of a loaded policy gets its file too.
    dir.write("b.json", R"({"version": 1,
  "tenants": {"beta": {"mode": "report", "domains": ["beta.example"],
                       "identities": [{"networks": ["198.51.100.0/24"]}]}}})");
    auto p = load_dir(dir.path);
    REQUIRE(p);
    bool located = false;
    for (const auto& w : (*p)->warnings())
        located |=
            w.rule == "report_mode" && w.file == (dir.path / "b.json").string() && w.line == 2;
    CHECK(located);
}

TEST_CASE("policy_dir: syntax errors, empty and missing directories") {
    TempDir dir;
    dir.write("a.json", kAcme);
    dir.write("b.json", "{\"version\": 1,\n  \"tenants\": {");
    auto r = load_dir(dir.path);
    REQUIRE(!r);
    CHECK(r.error().front().rule == "json_syntax");
    CHECK(r.error().front().file == (dir.path / "b.json").string());
    CHECK(r.error().front().line == 2);

    TempDir empty;
    r = load_dir(empty.path);
    REQUIRE(!r);
    CHECK(r.error().front().rule == "io");
    CHECK(r.error().front().message.find("no *.json") != std::string::npos);
    r = load_dir(empty.path / "missing");
    REQUIRE(!r);
    CHECK(r.error().front().rule == "io");
    // A file that is not an object.
    empty.write("x.json", "[1, 2]");
    r = load_dir(empty.path);
    REQUIRE(!r);
    CHECK(r.error().front().rule == "schema");
}

TEST_CASE("policy_dir: read in ranges, tenant by tenant, unless the files conflict") {
    TempDir dir;
    dir.write("00-defaults.json", kDefaults);
    dir.write("acme.json", kAcme);
    dir.write("beta.json", kBeta);
    const std::vector<fs::path> files{dir.path / "00-defaults.json", dir.path / "acme.json",
                                      dir.path / "beta.json"};
    auto streamed = Policy::load_files(files, true, nullptr);
    REQUIRE(streamed);
    REQUIRE(*streamed);
    CHECK((**streamed)->tenant_ids() == std::vector<std::string>{"acme", "beta"});
    CHECK((**streamed)->hash() == (*load_dir(dir.path))->hash());

    // Errors found while compiling name their file, line and column.
    dir.write("beta.json", R"({"version": 1,
  "tenants": {"beta": {"domains": ["beta.example"],
                       "identities": [{"networks": ["198.51.100.1/24"]}]}}})");
    streamed = Policy::load_files(files, true, nullptr);
    REQUIRE(streamed);
    REQUIRE_FALSE(*streamed);
    const auto* d = find_rule(streamed->error(), "network_host_bits");
    REQUIRE(d != nullptr);
    CHECK(d->file == (dir.path / "beta.json").string());
    CHECK(d->line == 3);
    CHECK(d->column == 53);

    // What does not merge cleanly is left to the whole parse, which names
    // both files: a tenant in two files, a key in two, versions that differ.
    dir.write("beta.json", kAcme);
    CHECK_FALSE(Policy::load_files(files, true, nullptr));
    dir.write("beta.json", R"({"version": 1, "limits": {}, "tenants": {}})");
    CHECK_FALSE(Policy::load_files(files, true, nullptr));
    dir.write("beta.json", R"({"version": 2, "tenants": {}})");
    CHECK_FALSE(Policy::load_files(files, true, nullptr));
    dir.write("beta.json", R"([1, 2])");
    CHECK_FALSE(Policy::load_files(files, true, nullptr));
}

TEST_CASE("files are read in batches: tenants in any order, with any gaps, over several files") {
    // 2,500 tenants (three batches of reads), written in a shuffled order,
    // with 0 to 3,000 octets of white space between them (ranges read as
    // one and ranges apart), one file or three.
    constexpr int kTenants = 2500;
    std::vector<int> ids(kTenants);
    for (int i = 0; i < kTenants; ++i)
        ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), std::mt19937(7));
    auto tenant = [](int i, std::string_view first_domain) {
        return fmt::format(R"("t{}": {{"domains": ["{}", "*.w.t{}.example"],
            "identities": [{{"networks": ["10.{}.{}.0/24"]}}]}})",
                           i, first_domain, i, i / 256, i % 256);
    };
    auto policy_texts = [&](std::string_view t7_domain) {
        std::vector<std::string> files(3, R"({"version": 1, "tenants": {)");
        std::string whole = files[0];
        for (int k = 0; k < kTenants; ++k) {
            const int i = ids[k];
            const std::string gap((k * 37) % 3000, k % 2 ? ' ' : '\n');
            const auto text = tenant(i, i == 7 ? t7_domain : fmt::format("d.t{}.example", i)) + gap;
            auto& file = files[k % 3];
            file += (file.back() == '{' ? "" : ",") + text;
            whole += (k ? "," : "") + text;
        }
        for (auto& f : files)
            f += "}}";
        files.push_back(whole + "}}");
        return files;
    };
    TempDir dir;
    const auto texts = policy_texts("d.t7.example");
    std::vector<fs::path> parts;
    for (int f = 0; f < 3; ++f)
        parts.push_back(dir.write(fmt::format("part{}.json", f), texts[f]));
    const auto whole = dir.write("whole.json.one", texts[3]);
    const auto in_memory = Policy::load_text(texts[3]);
    REQUIRE(in_memory);

    // Streamed (not left to the whole parse), and the same policy.
    const auto one = Policy::load_files({whole}, false, nullptr);
    REQUIRE(one);
    REQUIRE(*one);
    const auto three = Policy::load_files(parts, true, nullptr);
    REQUIRE(three);
    REQUIRE(*three);
    for (const auto& p : {**one, **three}) {
        CHECK(p->hash() == (*in_memory)->hash());
        CHECK(p->tenant_count() == kTenants);
        for (int i : {0, 7, 1023, 1024, 2048, 2499})
            CHECK(p->at_mail_from(from_ip(fmt::format("10.{}.{}.9", i / 256, i % 256)),
                                  env(fmt::format("x.w.t{}.example", i)))
                      .tenant == fmt::format("t{}", i));
    }

    // An incremental reload from the files (t7 changed) reads them the same
    // way.
    const auto changed = policy_texts("new.t7.example");
    for (int f = 0; f < 3; ++f)
        dir.write(fmt::format("part{}.json", f), changed[f]);
    const auto reloaded = Policy::load_files(parts, true, nullptr, three->value().get());
    REQUIRE(reloaded);
    REQUIRE(*reloaded);
    const auto& r = **reloaded;
    CHECK(r->hash() == (*Policy::load_text(changed[3]))->hash());
    CHECK(r->at_mail_from(from_ip("10.0.7.9"), env("new.t7.example")).verdict == Verdict::accept);
    CHECK(r->at_mail_from(from_ip("10.0.7.9"), env("d.t7.example")).verdict == Verdict::reject);
}
