// `relaygate resolve NAME [--type T] [--dns-server ADDR[:PORT]]...
// [--timeout S] [--attempts N]`: prints one JSON object
// {"name","type","status","records","cname_target","ttl","detail"}.
// TXT records are raw bytes; invalid UTF-8 is replaced in the JSON output.
#include "gateway/cli/dns_command.hpp"

#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/dns/packet.hpp"
#include "gateway/net/asio.hpp"
#include "gateway/server/dns_resolver.hpp"

namespace relaygate::cli {

struct CliResolver::Impl {
    net::asio::io_context io;
    server::DnsResolver resolver;
    explicit Impl(server::DnsOptions options)
        : resolver(io.get_executor(), std::move(options), nullptr) {}
};

CliResolver::CliResolver(std::vector<std::string> servers, double timeout_seconds, int attempts) {
    server::DnsOptions options;
    options.servers = std::move(servers);
    options.timeout_seconds = timeout_seconds;
    options.attempts = attempts;
    impl_ = std::make_unique<Impl>(std::move(options));
}

CliResolver::~CliResolver() = default;

dns::Answer CliResolver::resolve(const std::string& name, dns::RrType type) {
    dns::Answer answer;
    auto lookup = [&]() -> net::awaitable<void> {
        answer = co_await impl_->resolver.resolve(name, type);
    };
    net::asio::co_spawn(impl_->io, lookup, net::asio::detached);
    impl_->io.restart();
    impl_->io.run();
    return answer;
}

namespace {

struct ResolveArgs {
    std::string name;
    std::string type = "TXT";
    std::vector<std::string> servers;
    double timeout = 2.0;
    int attempts = 2;
};

int exit_code(dns::Status s) {
    switch (s) {
        case dns::Status::ok:
            return 0;
        case dns::Status::nxdomain:
        case dns::Status::nodata:
            return 1;
        default:
            return 2;
    }
}

int run_resolve(const ResolveArgs& args) {
    const auto type = dns::rr_type_from_string(args.type);
    if (!type) {
        fmt::print(stderr, "error: unknown type \"{}\" (A, AAAA, CNAME, PTR, TXT)\n", args.type);
        return 2;
    }
    std::optional<CliResolver> resolver;
    try {
        resolver.emplace(args.servers, args.timeout, args.attempts);
    } catch (const std::runtime_error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    }
    dns::Answer answer = resolver->resolve(args.name, *type);

    nlohmann::json out = {
        {"name", dns::normalize_name(args.name)},
        {"type", dns::to_string(*type)},
        {"status", dns::to_string(answer.status)},
        {"records", answer.records},
        {"cname_target", answer.cname_target},
        {"ttl", answer.ttl},
        {"detail", answer.detail},
    };
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return exit_code(answer.status);
}

}  // namespace

void add_dns_command(CLI::App& app) {
    auto args = std::make_shared<ResolveArgs>();
    auto* cmd = app.add_subcommand("resolve", "Look up a DNS name with the gateway's resolver");
    cmd->add_option("name", args->name, "Name to look up")->required();
    cmd->add_option("--type", args->type, "Record type: TXT (default), A, AAAA, PTR, CNAME");
    cmd->add_option("--dns-server", args->servers,
                    "Server ADDR, ADDR:PORT or [V6]:PORT (repeatable; default /etc/resolv.conf)");
    cmd->add_option("--timeout", args->timeout, "Seconds per attempt (default 2)");
    cmd->add_option("--attempts", args->attempts, "Rounds over all servers (default 2)");
    cmd->footer(
        "Prints one JSON object. Exit status: 0 ok, 1 nxdomain or nodata,\n"
        "2 servfail, error or timeout.");
    cmd->callback([args] {
        if (int rc = run_resolve(*args); rc != 0) throw CLI::RuntimeError(rc);
    });
}

}  // namespace relaygate::cli
