// TempDir: a fresh directory under the system's temporary directory for one
// test, removed with everything in it at the end. Test-only.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace relaygate::test {

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "relaygate-test-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    // Writes `text` to `name` (relative to the directory, or absolute).
    std::filesystem::path write(const std::filesystem::path& name, const std::string& text) const {
        const auto p = name.is_absolute() ? name : path / name;
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
};

}  // namespace relaygate::test
