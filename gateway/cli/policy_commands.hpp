// The policy subcommands: `check`, `explain` and `hash-password`.
// Command-line plumbing only: every decision comes from policy::Policy, and
// nothing here serves traffic or opens a socket.
#pragma once

#include <CLI/CLI.hpp>

namespace relaygate::cli {

// Registers the subcommands on `app`. Each runs from its CLI11 callback and
// reports a non-zero exit status by throwing CLI::RuntimeError(code).
void add_policy_commands(CLI::App& app);

}  // namespace relaygate::cli
