// What the session machine asks its runner to do, one typed action at a
// time (Boost.MySQL's next_action style): the runner performs it and
// reports the result through the matching SessionMachine::on_* call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "gateway/common/reason.hpp"
#include "gateway/ratelimit/store.hpp"
#include "gateway/smtp/ehlo_capabilities.hpp"
#include "gateway/smtp/reply.hpp"

namespace relaygate::session {

// What the upstream is asked to do; also the metric label of its latency.
enum class UpstreamStep : std::uint8_t { connect, mail, rcpt, data, write, dot, rset };
std::string_view to_string(UpstreamStep s);

namespace act {
// Flush pending client output, then read more input -> on_client_data /
// on_client_closed / on_timeout.
struct ReadClient {};
// Send a formatted reply to the client (queued until the next flush).
struct SendClient {
    std::string bytes;
};
// Connect, greeting, EHLO (STARTTLS, XCLIENT) to the relay -> on_upstream_result.
struct UpstreamConnect {};
// One command line (MAIL, RCPT, DATA, RSET) -> on_upstream_result. With
// `then_rcpt`, `line` is a MAIL line and a RCPT line written together (RFC
// 2920 pipelining): the result carries both replies.
struct UpstreamCommand {
    std::string line;
    UpstreamStep step = UpstreamStep::mail;
    bool then_rcpt = false;
};
// Dot-stuffed message data -> on_upstream_result (ok or lost).
struct UpstreamWrite {
    std::string bytes;
};
// The rest of the message data and the end-of-data terminator, written
// together: the commit point -> on_upstream_result. Towards a relay that
// offers CHUNKING `data` may instead be one "BDAT <n> LAST" command with the
// whole message (RFC 3030), and `terminator` is then empty.
struct UpstreamCommit {
    std::string data;
    std::string terminator;
};
// Close the upstream connection now (mid-DATA: the relay discards).
struct UpstreamAbort {};
// A polite QUIT and close; no result expected.
struct UpstreamQuit {};
// Flush client output, then the TLS server handshake -> on_tls_result.
struct StartTls {};
// Check a password -> on_auth_result or on_auth_throttled.
struct VerifyAuth {
    std::string user;
    std::string password;
};
// Resolve the TXT records of a name -> on_dns_result.
struct DnsLookup {
    std::string name;
};
// Ask the volume-control store (rate limits, anomaly signals) ->
// on_limits_result.
struct CheckLimits {
    ratelimit::Request request;
};
// Give unused recipient-lease units back to the volume-control store. No
// result: the runner submits it without waiting (the session goes on) and
// counts whether it reached the store; `units` is what it gives back.
struct RefundLimits {
    ratelimit::Request request;
    std::uint64_t units = 0;
};
// Flush client output and close the client connection. Always the last.
struct Close {};
}  // namespace act

using Action = std::variant<act::ReadClient, act::SendClient, act::UpstreamConnect,
                            act::UpstreamCommand, act::UpstreamWrite, act::UpstreamCommit,
                            act::UpstreamAbort, act::UpstreamQuit, act::StartTls, act::VerifyAuth,
                            act::DnsLookup, act::CheckLimits, act::RefundLimits, act::Close>;

// The position of action type T in Action, for a switch over a.index() (a
// coroutine runner cannot co_await inside std::visit):
//   case index_of<act::SendClient>: out += std::get<act::SendClient>(a).bytes;
template <class T, class V>
struct variant_index;
template <class T, class... Ts>
struct variant_index<T, std::variant<Ts...>> {
    static constexpr std::size_t value = [] {
        std::size_t i = 0;
        ((std::is_same_v<T, Ts> ? false : (++i, true)) && ...);
        return i;
    }();
};
template <class T>
inline constexpr std::size_t index_of = variant_index<T, Action>::value;

// The action's name, for logs and transcripts: "send_client", "upstream_command", ...
std::string_view name(const Action& a);

// The result of an UpstreamConnect, Command, Write or Commit action.
struct UpstreamResult {
    bool ok = false;  // false: connection failed, timed out or broke (it is closed)
    Reason failure = Reason::upstream_failed;                    // when !ok
    smtp::Reply reply;                                           // command/commit: the reply
    std::shared_ptr<const smtp::EhloCapabilities> capabilities;  // connect: the EHLO's
    // A MAIL + RCPT group (UpstreamCommand::then_rcpt): the RCPT's reply, when
    // both arrived; `reply` is the MAIL's.
    std::optional<smtp::Reply> rcpt_reply;
};

}  // namespace relaygate::session
