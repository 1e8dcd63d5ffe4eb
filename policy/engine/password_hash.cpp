// PBKDF2-HMAC-SHA256 via OpenSSL's PKCS5_PBKDF2_HMAC; the string format is
// our own self-describing one so the algorithm can change without a flag day.
#include "policy/engine/password_hash.hpp"

#include "gateway/common/base64.hpp"

#include <fmt/core.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace relaygate::policy {
namespace {

constexpr std::string_view kPrefix = "$pbkdf2-sha256$i=";
constexpr std::size_t kKeyLen = 32;
constexpr std::size_t kMinSalt = 8, kMaxSalt = 64, kSaltLen = 16;

bool derive(std::string_view password, std::string_view salt, std::uint32_t iterations,
            std::array<unsigned char, kKeyLen>& out) {
    return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                             reinterpret_cast<const unsigned char*>(salt.data()),
                             static_cast<int>(salt.size()), static_cast<int>(iterations),
                             EVP_sha256(), static_cast<int>(out.size()), out.data()) == 1;
}

}  // namespace

Result<PasswordHashInfo, std::string> parse_password_hash(std::string_view hash) {
    auto fail = [](std::string m) -> Result<PasswordHashInfo, std::string> {
        return unexpected(std::move(m));
    };
    if (!hash.starts_with(kPrefix))
        return fail(
            "password_hash must start with \"$pbkdf2-sha256$i=\" (use relaygate hash-password)");
    std::string_view rest = hash.substr(kPrefix.size());
    auto d1 = rest.find('$');
    if (d1 == std::string_view::npos) return fail("password_hash lacks the salt field");
    std::string_view iter_text = rest.substr(0, d1);
    rest = rest.substr(d1 + 1);
    auto d2 = rest.find('$');
    if (d2 == std::string_view::npos) return fail("password_hash lacks the key field");
    std::string_view salt_text = rest.substr(0, d2);
    std::string_view key_text = rest.substr(d2 + 1);

    PasswordHashInfo info;
    auto [end, ec] =
        std::from_chars(iter_text.data(), iter_text.data() + iter_text.size(), info.iterations);
    if (iter_text.empty() || ec != std::errc{} || end != iter_text.data() + iter_text.size() ||
        iter_text.front() == '0')
        return fail("password_hash iteration count is not a number");
    if (info.iterations < kMinPbkdf2Iterations || info.iterations > kMaxPbkdf2Iterations)
        return fail(fmt::format("password_hash iteration count must be {}..{}",
                                kMinPbkdf2Iterations, kMaxPbkdf2Iterations));
    auto salt = base64_decode(salt_text, Base64Padding::unpadded);
    if (!salt) return fail("password_hash salt is not canonical base64 without padding");
    if (salt->size() < kMinSalt || salt->size() > kMaxSalt)
        return fail(fmt::format("password_hash salt must be {}..{} bytes", kMinSalt, kMaxSalt));
    auto key = base64_decode(key_text, Base64Padding::unpadded);
    if (!key) return fail("password_hash key is not canonical base64 without padding");
    if (key->size() != kKeyLen) return fail("password_hash key must be 32 bytes (SHA-256)");
    info.salt = std::move(*salt);
    info.key = std::move(*key);
    return info;
}

std::string decoy_password_hash(std::uint32_t iterations) {
    iterations = std::clamp(iterations, kMinPbkdf2Iterations, kMaxPbkdf2Iterations);
    std::array<unsigned char, kSaltLen + kKeyLen> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
        bytes.fill(0xA5);  // still a key no password is expected to derive
    const std::string_view raw(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return fmt::format("{}{}${}${}", kPrefix, iterations,
                       base64_encode(raw.substr(0, kSaltLen), Base64Padding::unpadded),
                       base64_encode(raw.substr(kSaltLen), Base64Padding::unpadded));
}

Result<std::string, std::string> hash_password(std::string_view password,
                                               std::uint32_t iterations) {
    if (iterations < kMinPbkdf2Iterations || iterations > kMaxPbkdf2Iterations)
        return unexpected(
            fmt::format("iterations must be {}..{}", kMinPbkdf2Iterations, kMaxPbkdf2Iterations));
    std::array<unsigned char, kSaltLen> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1)
        return unexpected(std::string("OpenSSL RAND_bytes failed"));
    std::string_view salt_view(reinterpret_cast<const char*>(salt.data()), salt.size());
    std::array<unsigned char, kKeyLen> key{};
    if (!derive(password, salt_view, iterations, key))
        return unexpected(std::string("OpenSSL PKCS5_PBKDF2_HMAC failed"));
    return fmt::format("{}{}${}${}", kPrefix, iterations,
                       base64_encode(salt_view, Base64Padding::unpadded),
                       base64_encode({reinterpret_cast<const char*>(key.data()), key.size()},
                                     Base64Padding::unpadded));
}

bool verify_password(std::string_view hash, std::string_view password) noexcept {
    try {
        auto info = parse_password_hash(hash);
        if (!info) return false;
        std::array<unsigned char, kKeyLen> key{};
        if (!derive(password, info->salt, info->iterations, key)) return false;
        return CRYPTO_memcmp(key.data(), info->key.data(), kKeyLen) == 0;
    } catch (...) {
        // Only allocation can throw here; failing closed is the answer.
        return false;
    }
}

}  // namespace relaygate::policy
