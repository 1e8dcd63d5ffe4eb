// SHA-256 over data given in pieces, as if it were one string: the
// project's one copy (the policy's hash and tenant digests, a policy_url
// body, DKIM body hashes).
#pragma once

#include <openssl/evp.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace relaygate {

class Sha256 {
  public:
    using Digest = std::array<unsigned char, 32>;

    Sha256() { reset(); }

    // Starts again (the context is reused: nothing is allocated).
    void reset();
    void update(std::string_view piece);
    // The digest of everything since reset(); false when OpenSSL failed,
    // or when called again without reset().
    bool finish(Digest& out);
    // finish() as 32 raw octets, or as 64 lowercase hex digits; empty when
    // OpenSSL failed.
    std::string raw();
    std::string hex();

  private:
    struct Free {
        void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
    };
    std::unique_ptr<EVP_MD_CTX, Free> ctx_{EVP_MD_CTX_new()};
    bool ok_ = false;
};

}  // namespace relaygate
