#include "gateway/common/file.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tests/common/temp_dir.hpp"

using relaygate::read_file;
using relaygate::read_secret_file;
using relaygate::replace_file;

namespace {
// The whole file through read_pieces, in pieces of 5 octets.
std::string pieces_of(int fd) {
    std::string out;
    REQUIRE(relaygate::read_pieces(fd, 5, [&](std::string_view piece) {
        CHECK(piece.size() <= 5);
        out += piece;
        return true;
    }));
    return out;
}
}  // namespace

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

TEST_CASE("read_pieces: from the start whatever the offset, in pieces, stopping when asked") {
    relaygate::test::TempDir dir;
    const auto p = dir.path / "data";
    std::string error;
    REQUIRE(replace_file(p, "0123456789abcdefghij+", error));
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::lseek(fd, 7, SEEK_SET) == 7);  // pread: the offset is not used, nor moved
    CHECK(pieces_of(fd) == "0123456789abcdefghij+");
    CHECK(::lseek(fd, 0, SEEK_CUR) == 7);
    std::vector<std::string> pieces;
    CHECK(relaygate::read_pieces(fd, 10, [&](std::string_view piece) {
        pieces.emplace_back(piece);
        return pieces.size() < 2;
    }));
    CHECK(pieces == std::vector<std::string>{"0123456789", "abcdefghij"});
    ::close(fd);
    CHECK_FALSE(relaygate::read_pieces(fd, 10, [](std::string_view) { return true; }));
    CHECK(errno == EBADF);
}

TEST_CASE("StagedWriter: pieces to the staged file, or to memory when the disk refuses them") {
    using relaygate::staged_path;
    using relaygate::StagedWriter;
    relaygate::test::TempDir dir;
    const auto p = dir.path / "cache.json";
    std::string error;
    {
        StagedWriter w(p);
        CHECK_FALSE(std::filesystem::exists(staged_path(p)));  // nothing yet
        w.append("hello, ");
        w.append("");
        w.append("world");
        w.finish();
        REQUIRE(w.file() >= 0);
        CHECK(w.memory().empty());
        CHECK_FALSE(w.lost());
        CHECK(pieces_of(w.file()) == "hello, world");
        CHECK_FALSE(std::filesystem::exists(p));
        REQUIRE(w.commit(error));
    }
    CHECK(*read_file(p) == "hello, world");
    {
        StagedWriter w(p);
        w.append("dropped");
    }  // not committed: removed, the file unchanged
    CHECK_FALSE(std::filesystem::exists(staged_path(p)));
    CHECK(*read_file(p) == "hello, world");
    {
        StagedWriter w(p);  // nothing appended: finish() makes an empty file
        w.finish();
        REQUIRE(w.file() >= 0);
        CHECK(pieces_of(w.file()).empty());
    }

    // The staged file cannot be created: everything in memory, not lost.
    {
        StagedWriter w(dir.path / "no" / "such");
        w.append("a");
        w.append("b");
        w.finish();
        CHECK(w.file() < 0);
        CHECK(w.memory() == "ab");
        CHECK_FALSE(w.lost());
        CHECK(w.error().find("cannot create") != std::string::npos);
        CHECK_FALSE(w.commit(error));
        CHECK(error == w.error());
    }

    // The disk fills up half-way (a file size limit: writes beyond it fail
    // with EFBIG): what was written is read back and the rest goes on in
    // memory.
    const auto q = dir.path / "full.json";
    std::string all;
    {
        StagedWriter w(q);
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit old{};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
        const rlimit small{100, old.rlim_max};
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        for (char c = 'a'; c < 'k'; ++c) {
            const std::string piece(30, c);
            w.append(piece);
            all += piece;
        }
        ::setrlimit(RLIMIT_FSIZE, &old);
        ::signal(SIGXFSZ, SIG_DFL);
        w.finish();
        CHECK(w.file() < 0);
        CHECK_FALSE(w.lost());
        CHECK(w.memory() == all);
        CHECK(w.error().find("cannot write") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(staged_path(q)));
    }
    CHECK_FALSE(std::filesystem::exists(q));
}
