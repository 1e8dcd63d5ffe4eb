// The policy engine's vocabulary: facts the I/O layers gather, and the
// Decision the engine returns. Plain values only: the engine never fetches
// a fact itself (no DNS, no TLS, no clock), so every decision is replayable.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/reason.hpp"
#include "policy/engine/ip_address.hpp"

// OriginatorField is owned by the header reader.
#include "gateway/message/header_reader.hpp"

namespace relaygate::policy {

enum class Verdict { accept, reject, tempfail };
std::string_view to_string(Verdict v);

// Ordered from weakest to strongest evidence; see Policy for how they rank.
enum class IdentityKind { none, network, client_cert, sasl, provider };
std::string_view to_string(IdentityKind k);  // "none","network","client-cert","sasl","provider"

enum class Mode { enforce, report };
std::string_view to_string(Mode m);

// Connection facts, gathered by the I/O layer before MAIL FROM is decided.
struct ConnectionFacts {
    std::optional<IpAddress> client_ip;  // after PROXY protocol, if trusted
    // Lower-case hex SHA-256 of the DER certificate / SubjectPublicKeyInfo.
    // Set only after a completed TLS handshake (which proves possession of
    // the private key); chain validation is not required for a pin.
    std::optional<std::string> client_cert_sha256;
    std::optional<std::string> client_spki_sha256;
    // Set only after the gateway verified the password (verify_password).
    std::optional<std::string> sasl_user;
};

struct EnvelopeFacts {
    bool null_sender = false;  // MAIL FROM:<>
    std::string domain;        // lower-case A-labels; empty when null_sender
};

struct Originator {
    message::OriginatorField field;
    std::string domain;  // lower-case A-labels, as the header reader produced it
};

struct HeaderFactsForPolicy {
    std::vector<Originator> originators;
    // Every value of every field named by Policy::provider_tenant_headers(),
    // unfolded, in message order. Attestation needs exactly one value.
    std::vector<std::string> provider_header_values;
};

struct Decision {
    Verdict verdict = Verdict::reject;
    Reason reason = Reason::tenant_unknown;  // for report_only: the reason it would have failed
    std::string tenant;                      // empty when no single tenant was identified
    IdentityKind identity = IdentityKind::none;
    std::string identity_detail;  // e.g. "network 198.51.100.0/24", "sasl acme-app"
    std::string grant;            // the domain pattern that authorized the envelope (or From)
    bool report_only = false;     // tenant in report mode: would be rejected, passes
    // MAIL FROM only: the identity is a provider one and is proven only by
    // the tenant header, so the verdict is "accept pending header";
    // at_header decides. `candidates` lists the tenants that could still
    // send for the envelope domain.
    bool pending_header = false;
    std::vector<std::string> candidates;  // pending or tied tenants, sorted
    std::vector<std::string> trace;       // human-readable, one step per line

    bool accepted() const { return verdict == Verdict::accept; }
};

}  // namespace relaygate::policy
