// Canonicalization per RFC 6376 3.4 (with erratum 1384: relaxed body WSP
// reduction happens before trailing empty lines are removed). The body hasher
// is a per-octet state machine so that chunk boundaries never matter.
#include "gateway/dkim/canon.hpp"

#include <algorithm>

#include "gateway/common/ascii.hpp"

namespace relaygate::dkim {

namespace {
constexpr std::size_t kStageSize = 4096;
constexpr std::string_view kCrlf = "\r\n";
}  // namespace

std::string canonicalize_header(Canon canon, std::string_view raw_field) {
    // 3.4.1: "simple" does not change header fields in any way.
    if (canon == Canon::simple) return std::string(raw_field);

    const bool had_crlf = raw_field.ends_with(kCrlf);
    if (had_crlf) raw_field.remove_suffix(2);
    const auto colon = raw_field.find(':');
    std::string_view name = raw_field.substr(0, colon);
    while (!name.empty() && ascii::is_wsp(static_cast<unsigned char>(name.back())))
        name.remove_suffix(1);

    // 3.4.2: lower-case the name; unfold; reduce WSP runs to one SP; delete
    // WSP at the end of the value and around the colon.
    std::string out = ascii::lower(name);
    out += ':';
    if (colon != std::string_view::npos) {
        std::string_view value = raw_field.substr(colon + 1);
        bool wsp = false;
        bool started = false;
        for (std::size_t i = 0; i < value.size(); ++i) {
            const auto c = static_cast<unsigned char>(value[i]);
            if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
                ++i;  // unfold: drop the CRLF, the WSP after it is a run
                continue;
            }
            if (ascii::is_wsp(c)) {
                wsp = true;
                continue;
            }
            if (wsp && started) out += ' ';
            wsp = false;
            started = true;
            out += static_cast<char>(c);
        }
    }
    if (had_crlf) out += kCrlf;
    return out;
}

std::string without_b_value(std::string_view raw_field) {
    const auto colon = raw_field.find(':');
    if (colon == std::string_view::npos) return std::string(raw_field);
    // Tag values never contain ";" (VALCHAR), so specs split on it exactly.
    std::size_t pos = colon + 1;
    while (pos <= raw_field.size()) {
        auto semi = raw_field.find(';', pos);
        const std::size_t end = semi == std::string_view::npos ? raw_field.size() : semi;
        std::size_t p = pos;
        auto skip_fws = [&] {
            while (p < end && (ascii::is_wsp(static_cast<unsigned char>(raw_field[p])) ||
                               raw_field[p] == '\r' || raw_field[p] == '\n'))
                ++p;
        };
        skip_fws();
        if (p < end && raw_field[p] == 'b') {
            ++p;
            skip_fws();
            if (p < end && raw_field[p] == '=') {
                // 3.5 b=: the value, with the FWS around it, is hashed as empty.
                // A final CRLF (end of the field, not FWS) is kept.
                std::size_t cut_end = end;
                if (semi == std::string_view::npos && raw_field.ends_with(kCrlf))
                    cut_end = raw_field.size() - 2;
                std::string out(raw_field.substr(0, p + 1));
                out += raw_field.substr(cut_end);
                return out;
            }
        }
        if (semi == std::string_view::npos) break;
        pos = semi + 1;
    }
    return std::string(raw_field);
}

BodyHasher::BodyHasher(Canon canon, std::optional<std::uint64_t> length)
    : canon_(canon), length_(length) {
    out_.reserve(kStageSize);
}

void BodyHasher::update(std::string_view chunk) {
    for (char c : chunk) {
        if (pending_cr_) {
            pending_cr_ = false;
            if (c == '\n') {
                end_line();
                continue;
            }
            content('\r');  // a bare CR is line content
        }
        if (c == '\r') {
            pending_cr_ = true;
        } else if (canon_ == Canon::relaxed && ascii::is_wsp(static_cast<unsigned char>(c))) {
            pending_wsp_ = true;  // 3.4.4: a run becomes one SP, unless it ends the line
        } else {
            content(c);
        }
    }
}

void BodyHasher::content(char c) {
    // Empty lines followed by content were not trailing after all.
    for (; pending_empty_lines_ > 0; --pending_empty_lines_)
        emit(kCrlf);
    if (pending_wsp_) {
        emit(" ");
        pending_wsp_ = false;
    }
    emit(std::string_view(&c, 1));
    line_has_content_ = true;
}

void BodyHasher::end_line() {
    pending_wsp_ = false;  // 3.4.4: WSP at the end of a line is ignored
    if (line_has_content_) {
        emit(kCrlf);
        line_has_content_ = false;
    } else {
        ++pending_empty_lines_;  // 3.4.3: trailing empty lines are ignored
    }
}

void BodyHasher::emit(std::string_view bytes) {
    for (char c : bytes) {
        // 3.4.5: l= counts canonicalized octets; the rest is not hashed.
        if (!length_ || produced_ < *length_) {
            out_ += c;
            if (out_.size() >= kStageSize) flush();
        }
        ++produced_;
    }
}

void BodyHasher::flush() {
    hash_.update(out_);
    out_.clear();
}

std::string BodyHasher::finish() {
    if (pending_cr_) {
        pending_cr_ = false;
        content('\r');
    }
    // A last line without CRLF gets one (3.4.3, 3.4.4); a WSP-only one is empty.
    if (line_has_content_) end_line();
    pending_wsp_ = false;
    // 3.4.3: "simple" turns an empty body into a single CRLF; "relaxed" leaves it empty.
    if (canon_ == Canon::simple && produced_ == 0) emit(kCrlf);
    flush();
    return hash_.raw();  // finished: further use yields no digest
}

}  // namespace relaygate::dkim
