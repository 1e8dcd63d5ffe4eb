// relaygate command-line entry point: dispatches to subcommands.
// Owns argument parsing only; each subcommand lives in its own file.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "gateway/cli/dns_command.hpp"
#include "gateway/cli/policy_commands.hpp"
#include "gateway/cli/run_command.hpp"
#include "gateway/server/version.hpp"

int main(int argc, char** argv) {
    CLI::App app{"relaygate: sender-side relay authorization gateway"};
    app.set_version_flag("--version",
                         fmt::format("relaygate {} (revision {})", relaygate::server::version(),
                                     relaygate::server::revision()));
    app.require_subcommand(0, 1);
    relaygate::cli::add_policy_commands(app);
    relaygate::cli::add_run_command(app);
    relaygate::cli::add_dns_command(app);
    CLI11_PARSE(app, argc, argv);
    if (app.get_subcommands().empty()) fmt::print("{}", app.help());
    return 0;
}
