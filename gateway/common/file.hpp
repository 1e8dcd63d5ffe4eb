// Whole files: read in one go, and replaced atomically (a reader sees the
// old file or the new one, never half of one). The project's one copy.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace relaygate {

// nullopt when the file cannot be opened or read.
std::optional<std::string> read_file(const std::filesystem::path& path);
// A password or token: the file without its trailing newline (LF or CRLF,
// as editors and `echo` write it; a Kubernetes Secret usually has none).
std::optional<std::string> read_secret_file(const std::filesystem::path& path);
// Writes `data` to a temporary file beside `path`, syncs it and renames it
// over `path`. false with `error` set on failure (the old file stays).
bool replace_file(const std::filesystem::path& path, std::string_view data, std::string& error);

}  // namespace relaygate
