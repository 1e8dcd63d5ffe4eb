// libFuzzer target for gateway/smtp/reply_parser (and reply formatting, EHLO
// keywords): no crash; whole and chunked input agree; every parsed reply,
// formatted again, is one valid reply with the same code and line count.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/smtp/ehlo_capabilities.hpp"
#include "gateway/smtp/reply.hpp"
#include "gateway/smtp/reply_parser.hpp"

using namespace relaygate::smtp;

namespace {

std::vector<Reply> run(std::string_view in, std::size_t chunk, int& error) {
    ReplyParser p;
    std::vector<Reply> out;
    error = -1;
    while (!in.empty() && error < 0) {
        std::string piece(in.substr(0, chunk));
        in.remove_prefix(piece.size());
        std::string_view rest = piece;
        for (;;) {
            ReplyEvent ev = p.feed(rest);
            if (ev.consumed > rest.size()) std::abort();
            rest.remove_prefix(ev.consumed);
            if (ev.kind == ReplyEvent::Kind::need_more) break;
            if (ev.kind == ReplyEvent::Kind::error) {
                error = static_cast<int>(ev.error);
                break;
            }
            out.push_back(std::move(ev.reply));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t chunk = 1 + data[0] % 13;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    int e1 = -1, e2 = -1;
    const auto whole = run(in, in.size() + 1, e1);
    const auto split = run(in, chunk, e2);
    if (whole != split || e1 != e2) std::abort();
    for (const Reply& r : whole) {
        if (r.code < 200 || r.code > 559 || r.lines.empty()) std::abort();
        (void)parse_ehlo_capabilities(r);
        const std::string wire = format_reply(r);
        ReplyParser p;
        ReplyEvent ev = p.feed(wire);
        if (ev.kind != ReplyEvent::Kind::reply || ev.consumed != wire.size()) std::abort();
        if (ev.reply.code != r.code || ev.reply.lines.size() != r.lines.size()) std::abort();
        if (ev.reply.enhanced != r.enhanced) std::abort();
    }
    return 0;
}
