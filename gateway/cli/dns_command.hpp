// `relaygate resolve`: one lookup through the gateway's own DNS resolver,
// printed as JSON, for operators checking what the gateway sees. Command-line
// plumbing only; the lookup itself is server::DnsResolver.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gateway/dns/packet.hpp"

namespace relaygate::cli {

// The gateway's resolver, blocking, for command-line tools (`resolve`,
// `explain`). Throws std::runtime_error on bad options (as DnsResolver).
class CliResolver {
  public:
    CliResolver(std::vector<std::string> servers, double timeout_seconds, int attempts = 2);
    ~CliResolver();
    dns::Answer resolve(const std::string& name, dns::RrType type);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Exit status: 0 ok, 1 nxdomain/nodata, 2 servfail/error/timeout or bad
// options (reported by throwing CLI::RuntimeError(code)).
void add_dns_command(CLI::App& app);

}  // namespace relaygate::cli
