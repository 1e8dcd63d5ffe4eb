// TLS context construction with OpenSSL 3 through Asio's ssl::context.
#include "gateway/server/tls_context.hpp"

#include "gateway/common/ascii.hpp"

#include <ctime>
#include <filesystem>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace relaygate::server {

namespace ssl = boost::asio::ssl;

namespace {
void harden(ssl::context& ctx) {
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                    ssl::context::no_compression);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.native_handle(),
                        SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // An idle TLS connection keeps no 34 KiB read/write buffers of its own
    // (they come back from a shared freelist when data moves).
    SSL_CTX_set_mode(ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    // TLS 1.2: forward-secret AEAD suites only (TLS 1.3 suites are all fine).
    SSL_CTX_set_cipher_list(ctx.native_handle(),
                            "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS");
}
}  // namespace

std::shared_ptr<ssl::context> make_server_context(const config::Tls& tls, bool request_client_cert,
                                                  std::string& error) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    harden(*ctx);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec) {
        error = "cannot load tls.cert_file " + tls.cert_file + ": " + ec.message();
        return nullptr;
    }
    ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec) {
        error = "cannot load tls.key_file " + tls.key_file + ": " + ec.message();
        return nullptr;
    }
    if (request_client_cert) {
        ctx->set_verify_mode(ssl::verify_peer);
        // Accept any certificate: the policy pins it by digest. A client
        // without a certificate still completes the handshake.
        ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
    }
    return ctx;
}

std::shared_ptr<ssl::context> make_client_context(const config::Upstream& up, std::string& error) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    harden(*ctx);
    if (!up.ca_file.empty()) {
        boost::system::error_code ec;
        ctx->load_verify_file(up.ca_file, ec);
        if (ec) {
            error = "cannot load upstream.ca_file " + up.ca_file + ": " + ec.message();
            return nullptr;
        }
        ctx->set_verify_mode(ssl::verify_peer);
    } else {
        ctx->set_verify_mode(ssl::verify_none);
    }
    return ctx;
}

std::shared_ptr<ssl::context> make_verifying_client_context(const std::string& ca_file,
                                                            std::string& error) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    harden(*ctx);
    boost::system::error_code ec;
    if (!ca_file.empty())
        ctx->load_verify_file(ca_file, ec);
    else
        ctx->set_default_verify_paths(ec);
    if (ec) {
        // Asio 1.18 names most OpenSSL errors only "asio.ssl error".
        std::error_code fs;
        error = "cannot load CA " + ca_file + ": " +
                (std::filesystem::exists(ca_file, fs) ? "not PEM certificates" : "no such file");
        return nullptr;
    }
    ctx->set_verify_mode(ssl::verify_peer);
    return ctx;
}

void expect_peer_name(SSL* ssl, const std::string& name) {
    boost::system::error_code not_ip;
    (void)boost::asio::ip::make_address(name, not_ip);
    if (not_ip) {
        SSL_set_tlsext_host_name(ssl, name.c_str());
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(ssl, name.c_str());
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    }
}

policy::ConnectionFacts peer_certificate_facts(SSL* ssl) {
    policy::ConnectionFacts facts;
    if (!ssl) return facts;
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return facts;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (X509_digest(cert, EVP_sha256(), md, &n) == 1) facts.client_cert_sha256 = ascii::hex(md, n);
    if (X509_pubkey_digest(cert, EVP_sha256(), md, &n) == 1) {
        // X509_pubkey_digest hashes only the key bits; pin the whole SPKI.
        unsigned char* der = nullptr;
        int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
        if (len > 0 &&
            EVP_Digest(der, static_cast<std::size_t>(len), md, &n, EVP_sha256(), nullptr) == 1)
            facts.client_spki_sha256 = ascii::hex(md, n);
        OPENSSL_free(der);
    }
    X509_free(cert);
    return facts;
}

std::optional<std::int64_t> TlsContexts::server_certificate_not_after() const {
    auto ctx = server(false);
    if (!ctx) return std::nullopt;
    X509* cert = SSL_CTX_get0_certificate(ctx->native_handle());
    if (!cert) return std::nullopt;
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return std::nullopt;
    return static_cast<std::int64_t>(timegm(&tm));
}

bool TlsContexts::load(const config::Config& cfg, std::string& error) {
    std::shared_ptr<ssl::context> req, plain, client;
    bool need_server = false;
    for (const auto& l : cfg.listeners)
        need_server |= l.starttls != config::StartTls::off || l.implicit_tls;
    if (need_server) {
        req = make_server_context(cfg.tls, true, error);
        if (!req) return false;
        plain = make_server_context(cfg.tls, false, error);
        if (!plain) return false;
    }
    if (cfg.upstream.starttls != config::UpstreamTls::off) {
        client = make_client_context(cfg.upstream, error);
        if (!client) return false;
    }
    std::lock_guard lock(mutex_);
    server_request_ = std::move(req);
    server_plain_ = std::move(plain);
    client_ = std::move(client);
    return true;
}

}  // namespace relaygate::server
