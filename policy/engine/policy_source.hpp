// Where a policy comes from: one file (`policy_file`), or every *.json of a
// directory merged into one policy (`policy_dir`: several ConfigMaps or a
// GitOps tree), plus an optional credentials file or directory holding the
// SASL password hashes (a Secret). Whatever the source, the result is one
// compiled Policy: the gateway loads, lints and swaps it as one.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "policy/engine/policy.hpp"

namespace relaygate::policy {

struct PolicySource {
    std::filesystem::path file;         // set: one policy file
    std::filesystem::path dir;          // or: a directory of *.json files
    std::filesystem::path credentials;  // optional: credentials file or directory

    // The files and directories whose change means "reload".
    std::vector<std::filesystem::path> watched() const;
    // "policy.json", "dir/ (policy_dir)", for logs.
    std::string describe() const;
};

// Merges the directory's *.json files (names starting with '.' skipped, in
// name order) into one document: "tenants" are united, a tenant in two
// files is an error naming both (duplicate_tenant); any other top-level key
// may be in one file only (duplicate_key), "version" must agree, "$schema"
// and "description" are per file. Every diagnostic names its file and
// locates the path in it.
LoadResult load_dir(const std::filesystem::path& dir, const Credentials* credentials = nullptr);

// Reads the credentials (if any), then the policy file or directory.
LoadResult load_policy(const PolicySource& source);

}  // namespace relaygate::policy
