// libFuzzer target for gateway/message: read_header on arbitrary bytes, fed
// whole and through HeaderCollector at a fuzzer-chosen split, with invariants
// checked on every accepted message. Test code only; aborts on a broken invariant.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/common/domain.hpp"
#include "gateway/message/address_parser.hpp"
#include "gateway/message/header_collector.hpp"
#include "gateway/message/header_reader.hpp"

using namespace relaygate;
using namespace relaygate::message;

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

std::string verdict(const Result<HeaderFacts, HeaderReject>& r) {
    if (!r) return std::string(label(r.error().reason));
    std::string out;
    for (const auto& m : r->originators)
        out += m.local_part + "@" + m.domain + ";";
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    // Byte 0: options; byte 1: split point; the rest is the message.
    HeaderOptions opt;
    opt.smtputf8 = data[0] & 1;
    opt.allow_multiple_from_mailboxes = data[0] & 2;
    opt.allow_display_name_address = data[0] & 4;
    opt.max_header_bytes = (data[0] & 8) ? 64 : 4096;
    if (data[0] & 16) opt.authserv_ids = {"gw.example", "xn--bcher-kva.example"};
    std::string_view msg(reinterpret_cast<const char*>(data) + 2, size - 2);
    std::size_t cut = msg.empty() ? 0 : data[1] % (msg.size() + 1);

    HeaderCollector c(opt.max_header_bytes);
    std::size_t u1 = 0, u2 = 0;
    auto s = c.feed(msg.substr(0, cut), u1);
    if (s == HeaderCollector::Status::need_more) s = c.feed(msg.substr(cut), u2);
    if (s == HeaderCollector::Status::need_more) s = c.finish();
    check(u1 + u2 <= msg.size());
    check(msg.substr(0, c.header().size()) == c.header());

    auto direct = read_header(msg, opt);
    if (s == HeaderCollector::Status::too_big) {
        check(!direct.ok() && direct.error().reason == Reason::header_too_big);
        return 0;
    }
    check(u1 + u2 == c.header().size());
    auto streamed = read_header(c.header(), opt);
    check(verdict(direct) == verdict(streamed));
    // Into facts reused from the inputs before: the same facts, or nothing.
    static HeaderFacts reused;
    auto e = read_header_into(c.header(), opt, reused);
    check(e.has_value() != streamed.ok());
    check(e ? reused == HeaderFacts{} && e->reason == streamed.error().reason
            : reused == streamed.value());
    if (!streamed) return 0;

    const HeaderFacts& f = streamed.value();
    check(f.header_size == c.header().size());
    check(f.count("From") == 1);
    check(!f.originators.empty());
    if (!opt.allow_multiple_from_mailboxes) check(f.mailboxes(OriginatorField::from).size() == 1);
    std::size_t pos = 0;
    for (const auto& field : f.fields) {
        check(field.offset == pos);  // fields tile the header section
        pos += field.length;
    }
    for (const auto& m : f.originators) {
        auto again = normalize_domain(m.domain, false);  // A-labels are ASCII and canonical
        check(again.ok() && again.value() == m.domain);
        check(!m.local_part.empty());
    }
    // Stripping a field keeps every other byte and the same originators.
    std::string stripped = without_fields(c.header(), f, "X-Relaygate-Verdict");
    auto reread = read_header(stripped, opt);
    check(reread.ok() && verdict(reread) == verdict(streamed));
    check(reread->count("X-Relaygate-Verdict") == 0);
    return 0;
}
