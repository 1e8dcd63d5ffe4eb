// FileWatch: one report per change of a file, a replaced file (new inode,
// the ConfigMap/Secret symlink swap) or a directory's entries.
#include "gateway/server/file_watch.hpp"
#include "tests/common/temp_dir.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using relaygate::server::FileWatch;
namespace fs = std::filesystem;
using relaygate::test::TempDir;

namespace {}  // namespace

TEST_CASE("a file: edited, replaced, deleted and recreated") {
    TempDir d;
    const auto cert = d.path / "tls.crt";
    const auto key = d.path / "tls.key";
    d.write(cert, "cert 1");
    d.write(key, "key 1");
    FileWatch w({cert, key});
    CHECK_FALSE(w.empty());
    CHECK_FALSE(w.changed());

    d.write(key, "key 2 (longer)");  // in place
    CHECK(w.changed());
    CHECK_FALSE(w.changed());  // once per change

    // Replaced by rename (a new inode, same size and maybe the same mtime).
    d.write(d.path / "new", "cert 2");
    fs::rename(d.path / "new", cert);
    CHECK(w.changed());

    // Gone: nothing to reload until it is back.
    fs::remove(cert);
    CHECK_FALSE(w.changed());
    d.write(cert, "cert 3");
    CHECK(w.changed());
}

TEST_CASE("a symlink swap, as kubelet updates a ConfigMap or Secret volume") {
    TempDir d;
    fs::create_directory(d.path / "v1");
    fs::create_directory(d.path / "v2");
    d.write(d.path / "v1/policy.json", "{}");
    d.write(d.path / "v2/policy.json", "{}");
    fs::create_directory_symlink("v1", d.path / "..data");
    fs::create_symlink("..data/policy.json", d.path / "policy.json");
    FileWatch w({d.path / "policy.json"});
    CHECK_FALSE(w.changed());
    fs::create_directory_symlink("v2", d.path / "..data_tmp");
    fs::rename(d.path / "..data_tmp", d.path / "..data");
    CHECK(w.changed());
}

TEST_CASE("a directory: entries added, removed, edited") {
    TempDir d;
    d.write(d.path / "a.json", "{}");
    FileWatch w({d.path});
    CHECK_FALSE(w.changed());
    d.write(d.path / "b.json", "{}");
    CHECK(w.changed());
    d.write(d.path / "a.json", "{\"version\": 1}");
    CHECK(w.changed());
    fs::remove(d.path / "b.json");
    CHECK(w.changed());
    CHECK_FALSE(w.changed());
}

TEST_CASE("no files: never a change") {
    FileWatch w;
    CHECK(w.empty());
    CHECK_FALSE(w.changed());
}
