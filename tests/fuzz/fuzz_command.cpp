// libFuzzer target for gateway/smtp/command: no crash, and every accepted
// command satisfies the limits and normal forms the session relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/common/ascii.hpp"
#include "gateway/common/domain.hpp"
#include "gateway/common/reason.hpp"
#include "gateway/smtp/command.hpp"

using namespace relaygate;
using namespace relaygate::smtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    ParseOptions opts;
    opts.smtputf8_offered = data[0] & 1;
    opts.smtputf8_transaction = data[0] & 2;
    std::string_view line(reinterpret_cast<const char*>(data) + 1, size - 1);
    auto r = parse_command(line, opts);
    if (!r) {
        const int code = info(reason(r.error())).smtp_code;
        if (code < 500 || code > 599) std::abort();
        return 0;
    }
    const Command& c = *r;
    if (c.verb == Verb::mail || c.verb == Verb::rcpt) {
        const Path& p = c.path;
        if (p.local_part.size() > kMaxLocalPart) std::abort();
        if (c.verb == Verb::rcpt && p.null) std::abort();
        if (c.verb == Verb::mail && p.postmaster) std::abort();
        const bool utf8 = c.verb == Verb::mail ? c.mail.smtputf8 : opts.smtputf8_transaction;
        if (!utf8 && !ascii::is_all_ascii(p.mailbox())) std::abort();
        if (!p.null && !p.postmaster && !p.address_literal) {
            auto d = normalize_domain(p.domain, false);
            if (!d || *d != p.domain) std::abort();  // already lower-case A-labels
        }
    }
    if (c.verb == Verb::ehlo || c.verb == Verb::helo) {
        if (c.helo_domain.empty()) std::abort();
        if (c.verb == Verb::helo && c.helo_literal) std::abort();
    }
    if (c.verb == Verb::mail && c.mail.smtputf8 && !opts.smtputf8_offered) std::abort();
    return 0;
}
