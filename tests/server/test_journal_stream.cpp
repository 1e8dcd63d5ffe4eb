// Tests for gateway/server/journal_stream: JOURNAL_STREAM matches only the
// device and inode the descriptor is open on, anything malformed is "not
// the journal", and each level has its sd-daemon(3) priority prefix.
#include "gateway/server/journal_stream.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "tests/common/temp_dir.hpp"

using relaygate::server::is_journal_stream;
using relaygate::server::journal_priority_prefix;
using relaygate::server::Level;

TEST_CASE("JOURNAL_STREAM names the descriptor's device and inode") {
    relaygate::test::TempDir dir;
    const auto a = dir.write("a", "");
    const auto b = dir.write("b", "");
    const int fd = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st_a {
    }, st_b{};
    REQUIRE(::fstat(fd, &st_a) == 0);
    REQUIRE(::stat(b.c_str(), &st_b) == 0);
    const auto name = [](const struct stat& st) {
        return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    };
    CHECK(is_journal_stream(fd, name(st_a).c_str()));
    CHECK_FALSE(is_journal_stream(fd, name(st_b).c_str()));  // another file
    CHECK_FALSE(is_journal_stream(fd, nullptr));             // not under systemd
    for (const char* bad : {"", ":", "12", "12:", ":34", "x:1", "1:2:3", "1:2 ", " 1:2", "-1:2"})
        CHECK_FALSE(is_journal_stream(fd, bad));
    CHECK_FALSE(is_journal_stream(-1, name(st_a).c_str()));  // fstat fails
    ::close(fd);
}

TEST_CASE("priority prefixes follow syslog's levels") {
    CHECK(journal_priority_prefix(Level::debug) == "<7>");
    CHECK(journal_priority_prefix(Level::info) == "<6>");
    CHECK(journal_priority_prefix(Level::warn) == "<4>");
    CHECK(journal_priority_prefix(Level::error) == "<3>");
}
