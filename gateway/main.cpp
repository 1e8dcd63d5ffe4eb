// relaygate command-line entry point: dispatches to subcommands.
// Owns argument parsing only; each subcommand lives in its own file.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

int main(int argc, char** argv) {
    CLI::App app{"relaygate: sender-side relay authorization gateway"};
    app.set_version_flag("--version", "relaygate 0.1.0");
    app.require_subcommand(0, 1);
    CLI11_PARSE(app, argc, argv);
    fmt::print("{}", app.help());
    return 0;
}
