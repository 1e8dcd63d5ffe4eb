// Salted, slow password hashes for SASL identities:
//   $pbkdf2-sha256$i=<iterations>$<base64 salt>$<base64 derived key>
// (RFC 8018 PBKDF2 with HMAC-SHA-256, base64 of RFC 4648 without padding).
// Owns only hashing and verification; never logs or stores a password.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/common/result.hpp"

namespace relaygate::policy {

// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
inline constexpr std::uint32_t kDefaultPbkdf2Iterations = 600'000;
// Below this a hash is refused: a cracked policy file would leak passwords.
inline constexpr std::uint32_t kMinPbkdf2Iterations = 1'000;
// Above this one AUTH would cost seconds of CPU: a denial of service.
inline constexpr std::uint32_t kMaxPbkdf2Iterations = 10'000'000;
// Under this the linter warns (tests and migrations may go lower).
inline constexpr std::uint32_t kWeakPbkdf2Iterations = 100'000;

struct PasswordHashInfo {
    std::uint32_t iterations = 0;
    std::string salt;  // raw bytes
    std::string key;   // raw bytes, 32 for SHA-256
};

// Parses and bounds-checks a hash string; the error says what is wrong.
Result<PasswordHashInfo, std::string> parse_password_hash(std::string_view hash);

// A fresh hash with a 16-byte random salt (OpenSSL RAND_bytes).
Result<std::string, std::string> hash_password(std::string_view password,
                                               std::uint32_t iterations = kDefaultPbkdf2Iterations);

// A well-formed hash with random salt and key that no password derives: AUTH
// for an unknown user is checked against it, so that an unknown user name
// costs the same PBKDF2 work as a wrong password (no user enumeration).
std::string decoy_password_hash(std::uint32_t iterations = kDefaultPbkdf2Iterations);

// True only if `hash` is well-formed and `password` derives the same key;
// the comparison is constant-time (CRYPTO_memcmp). Never throws.
bool verify_password(std::string_view hash, std::string_view password) noexcept;

}  // namespace relaygate::policy
