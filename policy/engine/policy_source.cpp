#include "policy/engine/policy_source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

#include "gateway/common/file.hpp"
#include "gateway/json/document.hpp"
#include "policy/engine/credentials.hpp"

namespace relaygate::policy {

using nlohmann::json;

namespace {

Diagnostic at(std::string path, std::string_view rule, std::string message,
              const std::filesystem::path& file) {
    Diagnostic d{std::move(path), std::string(rule), std::move(message)};
    d.file = file.string();
    return d;
}

// The first reference token of an RFC 6901 pointer ("/tenants/acme/x" ->
// "tenants"), unescaped; and the second ("acme").
std::string token(std::string_view pointer, int n) {
    for (int i = 0;; ++i) {
        auto t = json_reader::first_token(pointer);
        if (!t) return {};
        if (i == n) return std::move(t->first);
        pointer.remove_prefix(t->second);
    }
}

// Gives each diagnostic (without a file yet) the file its path came from,
// then the line and column in that file: one more read and pass per file,
// only when there is something to report.
class Owners {
  public:
    std::map<std::string, std::filesystem::path> tenants, keys;
    std::filesystem::path dir;

    void locate(std::vector<Diagnostic>& ds) const {
        std::map<std::filesystem::path, std::vector<Diagnostic*>> by_file;
        for (auto& d : ds) {
            if (!d.file.empty()) continue;
            const auto first = token(d.path, 0);
            const auto* owners = first == "tenants" ? &tenants : &keys;
            const auto it = owners->find(first == "tenants" ? token(d.path, 1) : first);
            if (it == owners->end()) {
                d.file = dir.string();
                continue;
            }
            d.file = it->second.string();
            by_file[it->second].push_back(&d);
        }
        for (auto& [file, list] : by_file) {
            const auto text = read_file(file);
            if (!text) continue;
            std::vector<std::string> paths;
            for (const auto* d : list)
                paths.push_back(d->path);
            const auto pos = json_reader::locate(*text, paths);
            for (std::size_t i = 0; i < list.size(); ++i) {
                list[i]->line = pos[i].line;
                list[i]->column = pos[i].column;
            }
        }
    }
};

// Moves one file's document into `merged`; conflicts become errors.
void merge(json&& doc, const std::filesystem::path& file, json& merged, Owners& owners,
           std::vector<Diagnostic>& errors) {
    if (!doc.is_object()) {
        errors.push_back(at("", "schema",
                            "expected an object (a policy), found " + json_reader::describe(doc),
                            file));
        return;
    }
    for (auto& [key, value] : doc.items()) {
        if (key == "$schema" || key == "description") continue;
        if (key == "tenants") {
            if (!value.is_object()) {
                errors.push_back(at("/tenants", "schema",
                                    "expected an object, found " + json_reader::describe(value),
                                    file));
                continue;
            }
            auto& tenants = merged["tenants"];
            for (auto& [id, tenant] : value.items()) {
                if (auto [it, fresh] = owners.tenants.try_emplace(id, file); !fresh) {
                    errors.push_back(at(json_reader::pointer("/tenants", id), "duplicate_tenant",
                                        fmt::format("tenant \"{}\" is also defined in {}; a "
                                                    "tenant belongs in one file",
                                                    id, it->second.string()),
                                        file));
                    continue;
                }
                tenants[id] = std::move(tenant);
            }
            continue;
        }
        auto [it, fresh] = owners.keys.try_emplace(key, file);
        if (fresh) {
            merged[key] = std::move(value);
        } else if (key == "version") {
            if (value != merged["version"])
                errors.push_back(at("/version", "version",
                                    fmt::format("version {} differs from {} in {}", value.dump(),
                                                merged["version"].dump(), it->second.string()),
                                    file));
        } else {
            errors.push_back(at(json_reader::pointer("", key), "duplicate_key",
                                fmt::format("\"{}\" is also set in {}; only \"tenants\" may be "
                                            "split over several files",
                                            key, it->second.string()),
                                file));
        }
    }
}

}  // namespace

std::vector<std::filesystem::path> PolicySource::watched() const {
    std::vector<std::filesystem::path> out;
    if (url.empty() && !file.empty()) out.push_back(file);
    for (const auto* p : {&dir, &credentials})
        if (!p->empty()) out.push_back(*p);
    return out;
}

std::string PolicySource::describe() const {
    if (!url.empty()) return url;
    return dir.empty() ? file.string() : dir.string() + "/*.json";
}

LoadResult load_dir(const std::filesystem::path& dir, const Credentials* credentials,
                    const Policy* previous) {
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const auto name = it->path().filename().string();
        std::error_code type_ec;
        if (name.front() != '.' && it->path().extension() == ".json" &&
            std::filesystem::is_regular_file(it->path(), type_ec))
            files.push_back(it->path());
    }
    if (ec)
        return unexpected(std::vector<Diagnostic>{
            at("", "io", fmt::format("cannot list {}: {}", dir.string(), ec.message()), dir)});
    if (files.empty())
        return unexpected(std::vector<Diagnostic>{
            at("", "io", fmt::format("no *.json policy files in {}", dir.string()), dir)});
    std::sort(files.begin(), files.end());
    // Read in ranges, tenant by tenant; only files that do not merge
    // cleanly (or are not plain JSON objects) are parsed whole below, to
    // report precisely what is wrong.
    if (auto streamed = Policy::load_files(files, true, credentials, previous))
        return std::move(*streamed);

    json merged = json::object();
    merged["tenants"] = json::object();
    Owners owners;
    owners.dir = dir;
    std::vector<Diagnostic> errors;
    for (const auto& file : files) {
        auto text = read_file(file);
        if (!text) {
            errors.push_back(at("", "io", fmt::format("cannot read {}", file.string()), file));
            continue;
        }
        auto doc = json_reader::parse(*text);
        if (!doc) {
            for (auto& e : doc.error()) {
                auto d = at(e.path, e.rule, e.message, file);
                d.line = e.position.line;
                d.column = e.position.column;
                errors.push_back(std::move(d));
            }
            continue;
        }
        const auto first_new = errors.size();
        merge(std::move(*doc), file, merged, owners, errors);
        if (errors.size() > first_new) {
            std::vector<std::string> paths;
            for (auto i = first_new; i < errors.size(); ++i)
                paths.push_back(errors[i].path);
            const auto pos = json_reader::locate(*text, paths);
            for (auto i = first_new; i < errors.size(); ++i) {
                errors[i].line = pos[i - first_new].line;
                errors[i].column = pos[i - first_new].column;
            }
        }
    }
    if (!errors.empty()) return unexpected(std::move(errors));
    return Policy::load(merged, credentials,
                        [&owners](std::vector<Diagnostic>& ds) { owners.locate(ds); });
}

namespace {
// Loads the credentials (if any) and calls load(credentials or nullptr).
template <class Load>
LoadResult with_credentials(const PolicySource& source, Load load) {
    if (source.credentials.empty()) return load(nullptr);
    auto loaded = load_credentials(source.credentials);
    if (!loaded) return unexpected(std::move(loaded.error()));
    return load(&*loaded);
}
}  // namespace

LoadResult load_policy(const PolicySource& source, const Policy* previous) {
    return with_credentials(source, [&](const Credentials* creds) {
        return source.dir.empty() ? Policy::load_file(source.file, creds, previous)
                                  : load_dir(source.dir, creds, previous);
    });
}

LoadResult load_policy_descriptor(const PolicySource& source, int fd,
                                  const std::filesystem::path& name, const Policy* previous) {
    return with_credentials(source, [&](const Credentials* creds) {
        return Policy::load_descriptor(fd, name, creds, previous);
    });
}

LoadResult load_policy_text(const PolicySource& source, std::string_view text,
                            const Policy* previous) {
    return with_credentials(
        source, [&](const Credentials* creds) { return Policy::load_text(text, creds, previous); });
}

}  // namespace relaygate::policy
