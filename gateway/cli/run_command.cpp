// `relaygate run --config FILE`: config errors are printed with their JSON
// paths and exit 1 before anything binds.
#include "gateway/cli/run_command.hpp"

#include <fmt/core.h>

#include <memory>

#include "gateway/config/config.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/server.hpp"

namespace relaygate::cli {

void add_run_command(CLI::App& app) {
    auto file = std::make_shared<std::string>();
    auto level = std::make_shared<std::string>("info");
    auto* run = app.add_subcommand("run", "Serve SMTP in front of the upstream relay");
    run->add_option("--config", *file, "Gateway config file (JSON)")->required();
    run->add_option("--log-level", *level,
                    "Operational log level: debug (adds each session's state changes), "
                    "info, warn or error (default info)")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    run->footer(
        "Listens on the configured addresses, authorizes every transaction against the\n"
        "policy file and relays authorized mail to the upstream. SIGHUP reloads the\n"
        "policy; SIGTERM drains and exits. Logs are JSON lines on stderr.");
    run->callback([file, level] {
        server::Logger::set_min_level(*level == "debug"   ? server::Level::debug
                                      : *level == "warn"  ? server::Level::warn
                                      : *level == "error" ? server::Level::error
                                                          : server::Level::info);
        auto cfg = config::load_config(*file);
        if (!cfg) {
            for (const auto& e : cfg.error())
                fmt::print(stderr, "{}: {}\n", *file, config::format_error(e));
            throw CLI::RuntimeError(1);
        }
        server::Server server(std::move(cfg).value());
        if (int rc = server.run(); rc != 0) throw CLI::RuntimeError(rc);
    });
}

}  // namespace relaygate::cli
