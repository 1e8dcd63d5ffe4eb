#include "gateway/common/file.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/common/temp_dir.hpp"

using relaygate::read_file;
using relaygate::read_secret_file;
using relaygate::replace_file;

TEST_CASE("read_file and read_secret_file") {
    relaygate::test::TempDir dir;
    CHECK_FALSE(read_file(dir.path / "missing"));
    CHECK(*read_file(dir.write("a", std::string("x\0y\r\n", 5))) == std::string("x\0y\r\n", 5));
    CHECK(*read_secret_file(dir.write("t1", "token\n")) == "token");
    CHECK(*read_secret_file(dir.write("t2", "token\r\n")) == "token");
    CHECK(*read_secret_file(dir.write("t3", "token")) == "token");
    CHECK(*read_secret_file(dir.write("t4", "token\n\n")) == "token\n");
    CHECK(read_secret_file(dir.write("t5", ""))->empty());
}

TEST_CASE("replace_file: all or nothing, private to the owner") {
    relaygate::test::TempDir dir;
    const auto p = dir.path / "cache.json";
    std::string error;
    REQUIRE(replace_file(p, "first", error));
    CHECK(*read_file(p) == "first");
    REQUIRE(replace_file(p, "second, longer", error));
    CHECK(*read_file(p) == "second, longer");
    CHECK_FALSE(std::filesystem::exists(dir.path / "cache.json.tmp"));
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    // A directory that does not exist: an error, and nothing written.
    CHECK_FALSE(replace_file(dir.path / "no" / "such", "x", error));
    CHECK(error.find("cannot create") != std::string::npos);
}

TEST_CASE("write_staged, commit_staged and read_descriptor: read back before it replaces") {
    relaygate::test::TempDir dir;
    const auto p = dir.path / "cache.json";
    std::string error;
    REQUIRE(replace_file(p, "old", error));
    const int fd = relaygate::write_staged(p, "new bytes", error);
    REQUIRE(fd >= 0);
    // Not in place yet; the descriptor reads what was written.
    CHECK(*read_file(p) == "old");
    CHECK(relaygate::staged_path(p) == dir.path / "cache.json.tmp");
    CHECK(*relaygate::read_descriptor(fd) == "");  // at the end, as written
    REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
    CHECK(*relaygate::read_descriptor(fd) == "new bytes");
    ::close(fd);
    REQUIRE(relaygate::commit_staged(p, error));
    CHECK(*read_file(p) == "new bytes");
    CHECK_FALSE(std::filesystem::exists(relaygate::staged_path(p)));
    // Nothing staged: an error, the file unchanged.
    CHECK_FALSE(relaygate::commit_staged(p, error));
    CHECK(error.find("cannot write") != std::string::npos);
    CHECK(*read_file(p) == "new bytes");
    CHECK(relaygate::write_staged(dir.path / "no" / "such", "x", error) < 0);
    // Staged and discarded: the file unchanged, nothing left beside it.
    const int again = relaygate::write_staged(p, "discarded", error);
    REQUIRE(again >= 0);
    ::close(again);
    relaygate::discard_staged(p);
    CHECK_FALSE(std::filesystem::exists(relaygate::staged_path(p)));
    CHECK(*read_file(p) == "new bytes");
    relaygate::discard_staged(p);  // none: nothing happens
}
