// libFuzzer target for the upstream machine (gateway/upstream): plays the I/O
// layer, feeding fuzzer-chosen relay bytes to every read, and traps when an
// invariant breaks; it never touches a socket or a clock.
//
// Input: byte 0 picks the config (bits 0-1 starttls off/opportunistic/
// required, bit 2 a TLS context exists, bit 3 xclient, bit 4 no client
// address); byte 1 the size of each read (1 + b % 64); byte 2 seeds which
// operations fail (with bit 7 of byte 0 set, a connect, send or handshake
// fails when the next seed bit is set; at most 8 faults, so that the relay's
// bytes are eventually read). The rest is what the relay sends; when it runs
// out, the next read times out and the run ends.
//
// After open succeeds the runner asks MAIL, RCPT, DATA, a data block, ".",
// RSET and QUIT in turn, opening again after a failure.
//
// Invariants:
//   owed     a close is followed by done, and every request ends in done
//   closed   a failed request leaves the machine closed; a successful one
//            leaves it ready (QUIT: closed)
//   sends    send bytes are never empty and end with CRLF except data blocks
//   bounded  at most kActionsPerByte actions per input byte
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/upstream/upstream_machine.hpp"

using namespace relaygate;
using namespace relaygate::upstream;

namespace {

constexpr std::size_t kActionsPerByte = 64;

[[noreturn]] void trap() {
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    config::Upstream cfg;
    switch (data[0] & 3) {
        case 0:
            cfg.starttls = config::UpstreamTls::off;
            break;
        case 1:
            cfg.starttls = config::UpstreamTls::opportunistic;
            break;
        default:
            cfg.starttls = config::UpstreamTls::required;
    }
    const bool tls = data[0] & 4;
    cfg.xclient = data[0] & 8;
    const XclientInfo client{(data[0] & 16) ? "" : "192.0.2.1", "client+=.example"};
    const bool faults = data[0] & 128;
    const bool pipelined = data[0] & 32;  // MAIL and RCPT as one group (RFC 2920)
    const std::size_t chunk = 1 + data[1] % 64;
    std::uint32_t seed = data[2] | 0x100u;
    int faults_left = 8;
    auto fault = [&] {
        if (!faults || faults_left == 0) return false;
        const bool f = seed & 1;
        if (f) --faults_left;
        seed = (seed >> 1) | ((seed & 1) << 8);
        return f;
    };
    std::string_view relay(reinterpret_cast<const char*>(data) + 3, size - 3);

    Observer quiet;
    UpstreamMachine m(cfg, "gw.example", tls, quiet);
    const std::size_t budget = kActionsPerByte * (size + 4);
    std::size_t actions = 0;
    int request = 0;  // 0 open, 1 MAIL, 2 RCPT, 3 DATA, 4 write, 5 ".", 6 RSET, 7 QUIT
    bool stop = false;
    while (!stop) {
        Action a;
        switch (request) {
            case 0:
                a = m.open(client);
                break;
            case 1:
                a = pipelined
                        ? m.command("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
                                    Step::mail, true)
                        : m.command("MAIL FROM:<a@example.com>\r\n", Step::mail);
                if (pipelined) ++request;  // the RCPT went with it
                break;
            case 2:
                a = m.command("RCPT TO:<b@example.com>\r\n", Step::rcpt);
                break;
            case 3:
                a = m.command("DATA\r\n", Step::data);
                break;
            case 4:
                a = m.write("Subject: x\r\n\r\nbody");
                break;
            case 5:
                a = m.commit("\r\n.\r\n");
                break;
            case 6:
                a = m.command("RSET\r\n", Step::rset);
                break;
            default:
                a = m.quit();
        }
        for (;;) {
            if (++actions > budget) trap();  // bounded
            if (a.kind == Action::Kind::done) break;
            switch (a.kind) {
                case Action::Kind::connect:
                    a = m.resume(fault() ? IoStatus::error : IoStatus::ok);
                    break;
                case Action::Kind::send:
                    if (a.bytes.empty()) trap();  // sends
                    if (request != 4 && !a.bytes.ends_with("\r\n")) trap();
                    a = m.resume(fault() ? IoStatus::error : IoStatus::ok);
                    break;
                case Action::Kind::read: {
                    if (relay.empty()) {
                        a = m.resume(IoStatus::timeout);
                        stop = true;
                        break;
                    }
                    const std::string piece(relay.substr(0, chunk));
                    relay.remove_prefix(piece.size());
                    a = m.resume(IoStatus::ok, piece);
                    break;
                }
                case Action::Kind::tls_handshake:
                    if (a.server_name.empty()) trap();
                    a = m.resume(fault() ? IoStatus::error : IoStatus::ok);
                    break;
                case Action::Kind::close:
                    a = m.resume(IoStatus::ok);
                    if (a.kind != Action::Kind::done) trap();  // owed
                    break;
                case Action::Kind::done:
                    break;
            }
        }
        // closed
        if (request == 7 || !a.result.ok) {
            if (m.state() != State::closed) trap();
            request = 0;
            if (relay.empty()) stop = true;
        } else {
            if (m.state() != State::ready) trap();
            // A group's result carries both replies; nothing else carries two.
            if (a.result.rcpt_reply.has_value() != (pipelined && request == 2)) trap();
            ++request;
        }
    }
    return 0;
}
