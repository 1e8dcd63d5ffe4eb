// Key record parsing: tag-list (shared with the signature), the RFC 6376 3.6.1
// tags, then the key itself through OpenSSL (DER SubjectPublicKeyInfo for RSA,
// the raw 32 octets for Ed25519 per RFC 8463 4). No I/O.
#include "gateway/dkim/key_record.hpp"

#include <openssl/x509.h>

#include <initializer_list>

#include "gateway/common/ascii.hpp"
#include "gateway/common/base64.hpp"

namespace relaygate::dkim {

namespace {

using KeyResult = Result<PublicKey, std::string>;

// RFC 8301 3.2: verifiers MUST NOT consider signatures using RSA keys of
// less than 1024 bits as valid.
constexpr int kMinRsaBits = 1024;
constexpr std::size_t kEd25519KeySize = 32;

Unexpected<std::string> fail(std::string why) {
    return unexpected(std::move(why));
}

// True if the colon-separated list `v` has an item equal to one of `wanted`.
bool list_has(std::string_view v, std::initializer_list<std::string_view> wanted) {
    while (true) {
        const auto colon = v.find(':');
        const std::string_view item = ascii::trim_wsp(v.substr(0, colon));
        for (auto w : wanted)
            if (item == w) return true;
        if (colon == std::string_view::npos) return false;
        v.remove_prefix(colon + 1);
    }
}

KeyResult rsa_key(const std::string& der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
    if (!key) return fail("p= is not an RSA SubjectPublicKeyInfo");
    if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size())
        return fail("trailing bytes after the key in p=");
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) return fail("p= is not an RSA key");
    if (EVP_PKEY_get_bits(key.get()) < kMinRsaBits) return fail("RSA key shorter than 1024 bits");
    return PublicKey{Algorithm::rsa_sha256, std::move(key)};
}

KeyResult ed25519_key(const std::string& raw) {
    if (raw.size() != kEd25519KeySize) return fail("p= is not a 32-octet Ed25519 key");
    EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
    if (!key) return fail("p= is not an Ed25519 key");
    return PublicKey{Algorithm::ed25519_sha256, std::move(key)};
}

}  // namespace

Result<PublicKey, std::string> parse_key_record(std::string_view txt, Algorithm expected) {
    auto tags = parse_tag_list(txt);
    if (!tags) return fail("bad key record: " + tags.error());

    Algorithm algorithm = Algorithm::rsa_sha256;  // 3.6.1 k=: default "rsa"
    const std::string* p = nullptr;
    for (std::size_t i = 0; i < tags->size(); ++i) {
        const auto& [name, v] = (*tags)[i];
        if (name == "v") {
            // 3.6.1 v=: "if specified, this tag MUST be set to "DKIM1"" and be first.
            if (i != 0) return fail("v= is not the first tag");
            if (v != "DKIM1") return fail("unsupported key record version v=" + v);
        } else if (name == "k") {
            if (v == "rsa") {
                algorithm = Algorithm::rsa_sha256;
            } else if (v == "ed25519") {
                algorithm = Algorithm::ed25519_sha256;
            } else {
                return fail("unsupported key type k=" + v);
            }
        } else if (name == "h") {
            if (!list_has(v, {"sha256"})) return fail("key h= does not allow sha256");
        } else if (name == "s") {
            if (!list_has(v, {"email", "*"})) return fail("key s= does not allow email");
        } else if (name == "p") {
            p = &v;
        }
    }
    if (!p) return fail("key record without p=");
    if (algorithm != expected) return fail("key type does not match a=");
    // 3.6.1 p=: "An empty value means that this public key has been revoked."
    std::string compact;
    for (char c : *p)
        if (!ascii::is_wsp(static_cast<unsigned char>(c))) compact += c;
    if (compact.empty()) return fail("key revoked");
    const auto der = base64_decode(compact);
    if (!der) return fail("bad base64 in p=");
    return algorithm == Algorithm::rsa_sha256 ? rsa_key(*der) : ed25519_key(*der);
}

}  // namespace relaygate::dkim
