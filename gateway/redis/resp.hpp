// RESP (the Redis protocol, RESP2) as values: hiredis's reply reader and
// command formatter behind a small C++ interface. Sans-I/O: bytes in,
// replies out; gateway/server/redis_client moves the bytes. Bounded: a
// reply over the configured size, element count or nesting is a protocol
// error, so a broken or hostile server cannot make us allocate at will.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"

namespace relaygate::resp {

enum class Type : std::uint8_t { string, status, error, integer, nil, array };
std::string_view to_string(Type t);  // "string" | "status" | ... (for logs and tests)

struct Value {
    Type type = Type::nil;
    std::string text;             // string, status, error
    long long integer = 0;        // integer
    std::vector<Value> elements;  // array

    bool is_error() const { return type == Type::error; }
    friend bool operator==(const Value&, const Value&) = default;
};

struct ReaderLimits {
    // Bytes one reply may occupy on the wire (buffered until complete).
    std::size_t max_reply_bytes = 1 << 20;
    // Elements of all arrays in one reply, together: hiredis allocates an
    // array's element vector as soon as it reads the header "*<n>".
    std::size_t max_elements = 1 << 16;
    // Array nesting (a top-level array is depth 1); hiredis itself stops at 7.
    int max_depth = 4;
};

// Reads replies from a byte stream. After a protocol error the reader is
// spent (every later next() repeats the error): the connection must be
// closed, since nothing after it can be matched to a request.
class Reader {
  public:
    explicit Reader(ReaderLimits limits = {});
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // Appends bytes received from the server. Call next() until it answers
    // "need more" before feeding again, so only one partial reply is held.
    void feed(std::string_view bytes);
    // A complete reply, nullopt when more bytes are needed, or the protocol
    // error (malformed input, a reply over the limits).
    Result<std::optional<Value>, std::string> next();

    bool failed() const { return !error_.empty(); }
    // Bytes fed and not yet returned as replies.
    std::size_t buffered() const;

    struct State;  // shared with hiredis's callbacks (resp.cpp)

  private:
    ReaderLimits limits_;
    std::unique_ptr<State> state_;
    std::string error_;
};

// One command in the RESP request form (an array of bulk strings), as
// redisFormatCommandArgv encodes it; binary-safe.
std::string format_command(std::span<const std::string> argv);

}  // namespace relaygate::resp
