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
// The rest of an open file, from its current offset.
std::optional<std::string> read_descriptor(int fd);
// A password or token: the file without its trailing newline (LF or CRLF,
// as editors and `echo` write it; a Kubernetes Secret usually has none).
std::optional<std::string> read_secret_file(const std::filesystem::path& path);
// Writes `data` to a temporary file beside `path`, syncs it and renames it
// over `path`. false with `error` set on failure (the old file stays).
bool replace_file(const std::filesystem::path& path, std::string_view data, std::string& error);
// replace_file in two steps, for a caller that reads the data back before
// it replaces `path`: write_staged writes and syncs `path` + ".tmp" (mode
// 0600) and returns it open for reading and writing (the caller closes it),
// or -1 with `error`; commit_staged renames it over `path` (false with
// `error`, the temporary file removed); discard_staged removes it instead
// (nothing when there is none).
int write_staged(const std::filesystem::path& path, std::string_view data, std::string& error);
bool commit_staged(const std::filesystem::path& path, std::string& error);
void discard_staged(const std::filesystem::path& path);
std::filesystem::path staged_path(const std::filesystem::path& path);

}  // namespace relaygate
