// policy_url's pure parts: the Ed25519 detached signature and the backoff
// (the HTTPS exchange is tests/integration/test_policy_url.py).
#include "gateway/server/policy_fetch.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <random>

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

namespace {
bool openssl_verifies(EVP_PKEY* key, std::string_view data, std::string_view sig) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key);
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                            sig.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size()) == 1;
}
std::string pem_of_raw_key(const std::string& raw) {
    EVP_PKEY* key = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
    REQUIRE(key);
    KeyPair pair("ED25519");
    EVP_PKEY_free(pair.key);
    pair.key = key;
    return pair.public_pem();
}
}  // namespace

TEST_CASE("SignatureKey::Check: the data in pieces, split anywhere, gives OpenSSL's verdict") {
    const KeyPair signer("ED25519");
    std::string error;
    const auto key = SignatureKey::from_pem(signer.public_pem(), error);
    REQUIRE(key);
    std::mt19937 random(7);
    for (std::size_t size : {0, 1, 31, 32, 33, 64, 127, 128, 129, 300}) {
        std::string data(size, '\0');
        for (auto& c : data)
            c = static_cast<char>(random());
        const std::string sig = signer.sign(data);
        REQUIRE(openssl_verifies(signer.key, data, sig));
        // Two pieces, split at every octet, and one piece per octet.
        for (std::size_t at = 0; at <= size; ++at) {
            auto check = key->check(sig);
            check.update(std::string_view(data).substr(0, at));
            check.update(std::string_view(data).substr(at));
            CHECK(check.verify());
        }
        auto check = key->check(sig);
        for (char c : data)
            check.update(std::string_view(&c, 1));
        CHECK(check.verify());

        // Any one bit flipped, in the signature or the data: both refuse.
        for (int round = 0; round < 40; ++round) {
            std::string bad_sig = sig, bad_data = data;
            const bool in_sig = data.empty() || round % 2 == 0;
            auto& target = in_sig ? bad_sig : bad_data;
            target[random() % target.size()] ^= static_cast<char>(1u << (random() % 8));
            CHECK_FALSE(key->verify(bad_data, bad_sig));
            CHECK_FALSE(openssl_verifies(signer.key, bad_data, bad_sig));
        }
    }
}

TEST_CASE("SignatureKey: S at or above the group order and small-order keys are refused") {
    const KeyPair signer("ED25519");
    std::string error;
    const auto key = SignatureKey::from_pem(signer.public_pem(), error);
    REQUIRE(key);
    const std::string data = "{\"tenants\": {}}";
    const std::string sig = signer.sign(data);
    REQUIRE(key->verify(data, sig));
    // S + L satisfies the group equation too (the same point): a second
    // valid-looking signature for the same bytes, which RFC 8032 forbids.
    static constexpr unsigned char kOrder[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                                 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                                 0,    0,    0,    0,    0,    0,    0,    0,
                                                 0,    0,    0,    0,    0,    0,    0,    0x10};
    std::string malleable = sig;
    unsigned carry = 0;
    for (std::size_t i = 0; i < 32; ++i) {
        const unsigned sum = static_cast<unsigned char>(sig[32 + i]) + kOrder[i] + carry;
        malleable[32 + i] = static_cast<char>(sum & 0xff);
        carry = sum >> 8;
    }
    CHECK_FALSE(key->verify(data, malleable));
    CHECK_FALSE(openssl_verifies(signer.key, data, malleable));

    // The neutral point (y = 1) signs nothing: refused as a key.
    std::string identity(32, '\0');
    identity[0] = 1;
    CHECK_FALSE(SignatureKey::from_pem(pem_of_raw_key(identity), error));
    CHECK(error.find("small order") != std::string::npos);
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
