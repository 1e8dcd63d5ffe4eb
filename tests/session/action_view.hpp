// The session's typed actions flattened for tests and the fuzz target:
// one kind (in the order of Action's alternatives) and its payload.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "gateway/session/action.hpp"

namespace relaygate::session::testing {

enum class Kind {
    read_client,
    send_client,
    upstream_connect,
    upstream_command,
    upstream_write,
    upstream_commit,
    upstream_abort,
    upstream_quit,
    start_tls,
    verify_auth,
    dns_lookup,
    check_limits,
    refund_limits,
    close,
};

// A commit's data is one "BDAT <n> LAST" command whose n counts exactly
// the octets after its line, and the message starts with `first` (RFC 3030).
inline bool exact_bdat_last(const std::string& data, std::string_view first) {
    const auto eol = data.find("\r\n");
    std::size_t n = 0;
    return data.starts_with("BDAT ") && eol != std::string::npos &&
           data.compare(eol - 5, 5, " LAST") == 0 &&
           std::sscanf(data.c_str() + 5, "%zu", &n) == 1 && n == data.size() - eol - 2 &&
           data.compare(eol + 2, first.size(), first) == 0;
}

struct Flat {
    Kind kind = Kind::read_client;
    std::string bytes;  // reply, command line, data, terminator, user or DNS name
    std::string data;   // commit: the message data written with the terminator
    UpstreamStep step = UpstreamStep::connect;
    bool then_rcpt = false;      // upstream_command: MAIL and RCPT pipelined
    std::string secret;          // verify_auth: the password
    ratelimit::Request request;  // check_limits, refund_limits
    std::uint64_t units = 0;     // refund_limits
};

inline Flat flatten(Action a) {
    Flat f;
    f.kind = static_cast<Kind>(a.index());
    std::visit(
        [&](auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, act::SendClient> ||
                          std::is_same_v<T, act::UpstreamWrite>)
                f.bytes = std::move(x.bytes);
            else if constexpr (std::is_same_v<T, act::UpstreamCommand>) {
                f.bytes = std::move(x.line);
                f.step = x.step;
                f.then_rcpt = x.then_rcpt;
            } else if constexpr (std::is_same_v<T, act::UpstreamCommit>) {
                f.data = std::move(x.data);
                f.bytes = std::move(x.terminator);
                f.step = UpstreamStep::dot;
            } else if constexpr (std::is_same_v<T, act::UpstreamWrite>) {
                f.step = UpstreamStep::write;
            } else if constexpr (std::is_same_v<T, act::VerifyAuth>) {
                f.bytes = std::move(x.user);
                f.secret = std::move(x.password);
            } else if constexpr (std::is_same_v<T, act::DnsLookup>) {
                f.bytes = std::move(x.name);
            } else if constexpr (std::is_same_v<T, act::CheckLimits>) {
                f.request = std::move(x.request);
            } else if constexpr (std::is_same_v<T, act::RefundLimits>) {
                f.request = std::move(x.request);
                f.units = x.units;
            }
        },
        a);
    if (f.kind == Kind::upstream_write) f.step = UpstreamStep::write;
    return f;
}

}  // namespace relaygate::session::testing
