// DKIM verification of one message (RFC 6376 6, RFC 8463), sans-I/O: the caller
// feeds the header section, the body in chunks and the key TXT records it
// looked up, then asks for results. No DNS, no clock (the caller passes `now`),
// no exceptions; the body is streamed once, never stored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/dkim/canon.hpp"
#include "gateway/dkim/signature.hpp"
#include "gateway/message/header_reader.hpp"

namespace relaygate::dkim {

enum class Status : std::uint8_t { pass, fail, temperror, permerror };
std::string_view to_string(Status);  // "pass","fail","temperror","permerror" (also a metric label)

struct KeyLookup {
    enum class Outcome : std::uint8_t {
        found,
        not_found,  // NXDOMAIN/NODATA
        error       // SERVFAIL/timeout
    } outcome = Outcome::error;
    std::vector<std::string> txt;  // TXT records (each already concatenated)
    std::string cname_target;      // final CNAME target of the key name, empty if none
};

struct VerifyResult {
    std::string domain, selector;  // empty if the signature did not parse
    Status status = Status::permerror;
    std::string key_name;          // the TXT name queried
    std::string key_cname_target;  // from KeyLookup
    bool length_limited = false;   // l= present (never corroborates; still reported)
    std::string detail;  // "body hash mismatch", "signature expired", "bad signature", ...
};

class Verifier {
  public:
    explicit Verifier(std::size_t max_signatures = 5);

    // Once, when the header section is complete: the raw section (CRLF lines, ending with the
    // empty line if any) and the header reader's fields (offset/length locate the raw field).
    // Parses every DKIM-Signature (first max_signatures, in order); unparseable ones become
    // permerror results.
    void on_header(std::string_view header_section,
                   const std::vector<message::HeaderField>& fields);
    // Un-dot-stuffed body bytes after the header, any split; streamed into one BodyHasher per
    // distinct (body canon, l=), never a second copy of the body.
    void on_body(std::string_view chunk);
    void on_body_end();

    std::vector<std::string> key_queries() const;  // distinct key names still needed
    void on_key(std::string_view key_name, const KeyLookup& lookup);

    // After every key was delivered (a missing one counts as temperror). `now`: Unix seconds,
    // for x= (expired -> fail, "signature expired").
    std::vector<VerifyResult> results(std::uint64_t now) const;

  private:
    struct Body {
        Canon canon;
        std::optional<std::uint64_t> length;
        BodyHasher hasher;
        std::string digest;  // set by on_body_end()
        std::uint64_t canonical_size = 0;
    };
    struct Entry {
        std::optional<Signature> signature;
        std::string error;        // why it did not parse
        std::string header_data;  // RFC 6376 3.7 header hash input
        std::size_t body = 0;     // index into bodies_
        std::string key_name;
    };

    VerifyResult verify(const Entry& e, std::uint64_t now) const;

    std::size_t max_signatures_;
    std::vector<Entry> entries_;
    std::vector<Body> bodies_;
    bool body_done_ = false;
    std::map<std::string, KeyLookup, std::less<>> keys_;
};

}  // namespace relaygate::dkim
