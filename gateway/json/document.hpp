// The one JSON reader of the config and the policy: text -> nlohmann::json
// with duplicate keys refused, RFC 6901 pointers, and the line and column
// of any pointer, so every error names where it is in the file.
// Pure: text in, values out; no files, no sockets, no Asio.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/common/result.hpp"

namespace relaygate::json_reader {

// 1-based; line 0 means "not in the text" (a file that cannot be read, a
// document built in memory).
struct Position {
    std::size_t line = 0;
    std::size_t column = 0;  // in characters (UTF-8 code points) of that line
    bool known() const { return line != 0; }
};

// A problem with the text itself: syntax (rule "json_syntax") or a key
// that appears twice in one object (rule "duplicate_key").
struct ParseError {
    std::string path;  // RFC 6901 pointer, "" for the whole document
    std::string rule;
    std::string message;
    Position position;
};

// RFC 6901 3: a reference token escapes "~" as "~0" and "/" as "~1".
std::string pointer(std::string_view base, std::string_view key);
std::string pointer(std::string_view base, std::size_t index);
// The first reference token of `path`, unescaped, and how many octets of
// `path` it takes with its '/' ("/a~1b/c" -> {"a/b", 5}); nullopt for "".
std::optional<std::pair<std::string, std::size_t>> first_token(std::string_view path);

// Parses `text`. JSON parsers disagree on which of two equal keys counts
// (RFC 8259 4 only says names SHOULD be unique), so both readers refuse
// them. At most 100 duplicate errors are reported.
Result<nlohmann::json, std::vector<ParseError>> parse(std::string_view text);

// For large documents read without building one tree (the policy's
// "tenants" at 100k entries, from a file read in blocks): the members of the
// top-level object, and those of one object member of it (`nested_key`), as
// byte ranges of the text, found by a scan that only tracks strings and
// nesting (no values are decoded). The text may be fed in pieces split
// anywhere. It is "plain" when it is one top-level object whose keys, at
// both levels, are unescaped and distinct, with balanced values; otherwise
// the caller parses the whole text with parse(), which reports the problem
// precisely. The scan does not validate the values: parse each range.
class MemberScanner {
  public:
    struct Range {
        std::uint64_t offset = 0;  // of the value's first octet in the whole text
        std::uint64_t length = 0;
        Position position;  // where the value starts
    };
    struct Member {
        std::string key;
        Range value;
    };

    explicit MemberScanner(std::string nested_key) : nested_key_(std::move(nested_key)) {}
    // False once the text is known not to be plain (stop feeding).
    bool feed(std::string_view piece);
    // After the last piece: true when the whole text was plain.
    bool finish();

    // In text order.
    const std::vector<Member>& members() const { return members_; }
    // The members of the top-level `nested_key` object, in text order; the
    // caller may reorder them. has_nested(): that key held an object.
    std::vector<Member>& nested() { return nested_; }
    // Before feeding: hands each member of the nested object to `sink` as
    // soon as its value ends, instead of keeping it in nested(), which
    // stays empty. A caller that keeps its own compact copy (100k tenants)
    // then holds the members once, not twice, and not in a vector of
    // 64-octet members grown by doubling. Repeated nested keys are the
    // caller's to find; `sink` returning false stops the scan (not plain).
    void on_nested(std::function<bool(const Member&)> sink) { sink_ = std::move(sink); }
    const std::vector<Member>& nested() const { return nested_; }
    bool has_nested() const { return nested_at_ != kNone; }
    bool is_nested(const Member& m) const { return &m == &members_[nested_at_]; }
    // Where the top-level object starts (the "" pointer).
    Position start() const { return start_; }

  private:
    enum class Expect : std::uint8_t { open, key_or_end, key, colon, value, comma_or_end, done };
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    void step(char c);
    // The first octet from `at` that step() must see (`end` when none).
    const char* skip_bulk(const char* at, const char* end) const;
    // Where step()'s octet is: its offset in the whole text, and its line
    // and column (counted only when asked, from where they were last).
    std::uint64_t pos() const { return offset_ + static_cast<std::uint64_t>(at_ - begin_); }
    Position here();
    void count_to(const char* to);
    void begin_value(char c);
    void end_value(std::uint64_t end);
    void close_object();
    std::vector<Member>& level() { return level_ == 2 ? nested_ : members_; }

    std::string nested_key_;
    std::vector<Member> members_;
    std::vector<Member> nested_;  // with a sink_, only the member being read
    std::function<bool(const Member&)> sink_;
    std::size_t nested_at_ = kNone;  // index in members_
    std::string key_;
    std::uint64_t offset_ = 0;       // of the piece being fed
    const char* begin_ = nullptr;    // the piece being fed
    const char* at_ = nullptr;       // step()'s octet in it
    const char* counted_ = nullptr;  // here_ is the position of this octet
    Position here_{1, 1};
    Position start_;
    int level_ = 0;  // 1: in the top-level object, 2: in the nested one
    int depth_ = 0;  // inside a container value of the current level
    Expect expect_ = Expect::open;
    bool ok_ = true;
    bool in_string_ = false;
    bool in_key_ = false;
    bool escape_ = false;
    bool scalar_ = false;      // a number or literal value of the current level
    bool value_open_ = false;  // a string value of the current level
};

// Where each pointer's value starts in `text` (an unknown pointer or an
// invalid text gives an unknown Position). With duplicate keys, the last
// occurrence: the one a duplicate_key error is about. One pass over the
// text, so callers locate only when they have something to report.
std::vector<Position> locate(std::string_view text, const std::vector<std::string>& pointers);

// The position of byte `offset` of `text`.
Position position_at(std::string_view text, std::size_t offset);

// "path (line 3, column 7)" or "path" when the position is unknown; "/" for
// the whole document.
std::string where(std::string_view path, Position p);

// Appends to `out` the compact text j.dump(-1, ' ', false, replace) gives
// (keys sorted, no white space: what the policy hash covers), writing plain
// strings and integers directly instead of through nlohmann's serializer
// (its per-character UTF-8 check is most of a policy load's hashing).
void append_canonical(const nlohmann::json& j, std::string& out);

// "a string", "an object", ...: for "expected X, found Y" messages.
std::string describe(const nlohmann::json& j);

// The message for a key that is not in `allowed`: lists the allowed keys,
// so a typo's fix is in the error.
std::string unknown_key(std::string_view key, std::initializer_list<std::string_view> allowed);

}  // namespace relaygate::json_reader
