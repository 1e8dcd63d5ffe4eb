// TLS contexts: the server context (certificate + key from the config,
// reloaded on SIGHUP) and the upstream client context. Also turns a peer
// certificate into the identity facts the policy pins on.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "gateway/config/config.hpp"
#include "gateway/net/asio.hpp"
#include "policy/engine/decision.hpp"

namespace relaygate::server {

// TLS 1.2+, no compression, no renegotiation, server cipher preference.
// Client certificates are requested, not required, and not chain-verified:
// the policy pins them by SHA-256, and the handshake proves key possession.
std::shared_ptr<boost::asio::ssl::context> make_server_context(const config::Tls& tls,
                                                               bool request_client_cert,
                                                               std::string& error);
std::shared_ptr<boost::asio::ssl::context> make_client_context(const config::Upstream& up,
                                                               std::string& error);

// A client context that always verifies the peer: against `ca_file`, or
// the system's CAs when it is empty (the policy source, Redis). Null with
// `error` set when the CA file does not load.
std::shared_ptr<boost::asio::ssl::context> make_verifying_client_context(const std::string& ca_file,
                                                                         std::string& error);
// Before a client handshake: SNI (host names only, RFC 6066 3) and the
// host name or IP address the peer's certificate must carry.
void expect_peer_name(SSL* ssl, const std::string& name);

// SHA-256 of the peer's DER certificate and of its SubjectPublicKeyInfo,
// lower-case hex; empty facts when the peer sent no certificate.
policy::ConnectionFacts peer_certificate_facts(SSL* ssl);

class TlsContexts {
  public:
    // Loads every context the config needs; returns false with `error` set.
    bool load(const config::Config& cfg, std::string& error);
    std::shared_ptr<boost::asio::ssl::context> server(bool request_client_cert) const {
        std::lock_guard lock(mutex_);
        return request_client_cert ? server_request_ : server_plain_;
    }
    std::shared_ptr<boost::asio::ssl::context> client() const {
        std::lock_guard lock(mutex_);
        return client_;
    }
    // The notAfter of the server certificate (tls.cert_file, its first
    // certificate) as Unix time; nullopt without one.
    std::optional<std::int64_t> server_certificate_not_after() const;

  private:
    mutable std::mutex mutex_;
    std::shared_ptr<boost::asio::ssl::context> server_request_, server_plain_, client_;
};

}  // namespace relaygate::server
