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
    // Set: the policy is fetched from this URL by the gateway, and `file`
    // holds the last good copy of it (the gateway writes it).
    std::string url;

    // The files and directories whose change means "reload" (not a fetched
    // policy's copy: the gateway writes that itself).
    std::vector<std::filesystem::path> watched() const;
    // "policy.json", "dir/*.json", "https://...", for logs.
    std::string describe() const;
    // "file" | "dir" | "url": the /readyz source.
    std::string_view kind() const { return !url.empty() ? "url" : !dir.empty() ? "dir" : "file"; }
};

// Merges the directory's *.json files (names starting with '.' skipped, in
// name order) into one document: "tenants" are united, a tenant in two
// files is an error naming both (duplicate_tenant); any other top-level key
// may be in one file only (duplicate_key), "version" must agree, "$schema"
// and "description" are per file. Every diagnostic names its file and
// locates the path in it.
LoadResult load_dir(const std::filesystem::path& dir, const Credentials* credentials = nullptr,
                    const Policy* previous = nullptr);

// Reads the credentials (if any), then the policy file or directory.
// `previous`: the policy the result replaces (an incremental load when the
// tenants are the same: see Policy::load_text).
LoadResult load_policy(const PolicySource& source, const Policy* previous = nullptr);
// Reads the credentials (if any) and loads `text` as the policy (a fetched
// one).
LoadResult load_policy_text(const PolicySource& source, std::string_view text,
                            const Policy* previous = nullptr);
// Reads the credentials (if any) and loads the open file `fd` as the policy
// (a fetched one, written by the gateway); `name` names it in errors.
LoadResult load_policy_descriptor(const PolicySource& source, int fd,
                                  const std::filesystem::path& name,
                                  const Policy* previous = nullptr);

}  // namespace relaygate::policy
