// libFuzzer target for gateway/smtp/data_reader and data_writer: no crash;
// the end of data is exactly the first CRLF.CRLF; whole and chunked input
// agree; delivered content is CRLF-clean; writer -> reader round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/smtp/data_reader.hpp"
#include "gateway/smtp/data_writer.hpp"

using namespace relaygate::smtp;

namespace {

struct Outcome {
    bool done = false;
    std::size_t consumed = 0;
    std::string content;
    DataError error = DataError::none;
    std::uint64_t size = 0;
    bool operator==(const Outcome&) const = default;
};

Outcome run(std::string_view in, std::size_t chunk, DataLimits lim) {
    DataReader r(lim);
    Outcome o;
    while (!in.empty() && !o.done) {
        std::string piece(in.substr(0, chunk));
        in.remove_prefix(piece.size());
        auto res = r.feed(piece, o.content);
        if (res.consumed > piece.size() || (!res.done && res.consumed != piece.size()))
            std::abort();
        o.consumed += res.consumed;
        o.done = res.done;
    }
    o.error = r.error();
    o.size = r.size();
    if (r.delivered() != o.content.size()) std::abort();
    return o;
}

bool crlf_clean(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\0') return false;
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
        if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    DataLimits lim;
    if (data[0] & 1) lim.max_message_size = data[0] >> 1;
    if (data[0] & 0x80) lim.max_line_length = 3 + data[1] % 32;
    const std::size_t chunk = 1 + data[1] % 11;
    std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);

    const Outcome whole = run(in, in.size() + 1, lim);
    if (!(run(in, chunk, lim) == whole)) std::abort();

    // The end is exactly the first CRLF "." CRLF, the start counting as CRLF.
    const std::string s2 = "\r\n" + std::string(in);
    const auto end = s2.find("\r\n.\r\n");
    if (whole.done != (end != std::string::npos)) std::abort();
    if (whole.consumed != (whole.done ? end + 3 : in.size())) std::abort();
    if (!crlf_clean(whole.content) || whole.content.size() > lim.max_message_size) std::abort();

    if (whole.done && whole.error == DataError::none) {
        if (whole.size != whole.content.size()) std::abort();
        DataWriter w;
        std::string wire;
        std::string_view c = whole.content;
        while (!c.empty()) {
            const std::size_t n = std::min<std::size_t>(chunk, c.size());
            w.write(c.substr(0, n), wire);
            c.remove_prefix(n);
        }
        wire += w.terminator();
        const Outcome back = run(wire, chunk, lim);
        if (!back.done || back.consumed != wire.size() || back.error != DataError::none ||
            back.content != whole.content)
            std::abort();
    }
    return 0;
}
