// Whole files: read in one go, and replaced atomically (a reader sees the
// old file or the new one, never half of one). The project's one copy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
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

// write_staged for data that arrives in pieces (a download), so that it is
// never held whole: each piece goes to the staged file as it comes (the
// file is created at the first piece, or by finish()). When that file
// cannot be created or written (a read-only or full disk), the data goes
// on in memory instead (what was written is read back): it is not lost,
// only not staged.
class StagedWriter {
  public:
    explicit StagedWriter(std::filesystem::path path);
    // Closes the staged file and removes it unless it was committed.
    ~StagedWriter();
    StagedWriter(const StagedWriter&) = delete;
    StagedWriter& operator=(const StagedWriter&) = delete;

    void append(std::string_view piece);
    // Syncs the staged file (a failure moves the data to memory).
    void finish();
    // The data: in the staged file, open for reading and writing, when
    // file() >= 0; otherwise in memory(). Nothing is lost unless lost().
    int file() const { return fd_; }
    std::string& memory() { return memory_; }
    bool lost() const { return lost_; }
    // Why the data is not (or no longer) in the staged file.
    const std::string& error() const { return error_; }
    // commit_staged; false with `error` when the data is in memory.
    bool commit(std::string& error);

  private:
    void open();
    void spill(std::string why);

    std::filesystem::path path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::string memory_;
    std::string error_;
    bool opened_ = false;
    bool lost_ = false;
    bool committed_ = false;
};

// Reads an open file from its start (pread: the descriptor may be shared,
// or just written) and hands it to `sink` in pieces of up to `piece_size`
// octets, so that a 30 MB policy is hashed, checked and scanned without
// ever being held whole (a mapping would put all of its pages in the
// process's RSS at once). `sink` returns false to stop early. false when a
// read fails (errno set).
bool read_pieces(int fd, std::size_t piece_size,
                 const std::function<bool(std::string_view piece)>& sink);

}  // namespace relaygate
