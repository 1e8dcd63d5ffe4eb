#include "gateway/common/sha256.hpp"

#include "gateway/common/ascii.hpp"

namespace relaygate {
namespace {

// Fetched once: OpenSSL 3 looks EVP_sha256() up again at every use, which
// costs more than hashing one tenant's text (100k per policy load). Null
// when OpenSSL has none: every digest then fails.
const EVP_MD* sha256_md() {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}

}  // namespace

void Sha256::reset() {
    ok_ = ctx_ && sha256_md() && EVP_DigestInit_ex(ctx_.get(), sha256_md(), nullptr) == 1;
}

void Sha256::update(std::string_view piece) {
    ok_ = ok_ && EVP_DigestUpdate(ctx_.get(), piece.data(), piece.size()) == 1;
}

bool Sha256::finish(Digest& out) {
    unsigned int n = 0;
    const bool done = ok_ && EVP_DigestFinal_ex(ctx_.get(), out.data(), &n) == 1 && n == out.size();
    ok_ = false;  // until reset()
    return done;
}

std::string Sha256::raw() {
    Digest d;
    return finish(d) ? std::string(reinterpret_cast<const char*>(d.data()), d.size()) : "";
}

std::string Sha256::hex() {
    Digest d;
    return finish(d) ? ascii::hex(d.data(), d.size()) : "";
}

}  // namespace relaygate
