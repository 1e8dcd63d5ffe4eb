// Credentials: SASL user names and their password hashes, kept apart from
// the policy so that they can live in a Kubernetes Secret (or a file only
// root reads) while the policy sits in a ConfigMap. The policy names the
// user (`"sasl_user"`); the hash comes from here.
//
// Two forms, both read by `load_credentials`:
//   a file:      one "user:hash" per line; blank lines and lines starting
//                with '#' are ignored (htpasswd / Dovecot passwd-file style)
//   a directory: one file per user, its name the user, its content the
//                hash (a mounted Secret: each key becomes a file); names
//                starting with '.' are skipped (kubelet's ..data links)
// Pure parsing is `parse_credentials`; only `load_credentials` reads files.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/result.hpp"
#include "policy/engine/policy.hpp"

namespace relaygate::policy {

struct Credential {
    std::string hash;
    std::string where;  // "file:line" or the user's file, for messages
};

struct Credentials {
    std::map<std::string, Credential, std::less<>> users;
    std::string source;  // the file or directory they came from
};

// Parses the file form. Every problem is a Diagnostic with `file` = `name`
// and the line number: a line without ':', an empty or invalid user name
// (policy sasl_user rules), a malformed hash, a user listed twice.
Result<Credentials, std::vector<Diagnostic>> parse_credentials(std::string_view text,
                                                               std::string_view name);

// Reads a credentials file or directory.
Result<Credentials, std::vector<Diagnostic>> load_credentials(const std::filesystem::path& path);

}  // namespace relaygate::policy
