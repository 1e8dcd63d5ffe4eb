// Tests for gateway/smtp/data_writer: dot-stuffing across chunk boundaries,
// the terminator, and the writer -> reader round trip.
#include "gateway/smtp/data_writer.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "gateway/smtp/data_reader.hpp"
#include "tests/smtp/split_feed.hpp"

using namespace relaygate::smtp;
using relaygate::test::all_splits;

namespace {

std::string write_all(const std::vector<std::string>& pieces, std::string* term = nullptr) {
    DataWriter w;
    std::string out;
    for (const auto& p : pieces)
        w.write(p, out);
    if (term) *term = std::string(w.terminator());
    return out;
}

}  // namespace

TEST_CASE("leading dots are doubled, at every split") {
    struct G {
        std::string in, out, term;
    };
    for (const auto& g : {
             G{"", "", ".\r\n"},
             G{"a\r\n", "a\r\n", ".\r\n"},
             G{".\r\n", "..\r\n", ".\r\n"},
             G{"..\r\n", "...\r\n", ".\r\n"},
             G{"a\r\n.b\r\n.\r\n", "a\r\n..b\r\n..\r\n", ".\r\n"},
             G{"a.b\r\n", "a.b\r\n", ".\r\n"},
             G{"no newline", "no newline", "\r\n.\r\n"},
             G{"a\r\n.", "a\r\n..", "\r\n.\r\n"},
             G{"x\r", "x\r", "\r\n.\r\n"},
             // Defence for lenient upstreams: a dot after a bare CR or LF is
             // stuffed too (never happens with content from DataReader).
             G{"a\n.\n", "a\n..\n", "\r\n.\r\n"},
             G{"a\r.\r", "a\r..\r", "\r\n.\r\n"},
         }) {
        CAPTURE(g.in);
        for (auto& s : all_splits(g.in)) {
            CAPTURE(s.name);
            std::string term;
            CHECK(write_all(s.pieces, &term) == g.out);
            CHECK(term == g.term);
        }
    }
}

TEST_CASE("reset starts a new message") {
    DataWriter w;
    std::string out;
    w.write("abc", out);
    CHECK(w.terminator() == "\r\n.\r\n");
    w.reset();
    out.clear();
    w.write(".x\r\n", out);
    CHECK(out == "..x\r\n");
    CHECK(w.terminator() == ".\r\n");
}

TEST_CASE("writer output re-read by the reader reproduces the content") {
    std::mt19937 rng(5321);
    const char alphabet[] = {'.', '.', 'a', ' ', 'Z', '\t', '\xc3', '\xa4'};
    for (int iter = 0; iter < 400; ++iter) {
        // CRLF-clean content as DataReader delivers it: lines ending in CRLF.
        std::string content;
        const int lines = static_cast<int>(rng() % 8);
        for (int l = 0; l < lines; ++l) {
            const int len = static_cast<int>(rng() % 7);
            for (int k = 0; k < len; ++k)
                content += alphabet[rng() % sizeof alphabet];
            content += "\r\n";
        }
        CAPTURE(content);
        // Write in random chunks.
        DataWriter w;
        std::string wire;
        std::size_t pos = 0;
        while (pos < content.size()) {
            const std::size_t n = 1 + rng() % 5;
            w.write(std::string_view(content).substr(pos, n), wire);
            pos += n;
        }
        wire += w.terminator();
        wire += "QUIT\r\n";  // pipelined after the end
        for (auto& s : all_splits(wire, 0)) {
            DataReader r;
            std::string back;
            std::size_t consumed = 0;
            bool done = false;
            for (const auto& p : s.pieces) {
                auto res = r.feed(p, back);
                consumed += res.consumed;
                done = res.done;
            }
            CHECK(done);
            CHECK(consumed == wire.size() - 6);
            CHECK(r.error() == DataError::none);
            CHECK(back == content);
        }
    }
}

TEST_CASE("bulk copy matches the per-octet writer on random content and chunks") {
    // The per-octet writer the bulk one replaced, as the oracle.
    struct PerOctetWriter {
        bool line_start = true, ends_crlf = true, last_cr = false;
        void write(std::string_view content, std::string& out) {
            std::size_t run = 0;
            for (std::size_t i = 0; i < content.size(); ++i) {
                const char c = content[i];
                if (c == '.' && line_start) {
                    out.append(content.substr(run, i - run));
                    out.push_back('.');
                    run = i;
                }
                ends_crlf = last_cr && c == '\n';
                last_cr = c == '\r';
                line_start = c == '\r' || c == '\n';
            }
            out.append(content.substr(run));
        }
    };
    std::mt19937 rng(4552);
    // Bare CR and LF too: the writer must stuff after them as before.
    const char alphabet[] = {'.', '.', '.', 'a', ' ', '\r', '\n', '\r', '\n', 'x', '\0'};
    for (int iter = 0; iter < 3000; ++iter) {
        std::string content;
        const std::size_t len = rng() % 2 == 0 ? rng() % 12 : rng() % 3000;
        for (std::size_t k = 0; k < len; ++k)
            content += rng() % 3 == 0 ? alphabet[rng() % sizeof alphabet] : 'q';
        CAPTURE(content);
        DataWriter w;
        PerOctetWriter ref;
        std::string got, want;
        std::size_t pos = 0;
        while (pos < content.size()) {
            const std::size_t n = rng() % 3 == 0 ? rng() % 3 : 1 + rng() % 700;  // empty chunks too
            const std::string_view piece = std::string_view(content).substr(pos, n);
            pos += piece.size();
            w.write(piece, got);
            ref.write(piece, want);
            REQUIRE(got == want);
            REQUIRE(w.terminator() == (ref.ends_crlf ? ".\r\n" : "\r\n.\r\n"));
        }
    }
}
