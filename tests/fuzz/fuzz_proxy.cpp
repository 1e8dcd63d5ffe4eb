// libFuzzer target for gateway/proxy/proxy_protocol: no crash, never a byte
// past the header, the same outcome whole or in chunks, and every accepted
// header re-encodes (v1 text or v2 binary) to one that parses the same.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/proxy/proxy_protocol.hpp"

using namespace relaygate::proxy;

namespace {

struct Outcome {
    ProxyEvent::Kind kind = ProxyEvent::Kind::need_more;
    ProxyError error = ProxyError::not_proxy;
    ProxyHeader header;
    std::size_t consumed = 0;  // total over all calls
    bool operator==(const Outcome&) const = default;
};

Outcome run(std::string_view in, Versions v, std::size_t max_v2, std::size_t chunk) {
    ProxyParser p(v, max_v2);
    Outcome out;
    while (!in.empty()) {
        // Each chunk lives in its own buffer, destroyed after use.
        const std::string piece(in.substr(0, chunk));
        in.remove_prefix(piece.size());
        ProxyEvent ev = p.feed(piece);
        if (ev.consumed > piece.size()) std::abort();
        out.consumed += ev.consumed;
        if (ev.kind == ProxyEvent::Kind::need_more) {
            if (ev.consumed != piece.size()) std::abort();
            continue;
        }
        out.kind = ev.kind;
        out.error = ev.error;
        out.header = std::move(ev.header);
        if (p.feed("x").error != ProxyError::finished) std::abort();
        break;
    }
    return out;
}

std::string be16(unsigned v) {
    return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

// The header as a v2 PROXY block (CRC32C dropped: it covered other bytes).
std::string encode_v2(const ProxyHeader& h) {
    std::string body;
    const int af = h.family == Family::tcp4 ? AF_INET : AF_INET6;
    unsigned char a[16] = {}, b[16] = {};
    if (inet_pton(af, h.src_addr.c_str(), a) != 1 || inet_pton(af, h.dst_addr.c_str(), b) != 1)
        std::abort();
    const std::size_t n = af == AF_INET ? 4 : 16;
    body.append(reinterpret_cast<const char*>(a), n);
    body.append(reinterpret_cast<const char*>(b), n);
    body += be16(h.src_port) + be16(h.dst_port);
    for (const Tlv& t : h.tlvs) {
        if (t.type == kTlvCrc32c) continue;
        body += static_cast<char>(t.type) + be16(static_cast<unsigned>(t.value.size())) + t.value;
    }
    std::string out(kV2Signature.begin(), kV2Signature.end());
    out += static_cast<char>(0x21);
    out += static_cast<char>(af == AF_INET ? 0x11 : 0x21);
    return out + be16(static_cast<unsigned>(body.size())) + body;
}

void check_accepted(std::string_view in, const Outcome& o, std::size_t max_v2) {
    const ProxyHeader& h = o.header;
    if (h.local) {
        if (h.family != Family::unspec || !h.src_addr.empty() || !h.dst_addr.empty() ||
            !h.tlvs.empty() || h.usable_for_identity())
            std::abort();
    } else if (!h.usable_for_identity()) {
        std::abort();
    }
    if (h.version == 1) {
        if (o.consumed > kV1MaxLine || in.substr(o.consumed - 2, 2) != "\r\n") std::abort();
        if (h.local) return;
        const std::string line = std::string("PROXY ") +
                                 (h.family == Family::tcp4 ? "TCP4" : "TCP6") + " " + h.src_addr +
                                 " " + h.dst_addr + " " + std::to_string(h.src_port) + " " +
                                 std::to_string(h.dst_port) + "\r\n";
        const Outcome again = run(line, Versions::v1, kDefaultMaxV2Payload, line.size());
        if (again.kind != ProxyEvent::Kind::done || !(again.header == h) ||
            again.consumed != line.size())
            std::abort();
    } else if (h.version == 2) {
        const std::size_t len =
            (static_cast<unsigned char>(in[14]) << 8) | static_cast<unsigned char>(in[15]);
        if (len > max_v2 || o.consumed != kV2FixedSize + len) std::abort();
        if (h.local) return;
        ProxyHeader expect = h;
        std::erase_if(expect.tlvs, [](const Tlv& t) { return t.type == kTlvCrc32c; });
        const std::string bin = encode_v2(h);
        const Outcome again = run(bin, Versions::v2, kMaxV2Payload, bin.size());
        if (again.kind != ProxyEvent::Kind::done || !(again.header == expect) ||
            again.consumed != bin.size())
            std::abort();
    } else {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const Versions v = static_cast<Versions>(1 + data[0] % 3);
    const std::size_t max_v2 = (data[0] & 0x80) ? kMinV2Payload + data[0] : kDefaultMaxV2Payload;
    const std::size_t chunk = 1 + data[1] % 17;
    const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
    const Outcome whole = run(in, v, max_v2, in.size() + 1);
    if (!(run(in, v, max_v2, chunk) == whole)) std::abort();
    if (whole.kind == ProxyEvent::Kind::done) check_accepted(in, whole, max_v2);
    if (whole.kind == ProxyEvent::Kind::need_more && whole.consumed != in.size()) std::abort();
    return 0;
}
