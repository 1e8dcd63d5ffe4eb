// Tests for gateway/smtp/data_reader: end of data only at CRLF.CRLF, the SMTP
// smuggling family, un-stuffing, limits, pipelined bytes, every split point,
// and an exhaustive comparison against a reference model on short inputs.
#include "gateway/smtp/data_reader.hpp"

#include <doctest/doctest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gateway/smtp/command.hpp"
#include "tests/smtp/split_feed.hpp"

using namespace relaygate;
using namespace relaygate::smtp;
using relaygate::test::all_splits;

namespace {

struct Outcome {
    bool done = false;
    std::size_t consumed = 0;  // of the whole input
    std::string content;
    DataError error = DataError::none;
    std::uint64_t size = 0;
    bool operator==(const Outcome&) const = default;
};

Outcome run(std::vector<std::string> pieces, DataLimits limits = {}) {
    DataReader r(limits);
    Outcome o;
    for (auto& piece : pieces) {
        auto res = r.feed(piece, o.content);
        REQUIRE(res.consumed <= piece.size());
        if (!res.done) REQUIRE(res.consumed == piece.size());
        o.consumed += res.consumed;
        o.done = res.done;
        piece.assign(piece.size(), '#');
    }
    o.error = r.error();
    o.size = r.size();
    CHECK(r.delivered() == o.content.size());
    CHECK(r.done() == o.done);
    return o;
}

Outcome run_whole(std::string_view in, DataLimits limits = {}) {
    return run({std::string(in)}, limits);
}

// Checks the outcome at every split equals the one for the whole input.
Outcome run_all_splits(std::string_view in, DataLimits limits = {}, std::size_t three_way = 48) {
    const Outcome whole = run_whole(in, limits);
    for (auto& s : all_splits(in, three_way)) {
        CAPTURE(s.name);
        CHECK(run(s.pieces, limits) == whole);
    }
    return whole;
}

// The reference model: the end is the first "\r\n.\r\n" in "\r\n" + input;
// faults are ordered by the position of the offending octet.
Outcome reference(std::string_view s) {
    Outcome o;
    const std::string s2 = "\r\n" + std::string(s);
    const auto pos = s2.find("\r\n.\r\n");
    if (pos == std::string::npos) {
        o.consumed = s.size();
        return o;
    }
    o.done = true;
    o.consumed = pos + 3;
    const std::string_view region = s.substr(0, pos + 3);
    for (std::size_t k = 0; k < region.size() && o.error == DataError::none; ++k) {
        const char c = region[k];
        if (c == '\0')
            o.error = DataError::nul;
        else if (c == '\n' && (k == 0 || region[k - 1] != '\r'))
            o.error = DataError::bare_lf;
        else if (c == '\r' && (k + 1 >= region.size() || region[k + 1] != '\n'))
            o.error = DataError::bare_cr;
    }
    // Content: the lines before the terminator, each with a leading dot removed.
    std::string_view raw = s.substr(0, pos);
    while (!raw.empty()) {
        const auto eol = raw.find("\r\n");
        std::string_view line = raw.substr(0, eol);
        if (!line.empty() && line.front() == '.') line.remove_prefix(1);
        o.content.append(line);
        o.content.append("\r\n");
        raw.remove_prefix(eol + 2);
    }
    o.size = o.content.size();
    return o;
}

std::string escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\r')
            out += "\\r";
        else if (c == '\n')
            out += "\\n";
        else if (c == '\0')
            out += "\\0";
        else
            out += c;
    }
    return out;
}

bool crlf_clean(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\0') return false;
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
        if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    }
    return true;
}

// The per-octet reader the optimized one replaced, kept verbatim (state
// machine, accounting and span coalescing) as the oracle for its fast path.
class PerOctetReader {
  public:
    explicit PerOctetReader(DataLimits limits) : limits_(limits) {}
    bool done() const { return state_ == State::done; }
    DataError error() const { return error_; }
    std::uint64_t size() const { return size_; }
    std::uint64_t delivered() const { return delivered_; }

    DataReader::FeedResult feed(std::string_view input, std::vector<std::string>& spans) {
        if (state_ == State::done) return {true, 0};
        spans_ = &spans;
        span_len_ = 0;
        cr_in_input_ = false;
        for (std::size_t i = 0; i < input.size(); ++i) {
            const auto c = static_cast<unsigned char>(input[i]);
            ++line_octets_;
            const bool ends_crlf = c == '\n' && (state_ == State::cr || state_ == State::dot_cr);
            const std::size_t need = line_octets_ + (ends_crlf ? 0 : c == '\r' ? 1 : 2);
            if (need > limits_.max_line_length) fault(DataError::line_too_long);
            bool as_text = false;
            switch (state_) {
                case State::line_start:
                    if (c == '.')
                        state_ = State::dot;
                    else
                        as_text = true;
                    break;
                case State::dot:
                    if (c == '\r')
                        state_ = State::dot_cr;
                    else
                        as_text = true;
                    break;
                case State::dot_cr:
                    if (c == '\n') {
                        flush();
                        state_ = State::done;
                        return {true, i + 1};
                    }
                    fault(DataError::bare_cr);
                    (void)account(1);
                    as_text = true;
                    break;
                case State::cr:
                    if (c == '\n') {
                        if (account(2)) {
                            if (cr_in_input_) {
                                emit(input, i - 1, 2);
                            } else {
                                flush();
                                spans_->emplace_back("\r");
                                delivered_ += 1;
                                emit(input, i, 1);
                            }
                        }
                        state_ = State::line_start;
                        line_octets_ = 0;
                        break;
                    }
                    fault(DataError::bare_cr);
                    (void)account(1);
                    as_text = true;
                    break;
                case State::text:
                    as_text = true;
                    break;
                case State::done:
                    break;
            }
            if (as_text) {
                state_ = State::text;
                if (c == '\r') {
                    state_ = State::cr;
                    cr_in_input_ = true;
                } else {
                    if (c == '\n')
                        fault(DataError::bare_lf);
                    else if (c == '\0')
                        fault(DataError::nul);
                    if (account(1)) emit(input, i, 1);
                }
            }
        }
        flush();
        return {false, input.size()};
    }

  private:
    enum class State : std::uint8_t { line_start, dot, dot_cr, text, cr, done };

    void fault(DataError e) {
        if (error_ == DataError::none) error_ = e;
    }
    bool account(std::size_t n) {
        constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
        size_ = size_ > kMax - n ? kMax : size_ + n;
        if (size_ > limits_.max_message_size) fault(DataError::too_big);
        return error_ == DataError::none;
    }
    void emit(std::string_view input, std::size_t pos, std::size_t n) {
        const char* p = input.data() + pos;
        if (span_len_ != 0 && span_ + span_len_ == p) {
            span_len_ += n;
        } else {
            flush();
            span_ = p;
            span_len_ = n;
        }
        delivered_ += n;
    }
    void flush() {
        if (span_len_ != 0) spans_->emplace_back(span_, span_len_);
        span_len_ = 0;
    }

    DataLimits limits_;
    State state_ = State::line_start;
    DataError error_ = DataError::none;
    std::uint64_t size_ = 0;
    std::uint64_t delivered_ = 0;
    std::size_t line_octets_ = 0;
    bool cr_in_input_ = false;
    std::vector<std::string>* spans_ = nullptr;
    const char* span_ = nullptr;
    std::size_t span_len_ = 0;
};

}  // namespace

TEST_CASE("golden messages") {
    struct G {
        std::string in;
        bool done;
        std::size_t consumed;
        std::string content;
        DataError error;
    };
    for (const auto& g : {
             G{".\r\n", true, 3, "", DataError::none},  // RFC 5321 4.1.1.4: start counts as CRLF
             G{"a\r\n.\r\n", true, 6, "a\r\n", DataError::none},
             G{"\r\n.\r\n", true, 5, "\r\n", DataError::none},
             G{"..\r\n.\r\n", true, 7, ".\r\n", DataError::none},  // RFC 5321 4.5.2
             G{"...x\r\n.\r\n", true, 9, "..x\r\n", DataError::none},
             G{".a\r\n.\r\n", true, 7, "a\r\n", DataError::none},
             G{"a.\r\n.\r\n", true, 7, "a.\r\n", DataError::none},
             G{"a\r\n. \r\n.\r\n", true, 10, "a\r\n \r\n", DataError::none},
             G{"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", true, 23, "Subject: x\r\n\r\nbody\r\n",
               DataError::none},
             G{"a\r\n.", false, 4, "a\r\n", DataError::none},
             G{"a\r\n.\r", false, 5, "a\r\n", DataError::none},
             G{"a", false, 1, "a", DataError::none},
             G{"", false, 0, "", DataError::none},
             G{"a\nb\r\n.\r\n", true, 8, "a", DataError::bare_lf},
             G{"a\rb\r\n.\r\n", true, 8, "a", DataError::bare_cr},
             G{std::string("a\0b\r\n.\r\n", 8), true, 8, "a", DataError::nul},
             G{"ok\r\n.\rx\r\n.\r\n", true, 12, "ok\r\n", DataError::bare_cr},
         }) {
        CAPTURE(g.in);
        const Outcome o = run_all_splits(g.in);
        CHECK(o.done == g.done);
        CHECK(o.consumed == g.consumed);
        CHECK(o.content == g.content);
        CHECK(o.error == g.error);
    }
}

TEST_CASE("SMTP smuggling: no lookalike ever ends the data") {
    struct S {
        std::string end;
        DataError error;
    };
    const std::string head = "From: a@tenant.example\r\nSubject: hi\r\n\r\nhello";
    const std::string smuggled =
        "MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
        "From: ceo@victim.example\r\n\r\nsmuggled\r\n";
    for (const auto& s : {
             S{"\n.\n", DataError::bare_lf},
             S{"\r.\r", DataError::bare_cr},
             S{"\r\n.\n", DataError::bare_lf},
             S{"\n.\r\n", DataError::bare_lf},
             S{"\r.\r\n", DataError::bare_cr},
             S{std::string("\r\n\0.\r\n", 6), DataError::nul},
             S{"\r\r\n.\r\r\n", DataError::bare_cr},
             S{"\n.\r", DataError::bare_lf},
             S{"\r.\n", DataError::bare_cr},
             S{"\r\n.\r", DataError::bare_cr},
             S{"\r\n.\r\r\n", DataError::bare_cr},
             S{"\r\n\r.\r\n", DataError::bare_cr},
             S{"\n\n.\n\n", DataError::bare_lf},
             S{"\r\r.\r\r", DataError::bare_cr},
             S{std::string("\r\n.\0\r\n", 6), DataError::nul},
             S{std::string("\r\n.\r\0\n", 6), DataError::bare_cr},
             S{"\r\n .\r\n", DataError::none},
             S{"\r\n..\r\n", DataError::none},
             S{"\r\n.\t\r\n", DataError::none},
         }) {
        CAPTURE(s.end);
        const std::string first = head + s.end + smuggled;
        // Everything is data: nothing ends, nothing is left over as commands.
        Outcome o = run_all_splits(first, {}, 0);
        CHECK_FALSE(o.done);
        CHECK(o.consumed == first.size());
        // Only the real CRLF.CRLF ends it, and the fault is reported then.
        const std::string full = first + ".\r\nQUIT\r\n";
        o = run_all_splits(full, {}, 0);
        CHECK(o.done);
        CHECK(o.consumed == full.size() - 6);
        CHECK(o.error == s.error);
        CHECK(crlf_clean(o.content));
        if (s.error == DataError::none)
            CHECK(o.content.find("smuggled\r\n") != std::string::npos);
        else
            CHECK(o.content.find("smuggled") == std::string::npos);
    }
}

TEST_CASE("exhaustive short inputs match the reference model") {
    const char alphabet[] = {'\r', '\n', '.', '\0', 'a'};
    std::vector<std::string> inputs{""};
    std::vector<std::string> frontier{""};
    for (int len = 1; len <= 7; ++len) {
        std::vector<std::string> next;
        for (const auto& p : frontier)
            for (char c : alphabet)
                next.push_back(p + c);
        inputs.insert(inputs.end(), next.begin(), next.end());
        frontier = std::move(next);
    }
    int done = 0;
    for (const auto& in : inputs) {
        const Outcome ref = reference(in);
        const Outcome whole = run_whole(in);
        INFO("input: ", escape(in));
        REQUIRE(whole.done == ref.done);
        REQUIRE(whole.consumed == ref.consumed);
        if (ref.done) {
            ++done;
            REQUIRE(whole.error == ref.error);
            if (ref.error == DataError::none) {
                REQUIRE(whole.content == ref.content);
                REQUIRE(whole.size == ref.size);
            }
        }
        REQUIRE(crlf_clean(whole.content));
        Outcome bytes = run([&] {
            std::vector<std::string> v;
            for (char c : in)
                v.emplace_back(1, c);
            return v;
        }());
        REQUIRE(bytes == whole);
    }
    CHECK(done > 500);  // the model is exercised, not vacuous
}

TEST_CASE("size limit: counted un-stuffed, read to the end, reported once") {
    DataLimits lim;
    lim.max_message_size = 10;
    Outcome o = run_all_splits("01234567\r\n.\r\n", lim);
    CHECK(o.error == DataError::none);
    CHECK(o.size == 10);
    o = run_all_splits("..234567\r\n.\r\n", lim);  // 11 on the wire, 10 un-stuffed
    CHECK(o.error == DataError::none);
    o = run_all_splits("012345678\r\n.\r\nNOOP\r\n", lim);
    CHECK(o.done);
    CHECK(o.error == DataError::too_big);
    CHECK(o.size == 11);
    CHECK(o.consumed == 14);
    CHECK(o.content.size() <= 10);

    // A big message keeps being read with bounded memory and no output.
    DataReader r(lim);
    std::string out;
    const std::string line = std::string(98, 'x') + "\r\n";
    for (int i = 0; i < 1000; ++i)
        CHECK_FALSE(r.feed(line, out).done);
    CHECK(r.error() == DataError::too_big);
    CHECK(out.size() <= 10);
    auto res = r.feed(".\r\nQUIT\r\n", out);
    CHECK(res.done);
    CHECK(res.consumed == 3);
    CHECK(r.size() == 100000u);
    CHECK(reason(r.error()) == Reason::message_too_big);
}

TEST_CASE("text line limit: 1000 octets on the wire including CRLF (RFC 5321 4.5.3.1.6)") {
    CHECK(run_whole(std::string(998, 'a') + "\r\n.\r\n").error == DataError::none);
    CHECK(run_whole(std::string(999, 'a') + "\r\n.\r\n").error == DataError::line_too_long);
    CHECK(run_whole("." + std::string(997, 'a') + "\r\n.\r\n").error == DataError::none);
    CHECK(run_whole("." + std::string(998, 'a') + "\r\n.\r\n").error == DataError::line_too_long);
    DataLimits lim;
    lim.max_line_length = 8;
    auto o = run_all_splits("123456\r\n1234567\r\n.\r\n", lim);
    CHECK(o.error == DataError::line_too_long);
    // Delivery stops at the first octet that makes the line too long: a
    // prefix, which the gateway discards (it aborts the upstream DATA).
    CHECK(o.content == "123456\r\n123456");
    CHECK(reason(o.error) == Reason::data_line_too_long);
    CHECK(info(reason(DataError::bare_lf)).smtp_code == 554);
    CHECK(reason(DataError::nul) == Reason::data_nul);
    CHECK(reason(DataError::none) == Reason::accepted);
}

TEST_CASE("after done, nothing more is consumed; reset starts a new message") {
    DataReader r;
    std::string out;
    auto res = r.feed("x\r\n.\r\nRSET\r\n", out);
    CHECK(res.done);
    CHECK(res.consumed == 6);
    res = r.feed("RSET\r\n", out);
    CHECK(res.done);
    CHECK(res.consumed == 0);
    r.reset();
    out.clear();
    res = r.feed("..\r\n.\r\n", out);
    CHECK(res.done);
    CHECK(out == ".\r\n");
}

TEST_CASE("the sink gets spans of the input, not a copy per octet") {
    DataReader r;
    std::vector<std::string> chunks;
    auto sink = [&](std::string_view s) { chunks.emplace_back(s); };
    auto res = r.feed("line one\r\nline two\r\n..dot\r\n.\r\n", sink);
    CHECK(res.done);
    CHECK(chunks == std::vector<std::string>{"line one\r\nline two\r\n", ".dot\r\n"});
}

TEST_CASE("RFC 5321 D.1 session: commands, DATA, pipelined QUIT, at every split") {
    const std::string stream =
        "MAIL FROM:<Smith@bar.com>\r\nDATA\r\nBlah blah blah...\r\n...etc. etc. etc.\r\n.\r\n"
        "QUIT\r\n";
    for (auto& s : all_splits(stream, 0)) {
        CAPTURE(s.name);
        LineFramer f;
        DataReader d;
        bool in_data = false;
        std::string content, log;
        for (auto& piece : s.pieces) {
            std::string_view rest = piece;
            while (!rest.empty()) {
                if (in_data) {
                    auto res = d.feed(rest, content);
                    rest.remove_prefix(res.consumed);
                    if (res.done) {
                        in_data = false;
                        log += "[end]";
                    }
                    continue;
                }
                auto ev = f.feed(rest);
                rest.remove_prefix(ev.consumed);
                if (ev.kind == LineEvent::Kind::need_more) break;
                REQUIRE(ev.kind == LineEvent::Kind::line);
                auto c = parse_command(ev.line);
                REQUIRE(c.ok());
                log += std::string(to_string(c->verb)) + ";";
                if (c->verb == Verb::data) {
                    CHECK(f.buffered() == 0);
                    in_data = true;
                }
            }
        }
        CHECK(log == "MAIL;DATA;[end]QUIT;");
        CHECK(content == "Blah blah blah...\r\n..etc. etc. etc.\r\n");
    }
}

TEST_CASE("fast path matches the per-octet reader on long random inputs") {
    std::mt19937 rng(8);
    const auto pick = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    for (int iter = 0; iter < 600; ++iter) {
        // Lines of random length, many near the 1000-octet limit, some
        // dot-stuffed, with rare bare CR/LF, NUL and lookalike terminators.
        std::string in;
        const std::size_t lines = 1 + pick(40);
        for (std::size_t l = 0; l < lines; ++l) {
            std::size_t len = pick(4) == 0 ? pick(20) : pick(2) == 0 ? 990 + pick(14) : pick(1200);
            if (pick(5) == 0) in += '.';
            for (std::size_t k = 0; k < len; ++k) {
                const std::size_t r = pick(4000);
                if (r == 0)
                    in += '\r';
                else if (r == 1)
                    in += '\n';
                else if (r == 2)
                    in += '\0';
                else if (r == 3)
                    in += "\r\n.\n";
                else
                    in += static_cast<char>(r < 300 ? '.' : r < 600 ? ' ' : 0x21 + r % 200);
            }
            in += pick(30) == 0 ? "\n" : "\r\n";
        }
        if (pick(4) != 0) in += ".\r\nQUIT\r\n";
        DataLimits lim;
        if (pick(2) == 0) {
            // Near the size of the content: under, at and just over it.
            const std::uint64_t approx = in.size() - std::min<std::size_t>(in.size(), 10);
            lim.max_message_size = approx - std::min<std::uint64_t>(approx, 2 * lines) + pick(25);
        }
        if (pick(4) == 0) lim.max_line_length = 3 + pick(1100);
        // The same random cuts for both readers, from single octets to 8 KiB.
        std::vector<std::size_t> cuts;
        for (std::size_t pos = 0; pos < in.size();) {
            const std::size_t n = pick(3) == 0 ? 1 + pick(4) : 1 + pick(8192);
            cuts.push_back(std::min(n, in.size() - pos));
            pos += cuts.back();
        }
        CAPTURE(iter);
        DataReader fast(lim);
        PerOctetReader slow(lim);
        std::size_t pos = 0;
        for (const std::size_t n : cuts) {
            const std::string piece = in.substr(pos, n);
            pos += n;
            std::vector<std::string> got, want;
            auto sink = [&got](std::string_view s) { got.emplace_back(s); };
            const auto a = fast.feed(piece, sink);
            const auto b = slow.feed(piece, want);
            REQUIRE(a.done == b.done);
            REQUIRE(a.consumed == b.consumed);
            REQUIRE(got == want);  // the same spans, not just the same content
            REQUIRE(fast.error() == slow.error());
            REQUIRE(fast.size() == slow.size());
            REQUIRE(fast.delivered() == slow.delivered());
            if (a.done) break;
        }
    }
}

TEST_CASE("fast path matches the per-octet reader for every small size and line limit") {
    const std::string in = "Subject: limits\r\n\r\n..dotted line\r\nshort\r\n" +
                           std::string(40, 'x') + "\r\nend of body\r\n.\r\nQUIT\r\n";
    for (std::uint64_t max_size = 0; max_size <= 110; ++max_size) {
        for (std::size_t max_line = 3; max_line <= 45; ++max_line) {
            for (const std::size_t chunk :
                 {in.size(), std::size_t{1}, std::size_t{3}, std::size_t{7}}) {
                CAPTURE(max_size);
                CAPTURE(max_line);
                CAPTURE(chunk);
                DataReader fast({max_size, max_line});
                PerOctetReader slow({max_size, max_line});
                for (std::size_t pos = 0; pos < in.size(); pos += chunk) {
                    const std::string piece = in.substr(pos, chunk);
                    std::vector<std::string> got, want;
                    auto sink = [&got](std::string_view s) { got.emplace_back(s); };
                    const auto a = fast.feed(piece, sink);
                    const auto b = slow.feed(piece, want);
                    REQUIRE(a.done == b.done);
                    REQUIRE(a.consumed == b.consumed);
                    REQUIRE(got == want);
                    REQUIRE(fast.error() == slow.error());
                    REQUIRE(fast.size() == slow.size());
                    REQUIRE(fast.delivered() == slow.delivered());
                }
            }
        }
    }
}
