// The one JSON reader of the config and the policy: text -> nlohmann::json
// with duplicate keys refused, RFC 6901 pointers, and the line and column
// of any pointer, so every error names where it is in the file.
// Pure: text in, values out; no files, no sockets, no Asio.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
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

// Parses `text`. JSON parsers disagree on which of two equal keys counts
// (RFC 8259 4 only says names SHOULD be unique), so both readers refuse
// them. At most 100 duplicate errors are reported.
Result<nlohmann::json, std::vector<ParseError>> parse(std::string_view text);

// For large documents read without building one tree (the policy's
// "tenants" at 100k entries): the top-level object's members as byte
// ranges of `text`, found by a scan that only tracks strings and nesting
// (no values are decoded). nullopt when the text is not a plain top-level
// object of unescaped, distinct keys with balanced values; callers then
// parse() as usual, which reports the problem precisely. The scan does not
// validate the values: parse each range to know they are JSON.
struct Member {
    std::string key;
    std::string_view value;   // the value's text, in `text`
    std::size_t members = 0;  // for an object value: how many members it has
};
std::optional<std::vector<Member>> scan_top_level(std::string_view text);

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

// "a string", "an object", ...: for "expected X, found Y" messages.
std::string describe(const nlohmann::json& j);

// The message for a key that is not in `allowed`: lists the allowed keys,
// so a typo's fix is in the error.
std::string unknown_key(std::string_view key, std::initializer_list<std::string_view> allowed);

}  // namespace relaygate::json_reader
