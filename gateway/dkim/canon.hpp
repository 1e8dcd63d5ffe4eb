// DKIM canonicalization (RFC 6376 3.4): one raw header field at a time, and a
// streaming body hasher that keeps only counters for what it cannot decide yet
// (trailing empty lines, a WSP run). Pure: no I/O, no exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/common/sha256.hpp"
#include "gateway/dkim/openssl.hpp"
#include "gateway/dkim/signature.hpp"

namespace relaygate::dkim {

// One raw header field ("Name: value", folded lines included) canonicalized per
// RFC 6376 3.4.1 / 3.4.2. The output ends with CRLF iff `raw_field` does (the
// DKIM-Signature field itself is hashed without one, 3.7).
std::string canonicalize_header(Canon canon, std::string_view raw_field);

// `raw_field` (a DKIM-Signature field) with the value of its b= tag removed,
// as RFC 6376 3.7 hashes it; everything else byte for byte.
std::string without_b_value(std::string_view raw_field);

// SHA-256 over the canonicalized body (RFC 6376 3.4.3 / 3.4.4), truncated to
// `length` canonicalized octets when l= is given (3.4.5). update() accepts any
// split of the body with the same result.
class BodyHasher {
  public:
    BodyHasher(Canon canon, std::optional<std::uint64_t> length);

    void update(std::string_view chunk);
    std::string finish();  // the raw 32-octet digest; empty if OpenSSL failed

    // Canonicalized octets of the whole body (not capped by l=); valid after finish().
    std::uint64_t canonical_size() const { return produced_; }

  private:
    void content(char c);
    void end_line();
    void emit(std::string_view bytes);
    void flush();

    Canon canon_;
    std::optional<std::uint64_t> length_;
    Sha256 hash_;
    bool pending_cr_ = false;   // a CR that may start the CRLF line break
    bool pending_wsp_ = false;  // relaxed: a WSP run not yet known to be inside the line
    bool line_has_content_ = false;
    std::uint64_t pending_empty_lines_ = 0;  // empty lines that are trailing so far
    std::uint64_t produced_ = 0;             // canonicalized octets so far
    std::string out_;                        // small staging buffer before the digest
};

}  // namespace relaygate::dkim
