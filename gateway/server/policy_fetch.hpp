// policy_url: fetching the policy over HTTPS, the way Open Policy Agent
// fetches bundles. One GET per poll with If-None-Match (304: nothing to
// do), an optional bearer token, the server's certificate verified against
// a CA and the URL's host name, a size limit and one deadline for the whole
// exchange. A detached Ed25519 signature over the exact bytes proves the
// bundle came from whoever holds the signing key, not merely from whoever
// answers at the URL.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <openssl/evp.h>

#include "gateway/common/https_url.hpp"
#include "gateway/net/asio.hpp"

namespace relaygate::server {

// An Ed25519 public key (PEM "PUBLIC KEY") that checks detached signatures
// (RFC 8032 5.1.7, the signature over the exact bytes, as `openssl pkeyutl
// -sign -rawin` makes it).
class SignatureKey {
  public:
    // nullopt with `error` set when the text is not an Ed25519 public key.
    static std::optional<SignatureKey> from_pem(std::string_view pem, std::string& error);

    // One signature's check over data given in pieces. Verifying reads the
    // data once, inside SHA-512(R || A || data), so a 30 MB bundle is
    // checked a piece at a time: OpenSSL 3.0's Ed25519 wants it whole and
    // contiguous, which put every page of the bundle in the process's RSS.
    class Check {
      public:
        void update(std::string_view piece);
        // Whether the signature verifies over everything given to update.
        bool verify();

      private:
        friend class SignatureKey;
        Check();
        std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> hash_;
        std::array<unsigned char, 32> key_{};
        std::array<unsigned char, 64> signature_{};
        bool usable_ = false;  // the signature had 64 octets
    };
    // `signature`: the 64 signature bytes, or their base64 (with
    // surrounding whitespace, as `openssl base64` writes it).
    Check check(std::string_view signature) const;
    bool verify(std::string_view data, std::string_view signature) const;

  private:
    std::array<unsigned char, 32> key_{};  // A, the encoded point
};

// The wait before the next fetch after `failures` failures in a row: the
// poll interval, then doubling from it up to `backoff_max`. `jitter` in
// [0, 1) adds up to 20% so replicas do not poll in step.
std::chrono::milliseconds fetch_delay(std::chrono::seconds poll, std::chrono::seconds backoff_max,
                                      unsigned failures, double jitter);

struct FetchRequest {
    HttpsUrl url;
    std::string verify_name;  // the name the certificate must carry; empty: url.host
    std::string etag;         // sent as If-None-Match when not empty
    std::string bearer_token;
    std::chrono::seconds timeout{10};  // connect, TLS, request and the whole body
    std::uint64_t max_bytes = 64 << 20;
    // Where a 200's body goes, piece by piece as it arrives (a 30 MB policy
    // is never held whole); empty: into FetchResult::body. The pieces of an
    // answer that then fails (truncated, too large) have been delivered too:
    // the caller drops them.
    std::function<void(std::string_view piece)> on_body;
};

struct FetchResult {
    enum class Status { ok, not_modified, failed };
    Status status = Status::failed;
    unsigned http_status = 0;
    std::string body;  // without FetchRequest::on_body
    std::string etag;
    // failed: kind is the metric label (network | timeout | tls | http |
    // too_large | truncated) and error the log text.
    std::string_view kind;
    std::string error;
};

// One GET on the calling coroutine's executor; never throws.
net::awaitable<FetchResult> https_get(net::asio::ssl::context& tls, FetchRequest request);

}  // namespace relaygate::server
