// `relaygate explain`'s run of the gateway's own SessionMachine: a scripted
// client (EHLO, MAIL, RCPT, DATA, the message, QUIT), a scripted relay that
// accepts everything, and DNS through a callback. It collects what explain
// prints and prints nothing; it decides nothing the session does not.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gateway/dkim/verifier.hpp"
#include "gateway/dns/packet.hpp"
#include "gateway/session/session.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::cli {

struct ExplainInput {
    std::string client_ip;         // ClientInfo.address (after PROXY protocol)
    policy::ConnectionFacts conn;  // sasl_user and certificate digests; client_ip is ignored
    std::string reverse_path;      // "<a@b>" or "<>", sent as MAIL FROM:<...> SMTPUTF8
    // The message as a client would send it before dot-stuffing; nullopt:
    // QUIT right after MAIL FROM (no header facts).
    std::optional<std::string> message;
    std::uint64_t unix_time = 0;  // for DKIM x=
};

struct ExplainRun {
    // The last evaluation at each point ("mail_from", "header", "end_of_data").
    std::map<std::string, policy::Decision, std::less<>> decisions;
    std::vector<std::pair<std::string, dns::Answer>> dns;  // TXT lookups, in order
    std::vector<dkim::VerifyResult> dkim;
    // The client replies to MAIL FROM (the last line of its last reply,
    // e.g. "501 5.1.7 Bad sender address syntax").
    int mail_code = 0;
    std::string mail_reply;
    // How the transaction ended, when the session recorded it before the
    // client's QUIT (always when a message was sent).
    std::optional<session::TransactionRecord> record;
    // Volume-control requests and what a fresh store of this process
    // answered (a running gateway's counters live in its own store).
    std::vector<std::pair<ratelimit::Request, ratelimit::Outcome>> limits;
};

using TxtResolver = std::function<dns::Answer(const std::string& name)>;

// Throws std::runtime_error if the session does not finish (a bug).
ExplainRun run_explain_session(const session::Settings& settings,
                               std::shared_ptr<const policy::Policy> policy,
                               const ExplainInput& input, const TxtResolver& resolve);

}  // namespace relaygate::cli
