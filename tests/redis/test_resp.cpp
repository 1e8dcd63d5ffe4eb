// Tests for gateway/redis/resp: every reply type, nesting, the limits,
// malformed input, and every input fed split at every byte.
#include "gateway/redis/resp.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/smtp/split_feed.hpp"

using namespace relaygate::resp;
using relaygate::test::all_splits;

namespace {

struct Run {
    std::vector<Value> values;
    std::string error;  // empty: none
};

// Feeds the pieces, draining next() after each; stops at the first error.
Run run(std::vector<std::string> pieces, ReaderLimits limits = {}) {
    Reader r(limits);
    Run out;
    for (auto& piece : pieces) {
        r.feed(piece);
        piece.assign(piece.size(), '#');  // the reader must have copied it
        for (;;) {
            auto n = r.next();
            if (!n) {
                out.error = n.error();
                CHECK(r.failed());
                r.feed("+OK\r\n");  // errors are terminal
                CHECK(!r.next().ok());
                return out;
            }
            if (!n->has_value()) break;
            out.values.push_back(std::move(**n));
        }
    }
    return out;
}

// The same result at every split of `input`.
Run run_all_splits(const std::string& input, ReaderLimits limits = {}) {
    const Run whole = run({input}, limits);
    for (auto& split : all_splits(input)) {
        CAPTURE(split.name);
        const Run r = run(split.pieces, limits);
        CHECK(r.values == whole.values);
        CHECK(r.error.empty() == whole.error.empty());
    }
    return whole;
}

Value str(std::string s) {
    return Value{Type::string, std::move(s), 0, {}};
}
Value integer(long long i) {
    return Value{Type::integer, "", i, {}};
}
Value nil() {
    return Value{};
}
Value array(std::vector<Value> e) {
    return Value{Type::array, "", 0, std::move(e)};
}

}  // namespace

TEST_CASE("every reply type") {
    const Run r = run_all_splits(
        "+OK\r\n-ERR unknown command\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n"
        "*0\r\n");
    REQUIRE(r.error.empty());
    REQUIRE(r.values.size() == 9);
    CHECK(r.values[0] == Value{Type::status, "OK", 0, {}});
    CHECK(r.values[1] == Value{Type::error, "ERR unknown command", 0, {}});
    CHECK(r.values[1].is_error());
    CHECK(r.values[2] == integer(42));
    CHECK(r.values[3] == integer(-7));
    CHECK(r.values[4] == str("hello"));
    CHECK(r.values[5] == str(""));
    CHECK(r.values[6] == nil());
    CHECK(r.values[7] == nil());  // RESP2's null array is a nil too
    CHECK(r.values[8] == array({}));
    CHECK(to_string(r.values[8].type) == "array");
}

TEST_CASE("bulk strings are binary-safe") {
    const std::string payload("a\r\nb\0c", 6);
    const Run r = run_all_splits("$6\r\n" + payload + "\r\n");
    REQUIRE(r.values.size() == 1);
    CHECK(r.values[0] == str(payload));
}

TEST_CASE("nested arrays, as the decision script returns them") {
    const Run r = run_all_splits("*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*1\r\n*1\r\n:5\r\n+PONG\r\n");
    REQUIRE(r.error.empty());
    REQUIRE(r.values.size() == 2);
    CHECK(r.values[0] ==
          array({integer(1), array({str("a"), nil()}), array({array({integer(5)})})}));
    CHECK(r.values[1] == Value{Type::status, "PONG", 0, {}});
}

TEST_CASE("an incomplete reply waits for more") {
    Reader r;
    r.feed("*2\r\n:1\r\n$3\r\nab");
    auto n = r.next();
    REQUIRE(n.ok());
    CHECK(!n->has_value());
    CHECK(r.buffered() > 0);
    r.feed("c\r\n");
    n = r.next();
    REQUIRE(n.ok());
    REQUIRE(n->has_value());
    CHECK(**n == array({integer(1), str("abc")}));
    n = r.next();
    REQUIRE(n.ok());
    CHECK(!n->has_value());
}

TEST_CASE("malformed input is an error, never a crash") {
    for (const char* bad :
         {"!x\r\n", "$abc\r\n", ":abc\r\n", ":\r\n", ":99999999999999999999999\r\n", "*-5\r\n",
          "$-5\r\n", "$3\r\nabcXY", "*1\r\n$2\r\nab\n\n", "*4294967297\r\n:1\r\n", "\r\n",
          "*2\r\n:1\r\n?\r\n"}) {
        CAPTURE(bad);
        const Run r = run_all_splits(bad);
        CHECK(!r.error.empty());
        CHECK(r.values.empty());
    }
}

TEST_CASE("replies before a protocol error are returned") {
    const Run r = run_all_splits("+OK\r\n:1\r\n%garbage\r\n");
    CHECK(r.values.size() == 2);
    CHECK(!r.error.empty());
}

TEST_CASE("limits: reply size") {
    ReaderLimits small;
    small.max_reply_bytes = 16;
    CHECK(run_all_splits("$9\r\n123456789\r\n", small).error.empty());  // 15 octets
    const Run r = run_all_splits("$10\r\n0123456789\r\n", small);       // 17
    CHECK(r.error.find("over 16 bytes") != std::string::npos);
    // A bulk string announced far over the limit fails as soon as the
    // buffered part is, not when (if ever) it is complete.
    Reader reader(small);
    reader.feed("$1000000000\r\n");
    reader.feed(std::string(8, 'x'));
    auto n = reader.next();
    CHECK(!n.ok());
    // Each reply is measured on its own: many small ones pass.
    std::string many;
    for (int i = 0; i < 100; ++i)
        many += ":12345\r\n";
    CHECK(run({many}, small).values.size() == 100);
}

TEST_CASE("limits: array elements are refused before hiredis allocates them") {
    ReaderLimits small;
    small.max_elements = 4;
    CHECK(run_all_splits("*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", small).error.empty());
    CHECK(run_all_splits("*2\r\n*2\r\n:1\r\n:2\r\n:3\r\n", small).error.empty());  // 4 in all
    CHECK(!run_all_splits("*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n:4\r\n", small).error.empty());  // 5
    const Run r = run({"*2000000000\r\n"}, small);
    CHECK(r.error.find("more than 4 array elements") != std::string::npos);
    // The count is per reply.
    CHECK(run({"*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n"}, small)
              .values.size() == 2);
}

TEST_CASE("limits: nesting") {
    ReaderLimits small;
    small.max_depth = 2;
    CHECK(run_all_splits("*1\r\n*1\r\n:1\r\n", small).error.empty());
    CHECK(run_all_splits("*1\r\n*1\r\n*1\r\n:1\r\n", small).error.find("nested") !=
          std::string::npos);
    // hiredis's own stack holds 7 levels; a larger setting is clamped.
    ReaderLimits deep;
    deep.max_depth = 100;
    deep.max_elements = 1000;
    std::string s;
    for (int i = 0; i < 20; ++i)
        s += "*1\r\n";
    s += ":1\r\n";
    CHECK(!run({s}, deep).error.empty());
}

TEST_CASE("format_command: the RESP request form, binary-safe") {
    const std::vector<std::string> argv{"SET", "k", std::string("v\r\n\0", 4)};
    const std::string wire = format_command(argv);
    CHECK(wire == std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\n\0\r\n", 30));
    CHECK(format_command(std::vector<std::string>{""}) == "*1\r\n$0\r\n\r\n");
    CHECK(format_command(std::vector<std::string>{}).empty());
    // What we format, a RESP reader reads back as an array of strings.
    const Run r = run({wire});
    REQUIRE(r.values.size() == 1);
    CHECK(r.values[0] == array({str("SET"), str("k"), str(argv[2])}));
}
