// RFC 5322 3.4 address lists (with RFC 6532 UTF-8 and RFC 6854 groups) for
// one unfolded field body. Strict: obsolete forms that change what an address
// means (routes, obs-local-part, obs-domain, literals) are refused, never repaired.
// Pure: no I/O; every error is a Reason from the "message originators" table.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "gateway/common/reason.hpp"
#include "gateway/common/result.hpp"

namespace relaygate::message {

struct AddressError {
    Reason reason;
    std::string detail;  // for logs
};

struct ParsedMailbox {
    std::string display_name;  // phrase words joined by one space, quotes and quoted-pairs
                               // resolved, comments dropped, encoded-words as written
    std::string local_part;    // dot-atom text, or quoted-string content unescaped
    bool quoted_local_part = false;
    std::string domain;  // lower-case A-labels (normalize_domain)
    bool in_group = false;
};

struct ParsedGroup {
    std::string display_name;
    std::size_t members = 0;
};

struct AddressList {
    // Every mailbox, group members flattened in order; the usual one inline.
    boost::container::small_vector<ParsedMailbox, 1> mailboxes;
    std::vector<ParsedGroup> groups;
    std::vector<std::string> comments;  // text of every top-level comment (nested ones included)
};

struct AddressOptions {
    bool smtputf8 = false;  // RFC 6532: UTF-8 in atext, qtext, ctext
};

// Parses `value` (an unfolded field body) as address-list. An empty or
// CFWS-only value gives an empty list; the caller decides what that means.
Result<AddressList, AddressError> parse_address_list(std::string_view value,
                                                     const AddressOptions& options);

}  // namespace relaygate::message
