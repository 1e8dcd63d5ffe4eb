// The policy engine's vocabulary: facts the I/O layers gather, and the
// Decision the engine returns. Plain values only: the engine never fetches
// a fact itself (no DNS, no TLS, no clock), so every decision is replayable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/reason.hpp"
#include "policy/engine/ip_address.hpp"
#include "policy/engine/limits.hpp"

// OriginatorField is owned by the header reader.
#include "gateway/message/header_reader.hpp"

namespace relaygate::policy {

enum class Verdict { accept, reject, tempfail };
std::string_view to_string(Verdict v);

// Ordered from weakest to strongest evidence; see Policy for how they rank.
enum class IdentityKind { none, network, client_cert, sasl, provider };
std::string_view to_string(IdentityKind k);  // "none","network","client-cert","sasl","provider"

enum class Mode : std::uint8_t { enforce, report };
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

// What DNS says about a domain granted with "verify": "dns": the tenants
// named by the TXT records at _relaygate.<domain> (see parse_domain_proof).
struct DomainProof {
    enum class Status : std::uint8_t { found, missing, error };
    std::string domain;  // the grant's domain (base of a wildcard), lower-case A-labels
    Status status = Status::error;
    std::vector<std::string> tenants;  // found: tenant ids named by valid records
};

struct EnvelopeFacts {
    bool null_sender = false;  // MAIL FROM:<>
    std::string domain;        // lower-case A-labels; empty when null_sender
    // DNS facts gathered for this transaction's DNS-verified grants; the
    // engine asks for missing ones through Decision::dns_needed.
    std::vector<DomainProof> domain_proofs;
};

// One verified DKIM signature (RFC 6376), as gathered at end of data.
struct DkimFact {
    enum class Status : std::uint8_t { pass, fail, temperror, permerror };
    std::string domain;    // d=
    std::string selector;  // s=
    Status status = Status::permerror;
    std::string key_cname_target;  // the final CNAME target of the key record, if any
    bool length_limited = false;   // l=: the signature may not cover the whole body
};
std::string_view to_string(DkimFact::Status s);  // "pass","fail","temperror","permerror"

struct Originator {
    message::OriginatorField field;
    std::string domain;  // lower-case A-labels, as the header reader produced it
};

struct HeaderFactsForPolicy {
    std::vector<Originator> originators;
    // Every value of every field named by Policy::provider_tenant_headers(),
    // unfolded, in message order. Attestation needs exactly one value.
    std::vector<std::string> provider_header_values;

    void clear() {  // for the next message; the memory is kept
        originators.clear();
        provider_header_values.clear();
    }
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
    // Incomplete: the decision needs the DomainProof of these domains (look
    // up TXT _relaygate.<domain>, add to EnvelopeFacts::domain_proofs and
    // decide again). The verdict meanwhile is tempfail (dns_tempfail), so a
    // caller that ignores this fails closed.
    std::vector<std::string> dns_needed;
    // Header stage: the accepted identity must be corroborated by a DKIM
    // signature, decided at end of data (the caller must verify DKIM).
    bool dkim_required = false;
    // For the reply: what the sender should fix, e.g. the TXT record to
    // publish for domain_not_verified. Empty for most decisions.
    std::string reply_detail;
    std::vector<std::string> trace;  // human-readable, one step per line

    // Volume control: the limits that apply to this transaction (tenant
    // defaults or overrides, the proving identity's, the granting domain's),
    // set when the decision passes (accepted or report-only) with one
    // tenant; empty otherwise. The session asks the store about them.
    std::vector<AppliedLimit> limits;
    LimitMode limits_mode = LimitMode::enforce;  // the tenant's limits "mode"
    SpikeAction on_spike = SpikeAction::log;     // the tenant's limits "on_spike"

    bool accepted() const { return verdict == Verdict::accept; }
};

}  // namespace relaygate::policy
