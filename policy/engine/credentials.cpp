#include "policy/engine/credentials.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <system_error>

#include "gateway/common/file.hpp"
#include "policy/engine/lint_rules.hpp"
#include "policy/engine/password_hash.hpp"

namespace relaygate::policy {

namespace {

Diagnostic problem(std::string_view file, std::size_t line, ErrorRule rule, std::string message) {
    Diagnostic d;
    d.rule = std::string(rule.id);
    d.message = std::move(message);
    d.line = line;
    d.column = line ? 1 : 0;
    d.file = std::string(file);
    return d;
}

// Adds one user, or a diagnostic when it is invalid or repeated.
void add_user(Credentials& c, std::string_view user, std::string_view hash, std::string where,
              std::string_view file, std::size_t line, std::vector<Diagnostic>& errors) {
    if (!valid_sasl_user(user)) {
        errors.push_back(problem(file, line, "invalid_credential",
                                 "the user name must be 1-255 octets of UTF-8 without control "
                                 "characters"));
        return;
    }
    if (auto info = parse_password_hash(hash); !info) {
        errors.push_back(problem(file, line, "invalid_password_hash",
                                 fmt::format("user \"{}\": {}", user, info.error())));
        return;
    }
    auto [it, fresh] = c.users.try_emplace(std::string(user), Credential{std::string(hash), where});
    if (!fresh)
        errors.push_back(
            problem(file, line, "duplicate_sasl_user",
                    fmt::format("user \"{}\" is already listed at {}", user, it->second.where)));
}

std::string_view trim(std::string_view s) {
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    return s;
}

Result<std::string, std::vector<Diagnostic>> read_file(const std::filesystem::path& p) {
    auto text = relaygate::read_file(p);
    if (!text)
        return unexpected(std::vector<Diagnostic>{
            problem(p.string(), 0, "io", fmt::format("cannot read {}", p.string()))});
    return std::move(*text);
}

}  // namespace

Result<Credentials, std::vector<Diagnostic>> parse_credentials(std::string_view text,
                                                               std::string_view name) {
    Credentials c;
    c.source = std::string(name);
    std::vector<Diagnostic> errors;
    std::size_t line_no = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++line_no;
        line = trim(line);
        if (line.empty() || line.front() == '#') continue;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            errors.push_back(problem(name, line_no, "invalid_credential",
                                     "expected \"user:hash\" (a hash from relaygate "
                                     "hash-password)"));
            continue;
        }
        add_user(c, line.substr(0, colon), line.substr(colon + 1),
                 fmt::format("{}:{}", name, line_no), name, line_no, errors);
    }
    if (!errors.empty()) return unexpected(std::move(errors));
    return c;
}

Result<Credentials, std::vector<Diagnostic>> load_credentials(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) {
        auto text = read_file(path);
        if (!text) return unexpected(std::move(text.error()));
        return parse_credentials(*text, path.string());
    }
    Credentials c;
    c.source = path.string();
    std::vector<Diagnostic> errors;
    std::vector<std::filesystem::path> files;
    for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().front() != '.' && it->is_regular_file(ec))
            files.push_back(it->path());
    if (ec)
        return unexpected(std::vector<Diagnostic>{
            problem(path.string(), 0, "io",
                    fmt::format("cannot list {}: {}", path.string(), ec.message()))});
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        auto text = read_file(f);
        if (!text) {
            errors.insert(errors.end(), text.error().begin(), text.error().end());
            continue;
        }
        add_user(c, f.filename().string(), trim(*text), f.string(), f.string(), 0, errors);
    }
    if (!errors.empty()) return unexpected(std::move(errors));
    return c;
}

}  // namespace relaygate::policy
