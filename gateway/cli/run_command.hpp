// The `run` subcommand: load the config and serve until SIGTERM.
// Command-line plumbing only; the server lives in gateway/server.
#pragma once

#include <CLI/CLI.hpp>

namespace relaygate::cli {

// Reports a non-zero exit status by throwing CLI::RuntimeError(code).
void add_run_command(CLI::App& app);

}  // namespace relaygate::cli
