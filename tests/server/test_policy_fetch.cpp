// policy_url's pure parts: the Ed25519 detached signature and the backoff
// (the HTTPS exchange is tests/integration/test_policy_url.py).
#include "gateway/server/policy_fetch.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "gateway/common/base64.hpp"

using namespace relaygate::server;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

struct KeyPair {
    EVP_PKEY* key = nullptr;
    explicit KeyPair(const char* type) {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, type, std::size_t{2048});  // bits: RSA only
    }
    ~KeyPair() { EVP_PKEY_free(key); }
    std::string public_pem() const {
        BIO* bio = BIO_new(BIO_s_mem());
        PEM_write_bio_PUBKEY(bio, key);
        char* data = nullptr;
        const long n = BIO_get_mem_data(bio, &data);
        std::string out(data, static_cast<std::size_t>(n));
        BIO_free(bio);
        return out;
    }
    std::string sign(std::string_view data) const {
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        std::string sig(64, '\0');
        std::size_t len = sig.size();
        EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key);
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size());
        EVP_MD_CTX_free(ctx);
        sig.resize(len);
        return sig;
    }
};

}  // namespace

TEST_CASE("SignatureKey: Ed25519 detached signatures, raw or base64") {
    const KeyPair signer("ED25519"), other("ED25519");
    std::string error;
    auto key = SignatureKey::from_pem(signer.public_pem(), error);
    REQUIRE(key);
    const std::string bundle = R"({"version": 1, "tenants": {}})";
    const std::string sig = signer.sign(bundle);
    REQUIRE(sig.size() == 64);

    CHECK(key->verify(bundle, sig));
    // As `openssl base64` writes it: wrapped, with a final newline.
    std::string b64 = relaygate::base64_encode(sig);
    b64.insert(64, "\n");
    CHECK(key->verify(bundle, b64 + "\n"));
    CHECK(key->verify(bundle, "  " + b64 + "\r\n"));

    CHECK_FALSE(key->verify(bundle + " ", sig));             // one byte more
    CHECK_FALSE(key->verify(bundle, other.sign(bundle)));    // another key
    CHECK_FALSE(key->verify(bundle, sig.substr(0, 63)));     // short
    CHECK_FALSE(key->verify(bundle, ""));                    // none
    CHECK_FALSE(key->verify(bundle, "not base64 at all!"));  // garbage

    // Only Ed25519 public keys are accepted.
    const KeyPair rsa("RSA");
    CHECK_FALSE(SignatureKey::from_pem(rsa.public_pem(), error));
    CHECK(error == "not an Ed25519 key");
    CHECK_FALSE(SignatureKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n", error));
    CHECK(error == "not a PEM public key");
}

TEST_CASE("fetch_delay: the poll interval, then doubling up to backoff_max, plus jitter") {
    const auto d = [](unsigned failures, double jitter = 0) {
        return fetch_delay(seconds(30), seconds(300), failures, jitter);
    };
    CHECK(d(0) == seconds(30));
    CHECK(d(1) == seconds(30));
    CHECK(d(2) == seconds(60));
    CHECK(d(3) == seconds(120));
    CHECK(d(4) == seconds(240));
    CHECK(d(5) == seconds(300));
    CHECK(d(1000) == seconds(300));
    CHECK(d(0, 0.5) == milliseconds(33000));
    CHECK(d(5, 0.999) < milliseconds(360000));
    // backoff_max below the poll interval never shortens the poll.
    CHECK(fetch_delay(seconds(60), seconds(10), 3, 0) == seconds(60));
}
