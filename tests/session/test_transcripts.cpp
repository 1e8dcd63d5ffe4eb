// The golden-transcript runner (tests/session/transcripts/README.md): each
// transcript is replayed as written, with the client's bytes split at every
// byte, and with the relay connection lost at every upstream action. It owns
// the transcript format; it must not know any one transcript's content.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/session/session_driver.hpp"

namespace {

namespace fs = std::filesystem;

// --- policies a transcript can name -------------------------------------

const char* kDnsPolicy = R"({
  "version": 1,
  "providers": {
    "m365": { "networks": ["40.92.0.0/15"], "tenant_header": "X-Tenant" }
  },
  "tenants": {
    "verified": { "domains": [{"domain": "verified.example", "verify": "dns"}],
                  "identities": [ { "networks": ["192.0.2.0/24"] } ] },
    "brand": { "domains": ["vectors.example"],
               "identities": [ { "provider": "m365", "tenant_id": "brand-id",
                                 "require": ["header", "dkim"],
                                 "dkim_domains": ["vectors.example"] } ] }
  }
})";

// The example application of policy/examples/sasl-application.json; the
// runner, not the hash, decides whether a password is right (AUTH? lines).
const char* kSaslPolicy = R"({
  "version": 1,
  "tenants": {
    "billing-app": {
      "domains": ["billing.example"],
      "identities": [
        { "sasl_user": "billing-app", "password_hash": "$pbkdf2-sha256$i=600000$dmydeM8Mk6ZcNf4++WDSXA$kTsw+1Ca2DDaqIe92g0xBElCP11vxQ0c/gwPev2qBnI" }
      ]
    }
  }
})";

// Two tenants share a network and a domain.
const char* kAmbiguousPolicy = R"({
  "version": 1,
  "tenants": {
    "acme": { "domains": ["acme.example", {"domain": "shared.example", "shared_domain": true}],
              "identities": [ { "networks": ["192.0.2.0/24"] } ] },
    "twin": { "domains": ["twin.example", {"domain": "shared.example", "shared_domain": true}],
              "identities": [ { "networks": ["192.0.2.0/24"] } ] }
  }
})";

// acme after a reload that took acme.example away.
const char* kRevokedPolicy = R"({
  "version": 1,
  "tenants": { "acme": { "domains": ["other.example"],
                         "identities": [ { "networks": ["192.0.2.0/24"] } ] } }
})";

std::shared_ptr<const policy::Policy> load_policy(const std::string& json) {
    auto r = policy::Policy::load_text(json);
    REQUIRE_MESSAGE(r.ok(), "policy does not load");
    return std::move(r).value();
}

std::shared_ptr<const policy::Policy> named_policy(const std::string& name) {
    static std::map<std::string, std::shared_ptr<const policy::Policy>> cache;
    if (auto it = cache.find(name); it != cache.end()) return it->second;
    const std::map<std::string, const char*> texts{{"default", kPolicy},
                                                   {"dns", kDnsPolicy},
                                                   {"sasl", kSaslPolicy},
                                                   {"ambiguous", kAmbiguousPolicy},
                                                   {"revoked", kRevokedPolicy}};
    auto t = texts.find(name);
    REQUIRE_MESSAGE(t != texts.end(), "unknown policy name " << name);
    return cache[name] = load_policy(t->second);
}

// --- escapes ---------------------------------------------------------------

// Bytes as a transcript writes them: printable ASCII as is, \\ \t \r \n,
// \xHH for the rest, and a trailing space as \x20 (editors strip it).
std::string esc(std::string_view s) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\\')
            out += "\\\\";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\n')
            out += "\\n";
        else if (c == ' ' && i + 1 == s.size())
            out += "\\x20";
        else if (c >= 0x20 && c < 0x7f)
            out += static_cast<char>(c);
        else
            out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    }
    return out;
}

std::string unesc(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        const char e = s[++i];
        if (e == 't')
            out += '\t';
        else if (e == 'r')
            out += '\r';
        else if (e == 'n')
            out += '\n';
        else if (e == 'x' && i + 2 < s.size()) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else
            out += e;
    }
    return out;
}

// "S: text", or "S:" for an empty text.
std::string line_of(std::string_view prefix, std::string_view text) {
    return text.empty() ? std::string(prefix) : std::string(prefix) + " " + std::string(text);
}

// --- the transcript --------------------------------------------------------

// One input, consumed when the session asks for it.
struct ClientItem {
    enum Kind { bytes, eof, timeout, drain, clock, reload, upstream_idle, store } kind = bytes;
    std::string data;                 // bytes: the chunk; reload: policy name; store: up|down
    Reason reason = Reason::timeout;  // timeout
    double seconds = 0;               // clock
    std::vector<std::string> lines;   // as written, rendered where consumed
};
struct UpstreamAnswer {
    UpstreamResult result;
    std::vector<std::string> lines;
};
struct DnsAnswer {
    std::string name;  // of the DNS? line before it
    dns::Answer answer;
    std::vector<std::string> lines;
};

enum class Split { every_byte, within_lines, client_side, off };

struct Transcript {
    std::string name;
    fs::path path;
    std::vector<std::string> head;      // lines before the first event, verbatim
    std::vector<std::string> expected;  // every event line, in order
    std::vector<int> expected_lineno;
    std::string policy = "default";
    std::string policy_json;  // an inline policy
    std::string client_ip = "192.0.2.10";
    session::Settings settings = [] {
        session::Settings s;
        s.volume.anomalies = false;  // `settings: anomalies=on` where a transcript is about them
        return s;
    }();
    Split split = Split::every_byte;
    std::vector<ClientItem> client;
    std::vector<UpstreamAnswer> upstream;
    std::vector<DnsAnswer> dns;
    std::vector<std::string> auth;  // ok | fail | throttled, in order
    std::vector<std::string> tls;   // ok | fail, in order
};

bool starts(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}
std::string rest(std::string_view s, std::size_t n) {
    s.remove_prefix(std::min(n, s.size()));
    while (!s.empty() && s.front() == ' ')
        s.remove_prefix(1);
    return std::string(s);
}

void apply_setting(session::Settings& s, const std::string& key, const std::string& v,
                   const std::string& where) {
    auto num = [&] { return static_cast<std::uint32_t>(std::stoul(v)); };
    if (key == "hostname")
        s.hostname = v;
    else if (key == "starttls")
        s.starttls = v == "off"        ? config::StartTls::off
                     : v == "required" ? config::StartTls::required
                                       : config::StartTls::offered;
    else if (key == "auth")
        s.auth = v == "off"      ? config::Auth::off
                 : v == "always" ? config::Auth::always
                                 : config::Auth::tls_only;
    else if (key == "max_recipients")
        s.limits.max_recipients = num();
    else if (key == "max_errors")
        s.limits.max_errors = num();
    else if (key == "max_message_bytes")
        s.limits.max_message_bytes = num();
    else if (key == "max_header_bytes")
        s.limits.max_header_bytes = num();
    else if (key == "max_text_line")
        s.limits.max_text_line = num();
    else if (key == "max_command_line")
        s.limits.max_command_line = num();
    else if (key == "max_transactions")
        s.limits.max_transactions_per_session = num();
    else if (key == "session_seconds")
        s.session_seconds = std::stod(v);
    else if (key == "anomalies")  // off unless a transcript is about them
        s.volume.anomalies = v == "on";
    else if (key == "defer_mail")
        s.upstream_defer_mail = v == "on";
    else if (key == "chunking")
        s.upstream_chunking = v == "on";
    else if (key == "limits_report_only")
        s.volume.report_only = v == "on";
    else if (key == "recipient_lease")
        s.volume.recipient_lease = num();
    else if (key == "spike")  // multiple,min_messages,bucket_seconds,slots
        std::sscanf(v.c_str(), "%lf,%lu,%lf,%u", &s.volume.spike.multiple,
                    &s.volume.spike.min_messages, &s.volume.spike.bucket_seconds,
                    &s.volume.spike.slots);
    else if (key == "authserv_ids") {
        std::stringstream ss(v);
        for (std::string id; std::getline(ss, id, ',');)
            s.authserv_ids.push_back(id);
    } else
        FAIL(where << ": unknown setting " << key);
}

// "250-relay.test" / "250 2.1.0 Ok" -> one reply; "LOST <reason>" -> lost.
UpstreamResult upstream_result(const std::vector<std::string>& texts, const std::string& where) {
    UpstreamResult u;
    if (starts(texts.front(), "LOST")) {
        auto r = reason_from_label(rest(texts.front(), 4));
        REQUIRE_MESSAGE(r, where << ": LOST needs a reason label");
        u.ok = false;
        u.failure = *r;
        return u;
    }
    u.ok = true;
    for (const auto& t : texts) {
        REQUIRE_MESSAGE(t.size() >= 3, where << ": bad reply " << t);
        u.reply.code = std::stoi(t.substr(0, 3));
        std::string text = t.size() > 4 ? t.substr(4) : "";
        if (u.reply.lines.empty()) {
            const auto sp = text.find(' ');
            const std::string first = text.substr(0, sp);
            if (smtp::is_enhanced_code(first)) {
                u.reply.enhanced = first;
                text = sp == std::string::npos ? "" : text.substr(sp + 1);
            }
        } else if (!u.reply.enhanced.empty() && starts(text, u.reply.enhanced + " ")) {
            text = text.substr(u.reply.enhanced.size() + 1);
        }
        u.reply.lines.push_back(unesc(text));
    }
    u.capabilities =
        std::make_shared<const smtp::EhloCapabilities>(smtp::parse_ehlo_capabilities(u.reply));
    return u;
}

dns::Answer dns_answer(const std::vector<std::string>& texts, const std::string& where) {
    dns::Answer a;
    a.status = dns::Status::ok;
    for (const auto& t : texts) {
        if (t == "NXDOMAIN") {
            a.status = dns::Status::nxdomain;
        } else if (t == "NODATA") {
            a.status = dns::Status::nodata;
        } else if (t == "SERVFAIL") {
            a.status = dns::Status::servfail;
        } else if (t == "TIMEOUT") {
            a.status = dns::Status::timeout;
        } else if (starts(t, "TXT \"") && t.back() == '"') {
            a.records.push_back(unesc(t.substr(5, t.size() - 6)));
        } else {
            FAIL(where << ": DNS= wants TXT \"...\", NXDOMAIN, NODATA, SERVFAIL or TIMEOUT");
        }
    }
    return a;
}

Transcript parse(const fs::path& path) {
    Transcript t;
    t.path = path;
    t.name = path.filename().string();
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot read " << path);
    std::vector<std::string> raw;
    for (std::string l; std::getline(in, l);) {
        while (!l.empty() && (l.back() == '\r' || l.back() == ' ' || l.back() == '\t'))
            l.pop_back();
        raw.push_back(l);
    }
    bool in_events = false;
    std::string last_dns_name;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const std::string& l = raw[i];
        const std::string where = t.name + ":" + std::to_string(i + 1);
        if (l.empty() || l[0] == '#') {
            if (!in_events) t.head.push_back(l);
            continue;
        }
        if (!in_events) {
            if (starts(l, "policy:")) {
                t.head.push_back(l);
                t.policy = rest(l, 7);
                if (t.policy == "{") {  // inline JSON up to a line "}"
                    t.policy_json = "{";
                    while (++i < raw.size() && raw[i] != "}") {
                        t.head.push_back(raw[i]);
                        t.policy_json += raw[i] + "\n";
                    }
                    t.head.push_back("}");
                    t.policy_json += "}";
                    t.policy = "inline";
                }
                continue;
            }
            if (starts(l, "client-ip:")) {
                t.head.push_back(l);
                t.client_ip = rest(l, 10);
                continue;
            }
            if (starts(l, "split:")) {
                t.head.push_back(l);
                const std::string v = rest(l, 6);
                t.split = v == "off"            ? Split::off
                          : v == "within-lines" ? Split::within_lines
                          : v == "client-side"  ? Split::client_side
                                                : Split::every_byte;
                continue;
            }
            if (starts(l, "settings:")) {
                t.head.push_back(l);
                std::stringstream ss(rest(l, 9));
                for (std::string kv; ss >> kv;) {
                    const auto eq = kv.find('=');
                    REQUIRE_MESSAGE(eq != std::string::npos, where << ": key=value expected");
                    apply_setting(t.settings, kv.substr(0, eq), kv.substr(eq + 1), where);
                }
                continue;
            }
        }
        in_events = true;
        t.expected.push_back(l);
        t.expected_lineno.push_back(static_cast<int>(i + 1));
        const bool prev_client =
            t.expected.size() >= 2 && (starts(t.expected[t.expected.size() - 2], "C:") ||
                                       starts(t.expected[t.expected.size() - 2], "C+"));
        if (starts(l, "C:") || starts(l, "C+")) {
            // Exactly one space after the prefix: a folded header line keeps
            // its own leading whitespace.
            const std::string text = l.size() > 3 ? l.substr(3) : "";
            const std::string bytes = starts(l, "C:") ? unesc(text) + "\r\n" : unesc(text);
            if (!prev_client || t.client.empty() || t.client.back().kind != ClientItem::bytes)
                t.client.push_back({});
            t.client.back().data += bytes;
            t.client.back().lines.push_back(l);
        } else if (l == "EOF") {
            t.client.push_back({ClientItem::eof, {}, {}, 0, {l}});
        } else if (starts(l, "TIMEOUT")) {
            auto r = reason_from_label(rest(l, 7));
            REQUIRE_MESSAGE(r, where << ": TIMEOUT needs a reason label");
            t.client.push_back({ClientItem::timeout, {}, *r, 0, {l}});
        } else if (l == "DRAIN") {
            t.client.push_back({ClientItem::drain, {}, {}, 0, {l}});
        } else if (l == "UPSTREAM-IDLE") {
            t.client.push_back({ClientItem::upstream_idle, {}, {}, 0, {l}});
        } else if (l == "STORE down" || l == "STORE up") {
            t.client.push_back({ClientItem::store, rest(l, 5), {}, 0, {l}});
        } else if (starts(l, "CLOCK +")) {
            t.client.push_back({ClientItem::clock, {}, {}, std::stod(rest(l, 7)), {l}});
        } else if (starts(l, "RELOAD")) {
            t.client.push_back({ClientItem::reload, rest(l, 6), {}, 0, {l}});
        } else if (starts(l, "U<")) {
            const std::string text = rest(l, 2);
            const bool continues = !t.upstream.empty() &&
                                   starts(t.expected[t.expected.size() - 2], "U<") &&
                                   t.upstream.back().lines.back().size() > 6 &&
                                   t.upstream.back().lines.back()[6] == '-';
            if (!continues) t.upstream.push_back({});
            t.upstream.back().lines.push_back(l);
        } else if (starts(l, "DNS?")) {
            last_dns_name = rest(l, 4);
        } else if (starts(l, "DNS=")) {
            if (!starts(t.expected[t.expected.size() - 2], "DNS="))
                t.dns.push_back({last_dns_name, {}, {}});
            t.dns.back().lines.push_back(l);
        } else if (starts(l, "AUTH?")) {
            const auto arrow = l.rfind(" -> ");
            REQUIRE_MESSAGE(arrow != std::string::npos,
                            where << ": AUTH? ... -> ok|fail|throttled");
            t.auth.push_back(l.substr(arrow + 4));
        } else if (starts(l, "TLS -> ")) {
            t.tls.push_back(l.substr(7));
        } else if (starts(l, "S:") || starts(l, "S+") || starts(l, "U>") || starts(l, "U+") ||
                   starts(l, "AUDIT:") || starts(l, "LIMITS?") || starts(l, "LIMITS!") ||
                   l == "CLOSE") {
            // output: compared, never fed
        } else {
            FAIL(where << ": unknown line: " << l);
        }
    }
    for (auto& u : t.upstream) {
        std::vector<std::string> texts;
        for (const auto& l : u.lines)
            texts.push_back(rest(l, 2));
        u.result = upstream_result(texts, t.name);
    }
    for (auto& d : t.dns) {
        std::vector<std::string> texts;
        for (const auto& l : d.lines)
            texts.push_back(rest(l, 4));
        d.answer = dns_answer(texts, t.name);
    }
    return t;
}

std::vector<fs::path> transcript_files() {
    std::vector<fs::path> files;
    for (const auto& e :
         fs::directory_iterator(fs::path(RELAYGATE_SOURCE_DIR) / "tests/session/transcripts"))
        if (e.path().extension() == ".txt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

// --- replay ----------------------------------------------------------------

struct Options {
    // Split client chunk `split_chunk` at byte `split_at` (two reads).
    std::size_t split_chunk = SIZE_MAX;
    std::size_t split_at = 0;
    bool bytewise = false;  // every chunk one byte per read
    // Lose the relay connection at this upstream action (0-based); the
    // upstream results of the run as written come from `results`, and after
    // the fault a relay that says yes to everything answers.
    std::size_t fault_at = SIZE_MAX;
    const std::vector<UpstreamResult>* results = nullptr;
    bool compare = true;        // stop at the first line that differs from the transcript
    bool write_answers = true;  // a U< line right after message data answers the write
    bool client_side = false;   // compare all but the U> U+ U< lines
};

struct Outcome {
    std::vector<std::string> lines;
    std::string mismatch;                          // empty: the rendered transcript matched
    std::vector<UpstreamResult> upstream_results;  // in action order
    std::vector<std::string> violations;           // fault-mode invariants
    bool closed = false;
};

struct RenderHooks : FakeHooks {
    std::function<void(const session::TransactionRecord&)> record;
    void on_transaction(const session::TransactionRecord& r) override {
        FakeHooks::on_transaction(r);
        record(r);
    }
};

std::string audit_line(const session::TransactionRecord& r) {
    auto quoted = [](const std::string& s) {
        std::string q = esc(s), out = "\"";
        for (char c : q)
            out += c == '"' ? std::string("\\\"") : std::string(1, c);
        return out + "\"";
    };
    auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    std::string l = "AUDIT: reason=" + std::string(label(r.reason)) + " stage=" + r.stage +
                    " tenant=" + dash(r.tenant) + " identity=" + r.identity +
                    " envelope=" + dash(r.envelope_domain) + " from=" + dash(r.header_from_domain) +
                    " recipients=" + std::to_string(r.recipients) +
                    " size=" + std::to_string(r.size);
    if (r.relayed) l += " relayed";
    if (r.report_only) l += " report_only";
    if (r.commit_unknown) l += " commit_unknown";
    if (!r.queue_id.empty()) l += " queue_id=" + r.queue_id;
    if (!r.dkim.empty()) l += " dkim=" + quoted(r.dkim);
    if (!r.limit.empty()) l += " limit=" + quoted(r.limit);
    return l + " reply=" + quoted(r.reply);
}

// One check: "key+1" consumes, "key+5000?" only asks, "key~1" leases,
// "key-1" refunds.
std::string check_text(const ratelimit::Check& c) {
    using Mode = ratelimit::Check::Mode;
    const std::string cost = std::to_string(c.cost);
    switch (c.mode) {
        case Mode::consume:
            return c.key + "+" + cost;
        case Mode::ask:
            return c.key + "+" + cost + "?";
        case Mode::lease:
            return c.key + "~" + cost;
        case Mode::refund:
            return c.key + "-" + cost;
    }
    return c.key;
}

// "LIMITS? rl:{acme}:...:3600+1 bytes...+5000? vol:{acme} seen:{acme}:net:... -> allowed new=1":
// a check_limits request and what the runner's real MemoryStore (on the
// transcript's clock) answered ("leased": its lease checks were taken).
std::string limits_line(const ratelimit::Request& r, const ratelimit::Outcome& o) {
    std::string l = "LIMITS?";
    for (const auto& c : r.checks)
        l += " " + check_text(c);
    if (!r.volume_key.empty()) l += " " + r.volume_key;
    for (const auto& k : r.first_seen)
        l += " " + k;
    if (o.status == ratelimit::Outcome::Status::store_error) return l + " -> store_error";
    if (o.allowed)
        l += o.leased ? " -> allowed leased" : " -> allowed";
    else
        l += " -> denied " + std::to_string(o.denied) + " retry " +
             (std::isfinite(o.retry_after)
                  ? std::to_string(static_cast<long>(std::ceil(o.retry_after))) + "s"
                  : std::string("never"));
    if (o.spike) l += " spike";
    if (o.held) l += " held";
    if (!r.volume_key.empty()) l += " volume=" + std::to_string(o.volume);
    if (!o.first_seen_new.empty()) {
        l += " new=";
        for (std::size_t i = 0; i < o.first_seen_new.size(); ++i)
            l += (i ? "," : "") + std::string(o.first_seen_new[i] ? "1" : "0");
    }
    return l;
}

class Replay {
  public:
    Replay(const Transcript& t, const Options& o) : t_(t), o_(o) {
        for (std::size_t i = 0; i < t.expected.size(); ++i)
            if (!o.client_side || !upstream_line(t.expected[i])) {
                expected_.push_back(t.expected[i]);
                expected_lineno_.push_back(t.expected_lineno[i]);
            }
    }

    Outcome run() {
        session::ClientInfo info{"t-1", t_.client_ip, 12345};
        policy_ = t_.policy == "inline" ? load_policy(t_.policy_json) : named_policy(t_.policy);
        hashes_.emplace_back(policy_->hash(), "{policy_hash}");
        for (const auto& c : t_.client)
            if (c.kind == ClientItem::reload)
                hashes_.emplace_back(named_policy(c.data)->hash(), "{policy_hash:" + c.data + "}");
        hooks_.record = [this](const session::TransactionRecord& r) {
            emit(audit_line(r));
            on_record(r);
        };
        SessionMachine m(t_.settings, policy_, info, hooks_);
        for (int guard = 0; guard < 200000 && !stop(); ++guard) {
            Flat a = flatten(m.next());
            switch (a.kind) {
                case TK::read_client:
                    if (!read(m)) return finish();
                    break;
                case TK::send_client:
                    send_client(a.bytes);
                    break;
                case TK::upstream_connect:
                    emit("U> [connect]");
                    m.on_upstream_result(upstream(a, {}));
                    break;
                case TK::upstream_command:
                    if (!a.bytes.ends_with("\r\n")) fail("upstream command without CRLF");
                    // One U> line per command (a pipelined MAIL + RCPT is two).
                    for (std::size_t at = 0; at < a.bytes.size();) {
                        const std::size_t end = a.bytes.find("\r\n", at);
                        emit(line_of("U>", esc(a.bytes.substr(at, end - at))));
                        at = end == std::string::npos ? a.bytes.size() : end + 2;
                    }
                    m.on_upstream_result(upstream(a, a.bytes));
                    break;
                case TK::upstream_write: {
                    write_buf_ += a.bytes;
                    emit_write_lines();
                    m.on_upstream_result(upstream(a, {}));
                    break;
                }
                case TK::upstream_commit:
                    // The data written with the terminator shows as data lines
                    // (a BDAT LAST, with no terminator: its command line first).
                    write_buf_ += a.data;
                    emit_write_lines();
                    if (!a.bytes.empty())
                        emit(a.bytes == ".\r\n" ? "U> ." : "U> [commit " + esc(a.bytes) + "]");
                    m.on_upstream_result(upstream(a, {}));
                    break;
                case TK::upstream_abort:
                    emit("U> [abort]");
                    upstream_event(a);
                    break;
                case TK::upstream_quit:
                    emit("U> [quit]");
                    upstream_event(a);
                    break;
                case TK::start_tls: {
                    const std::string r = next_of(t_.tls, tls_next_, "ok");
                    emit("TLS -> " + r);
                    // Bytes of a split chunk still unread were sent before the
                    // handshake: a TLS layer never hands them to the session.
                    remainder_.clear();
                    m.on_tls_result(r == "ok", {});
                    break;
                }
                case TK::verify_auth: {
                    const std::string r = next_of(t_.auth, auth_next_, "fail");
                    emit("AUTH? " + esc(a.bytes) + " / " + esc(a.secret) + " -> " + r);
                    if (r == "throttled")
                        m.on_auth_throttled();
                    else if (r == "busy")
                        m.on_auth_busy();
                    else
                        m.on_auth_result(r == "ok");
                    break;
                }
                case TK::dns_lookup: {
                    emit(line_of("DNS?", esc(a.bytes)));
                    m.on_dns_result(dns(a.bytes));
                    break;
                }
                case TK::check_limits: {
                    ratelimit::Outcome o;
                    if (store_down_)
                        o.status = ratelimit::Outcome::Status::store_error;
                    else
                        o = store_.decide(a.request);
                    emit(limits_line(a.request, o));
                    m.on_limits_result(o);
                    break;
                }
                case TK::refund_limits: {
                    // Sent without waiting for an answer; a store that is
                    // down loses it.
                    std::string l = "LIMITS!";
                    for (const auto& c : a.request.checks)
                        l += " " + check_text(c);
                    emit(l);
                    if (!store_down_) store_.decide(a.request);
                    break;
                }
                case TK::close:
                    emit("CLOSE");
                    out_.closed = true;
                    return finish();
            }
        }
        if (!stop()) fail("the session did not finish (200000 actions)");
        return finish();
    }

  private:
    bool stop() const { return o_.compare && !out_.mismatch.empty(); }

    Outcome finish() {
        flush_write();
        if (o_.compare && out_.mismatch.empty() && out_.lines.size() < expected_.size())
            mismatch_at(out_.lines.size(), "(the session ended here)");
        if (!o_.compare && !out_.closed && out_.violations.empty())
            out_.violations.push_back("the session did not close");
        return std::move(out_);
    }

    // An invariant broken (checked when not comparing: a transcript as
    // written is already checked line by line).
    void violation(const std::string& why) {
        if (!o_.compare) out_.violations.push_back(why);
    }

    void fail(const std::string& why) {
        if (o_.compare && out_.mismatch.empty())
            out_.mismatch = why;
        else if (!o_.compare)
            out_.violations.push_back(why);
    }

    void mismatch_at(std::size_t i, const std::string& got) {
        std::ostringstream s;
        s << t_.name << ":" << (i < expected_lineno_.size() ? expected_lineno_[i] : -1)
          << ": expected\n  " << (i < expected_.size() ? expected_[i] : "(end of transcript)")
          << "\ngot\n  " << got << "\nrendered so far (last lines):\n";
        for (std::size_t k = i > 12 ? i - 12 : 0; k < out_.lines.size(); ++k)
            s << "  " << out_.lines[k] << "\n";
        out_.mismatch = s.str();
    }

    // A rendered line; message data a write left unfinished goes first.
    void emit(std::string line) {
        if (!write_buf_.empty()) flush_write();
        emit_line(std::move(line));
    }
    void emit_line(std::string line) {
        if (o_.client_side && upstream_line(line)) return;
        for (const auto& [hash, name] : hashes_)
            for (auto p = line.find(hash); p != std::string::npos; p = line.find(hash))
                line.replace(p, hash.size(), name);
        if (stop()) return;
        if (o_.compare) {
            const std::size_t i = out_.lines.size();
            if (i >= expected_.size() || expected_[i] != line) {
                mismatch_at(i, line);
                return;
            }
        }
        out_.lines.push_back(std::move(line));
    }

    static bool upstream_line(std::string_view l) {
        return starts(l, "U>") || starts(l, "U+") || starts(l, "U<");
    }

    std::string expected_next() const {
        const std::size_t i = out_.lines.size();
        return i < expected_.size() ? expected_[i] : std::string();
    }

    static std::string next_of(const std::vector<std::string>& v, std::size_t& i,
                               const char* otherwise) {
        return i < v.size() ? v[i++] : otherwise;
    }

    // The message data written upstream, one line per U> line; a line a
    // write left unfinished waits for the next write.
    void emit_write_lines() {
        for (auto p = write_buf_.find("\r\n"); p != std::string::npos;
             p = write_buf_.find("\r\n")) {
            std::string l = esc(write_buf_.substr(0, p));
            if (starts(l, "[")) l = "\\x5b" + l.substr(1);
            write_buf_.erase(0, p + 2);
            emit_line(line_of("U>", l));
        }
    }
    void flush_write() {
        std::string partial;
        partial.swap(write_buf_);
        if (!partial.empty()) emit_line(line_of("U+", esc(partial)));
    }

    void send_client(const std::string& bytes) {
        std::string_view s = bytes;
        while (!s.empty()) {
            const auto p = s.find("\r\n");
            if (p == std::string_view::npos) {
                emit(line_of("S+", esc(s)));
                break;
            }
            emit(line_of("S:", esc(s.substr(0, p))));
            s.remove_prefix(p + 2);
        }
        // Invariants (fault mode): the reply to the final "." is 2xx only
        // when the relay's reply to it was 2xx.
        const int code = bytes.size() >= 3 ? std::atoi(bytes.substr(0, 3).c_str()) : 0;
        ++replies_;
        if (client_in_data_) {
            client_in_data_ = false;
            if (code / 100 == 2 && !commit_ok_)
                violation("2xx to the final \".\" without a 2xx from the relay: " + bytes);
        }
        if (code == 354) {
            client_in_data_ = true;
            commit_ok_ = false;
        }
    }

    bool read(SessionMachine& m) {
        // Invariant: a complete command line gets a reply before the next read.
        if (fed_command_line_ && replies_ == 0) violation("a command got no reply");
        fed_command_line_ = false;
        replies_ = 0;
        auto feed = [&](std::string bytes) {
            fed_command_line_ =
                m.stage() == SessionMachine::Stage::command && bytes.ends_with("\n");
            m.on_client_data(bytes);
        };
        if (!remainder_.empty()) {
            std::string next;
            if (o_.bytewise) {
                next = remainder_.substr(0, 1);
                remainder_.erase(0, 1);
            } else {
                next.swap(remainder_);
            }
            feed(std::move(next));
            return true;
        }
        while (client_next_ < t_.client.size()) {
            const std::size_t index = client_next_;
            const ClientItem& c = t_.client[client_next_++];
            for (const auto& l : c.lines)
                emit(l);
            switch (c.kind) {
                case ClientItem::bytes: {
                    std::string first = c.data;
                    if (o_.bytewise) {
                        remainder_ = first.substr(1);
                        first.resize(1);
                    } else if (index == o_.split_chunk && o_.split_at < first.size()) {
                        remainder_ = first.substr(o_.split_at);
                        first.resize(o_.split_at);
                    }
                    feed(std::move(first));
                    return true;
                }
                case ClientItem::eof:
                    m.on_client_closed();
                    return true;
                case ClientItem::timeout:
                    m.on_timeout(c.reason);
                    return true;
                case ClientItem::drain:
                    m.on_drain();
                    break;
                case ClientItem::clock:
                    hooks_.t += c.seconds;
                    break;
                case ClientItem::reload:
                    hooks_.current = named_policy(c.data);
                    break;
                case ClientItem::upstream_idle:
                    m.on_upstream_idle();
                    break;
                case ClientItem::store:
                    store_down_ = c.data == "down";
                    break;
            }
        }
        if (o_.compare) {
            mismatch_at(out_.lines.size(), "(the session reads: the transcript has no more input)");
            return false;
        }
        // Out of input (a fault changed the conversation): the client hangs up.
        if (hung_up_) {
            out_.violations.push_back("the session reads after the client closed");
            return false;
        }
        hung_up_ = true;
        m.on_client_closed();
        return true;
    }

    // The relay's answer to upstream action number n.
    UpstreamResult upstream(const Flat& a, const std::string& line) {
        const std::size_t n = upstream_count_++;
        UpstreamResult r;
        if (n == o_.fault_at) {
            r.ok = false;
            r.failure = Reason::upstream_failed;
            fault_hit_ = a.kind;
        } else if (o_.results && n < o_.fault_at && n < o_.results->size()) {
            r = (*o_.results)[n];
        } else if (o_.results) {
            r = yes_relay(a, line);
        } else if (a.kind == TK::upstream_write) {
            // A write is answered only where the transcript says so (a U<
            // line right after its data): otherwise it went out.
            if (o_.write_answers && starts(expected_next(), "U<") &&
                upstream_next_ < t_.upstream.size())
                r = take_upstream();
            else
                r.ok = true;
        } else if (upstream_next_ < t_.upstream.size()) {
            r = take_upstream();
            if (a.then_rcpt && r.ok) {
                // The RCPT's reply is the next U< answer; a LOST there loses both.
                if (upstream_next_ < t_.upstream.size()) {
                    UpstreamResult rcpt = take_upstream();
                    if (rcpt.ok)
                        r.rcpt_reply = std::move(rcpt.reply);
                    else
                        r = rcpt;
                } else {
                    fail("a pipelined RCPT: the transcript has no U< answer left for it");
                    r.ok = false;
                }
            }
        } else {
            fail("the session talks to the relay: the transcript has no U< answer left");
            r.ok = false;
        }
        if (a.kind == TK::upstream_write && !r.ok) write_buf_.clear();  // lost with the link
        check_upstream(a, line, r);
        out_.upstream_results.push_back(r);
        return r;
    }

    UpstreamResult take_upstream() {
        const auto& u = t_.upstream[upstream_next_++];
        for (const auto& l : u.lines)
            emit(l);
        return u.result;
    }

    static UpstreamResult yes_relay(const Flat& a, const std::string& line) {
        UpstreamResult u;
        u.ok = true;
        if (a.kind == TK::upstream_connect)
            u.reply =
                smtp::Reply{250, "", {"relay.test", "SIZE 100000000", "8BITMIME", "SMTPUTF8"}};
        else if (a.kind == TK::upstream_command && starts(line, "DATA"))
            u.reply = smtp::Reply{354, "", {"go ahead"}};
        else if (a.kind == TK::upstream_commit)
            u.reply = smtp::Reply{250, "2.0.0", {"Ok: queued as FAULT1"}};
        else if (a.kind == TK::upstream_command)
            u.reply = smtp::Reply{250, "2.0.0", {"Ok"}};
        if (a.then_rcpt) u.rcpt_reply = u.reply;
        u.capabilities =
            std::make_shared<const smtp::EhloCapabilities>(smtp::parse_ehlo_capabilities(u.reply));
        return u;
    }

    dns::Answer dns(const std::string& name) {
        if (o_.results) {
            // After a fault the lookups may come in another order: by name,
            // the k-th answer written for it at its k-th lookup (then the last).
            std::vector<const DnsAnswer*> answers;
            for (const auto& d : t_.dns)
                if (d.name == name) answers.push_back(&d);
            const std::size_t k = dns_by_name_[name]++;
            if (answers.empty()) return txt({}, dns::Status::nxdomain);
            return answers[std::min(k, answers.size() - 1)]->answer;
        }
        if (dns_next_ >= t_.dns.size()) {
            fail("the session asks DNS: the transcript has no DNS= answer left");
            return txt({}, dns::Status::servfail);
        }
        const auto& d = t_.dns[dns_next_++];
        for (const auto& l : d.lines)
            emit(l);
        return d.answer;
    }

    // The relay's side of the conversation, as a model: nothing goes to a
    // dead connection, RCPT and DATA only inside a transaction the relay
    // accepted, message data and the final "." only after its 354 and
    // while the client is in DATA.
    void check_upstream(const Flat& a, const std::string& line, const UpstreamResult& r) {
        const bool is_mail = starts(line, "MAIL ");
        const bool is_rset = starts(line, "RSET");
        const bool is_data = starts(line, "DATA");
        if (a.kind != TK::upstream_connect && !link_open_)
            violation("sent to the relay on a closed connection: " +
                      std::string(to_string(a.step)));
        if (a.kind == TK::upstream_command && !is_mail && !is_rset && !relay_txn_)
            violation("RCPT or DATA outside a relay transaction: " + line);
        // RFC 2920: a RCPT only ever follows its MAIL in the same write.
        const auto lines = std::count(line.begin(), line.end(), '\n');
        if (a.kind == TK::upstream_command &&
            (a.then_rcpt ? lines != 2 || !is_mail || line.find("\r\nRCPT TO:<") == std::string::npos
                         : lines != 1))
            violation("a pipelined group other than MAIL + RCPT: " + line);
        const bool bdat = a.kind == TK::upstream_commit && a.bytes.empty();
        if ((a.kind == TK::upstream_write || (a.kind == TK::upstream_commit && !bdat)) &&
            (!relay_data_ || !client_in_data_))
            violation("message data or \".\" outside DATA");
        if (bdat) check_bdat(a.data);
        if (!r.ok) {
            link_open_ = relay_txn_ = relay_data_ = false;
            return;
        }
        if (a.kind == TK::upstream_connect) {
            link_open_ = true;
            relay_chunking_ = r.capabilities && r.capabilities->has("CHUNKING");
        }
        if (is_mail) relay_txn_ = r.reply.positive();
        if (is_rset) relay_txn_ = relay_data_ = false;
        if (is_data) relay_data_ = r.reply.code == 354;
        if (a.kind == TK::upstream_commit) {
            commit_ok_ = r.reply.code / 100 == 2;
            relay_txn_ = relay_data_ = false;
        }
    }
    // RFC 3030: one BDAT LAST with the whole message, to a relay that offers
    // CHUNKING, inside a transaction it accepted, with no DATA before it,
    // while the client is in DATA; its size counts exactly the octets after
    // its line, and the message starts with our verdict header.
    void check_bdat(const std::string& data) {
        if (!relay_chunking_ || !relay_txn_ || relay_data_ || !client_in_data_)
            violation("BDAT outside a transaction of a relay that offers CHUNKING, or after DATA");
        if (!session::testing::exact_bdat_last(data, t_.settings.verdict_header + ": "))
            violation("not one exact BDAT LAST starting with the verdict header");
    }
    void upstream_event(const Flat&) { link_open_ = relay_txn_ = relay_data_ = false; }

    void on_record(const session::TransactionRecord& r) {
        if (r.relayed && !commit_ok_) violation("a record says relayed without a 2xx commit");
        if (fault_hit_ == TK::upstream_commit && !fault_recorded_) {
            fault_recorded_ = true;
            if (!r.commit_unknown)
                violation("the final reply was lost but the record lacks commit_unknown");
            if (r.reply.empty() || r.reply[0] != '4') violation("a lost final reply must be a 4xx");
        }
    }

    const Transcript& t_;
    const Options& o_;
    std::vector<std::string> expected_;
    std::vector<int> expected_lineno_;
    Outcome out_;
    RenderHooks hooks_;
    // Volume control: a real store on the transcript's clock (STORE down: fails).
    ratelimit::MemoryStore store_{[this] { return hooks_.t; }, 100000};
    bool store_down_ = false;
    std::shared_ptr<const policy::Policy> policy_;
    std::vector<std::pair<std::string, std::string>> hashes_;
    std::size_t client_next_ = 0, upstream_next_ = 0, dns_next_ = 0, auth_next_ = 0, tls_next_ = 0,
                upstream_count_ = 0;
    std::map<std::string, std::size_t> dns_by_name_;
    std::string remainder_;
    std::string write_buf_;
    // invariant state
    bool fed_command_line_ = false;
    int replies_ = 0;
    bool client_in_data_ = false, commit_ok_ = false;
    bool link_open_ = false, relay_txn_ = false, relay_data_ = false, relay_chunking_ = false;
    std::optional<TK> fault_hit_;
    bool fault_recorded_ = false;
    bool hung_up_ = false;
};

Outcome replay(const Transcript& t, const Options& o = {}) {
    return Replay(t, o).run();
}

std::vector<Transcript> all_transcripts() {
    std::vector<Transcript> v;
    for (const auto& f : transcript_files())
        v.push_back(parse(f));
    return v;
}

// RELAYGATE_UPDATE_TRANSCRIPTS=1 rewrites each transcript from what the
// session does with its inputs (a drafting aid: review every change; comments
// after the head are kept only before client input).
void update(const Transcript& t) {
    Options o;
    o.compare = false;
    // A draft of inputs only has its U< lines anywhere; once rendered, a U<
    // right after message data answers that write.
    o.write_answers = !t.expected.empty() && starts(t.expected[0], "S:");
    auto out = replay(t, o);
    std::ofstream f(t.path, std::ios::binary);
    for (const auto& l : t.head)
        f << l << "\n";
    for (const auto& l : out.lines)
        f << l << "\n";
}

}  // namespace

TEST_CASE("golden transcripts: each replays exactly as written") {
    const bool updating = std::getenv("RELAYGATE_UPDATE_TRANSCRIPTS") != nullptr;
    const auto all = all_transcripts();
    CHECK(all.size() >= 30);
    for (const auto& t : all) {
        CAPTURE(t.name);
        if (updating) update(t);
        auto out = replay(t);
        CHECK_MESSAGE(out.mismatch.empty(), out.mismatch);
        CHECK(out.closed);
    }
}

TEST_CASE("golden transcripts: the client's bytes split anywhere give the same transcript") {
    // Each client chunk is split once at every byte (one replay per byte of
    // client input, so the cost is quadratic in the transcript's size, which
    // the bound below keeps small), and every chunk is fed one byte per read.
    std::size_t replays = 0;
    for (const auto& t : all_transcripts()) {
        CAPTURE(t.name);
        if (t.split == Split::off) continue;
        std::size_t total = 0;
        for (const auto& c : t.client)
            total += c.data.size();
        CHECK_MESSAGE(total <= 16384, "keep a transcript's client bytes under 16 KiB");
        for (std::size_t i = 0; i < t.client.size(); ++i) {
            const std::string& chunk = t.client[i].data;
            for (std::size_t k = 1; k < chunk.size(); ++k) {
                // "within-lines": a line boundary is where the client waited.
                if (t.split == Split::within_lines && chunk[k - 1] == '\n') continue;
                Options o;
                o.split_chunk = i;
                o.split_at = k;
                o.client_side = t.split == Split::client_side;
                auto out = replay(t, o);
                ++replays;
                if (!out.mismatch.empty()) {
                    FAIL_CHECK("chunk " << i << " split at byte " << k << ":\n" << out.mismatch);
                    break;
                }
            }
        }
        if (t.split == Split::every_byte) {
            Options o;
            o.bytewise = true;
            auto out = replay(t, o);
            CHECK_MESSAGE(out.mismatch.empty(), "fed byte by byte:\n" << out.mismatch);
        }
    }
    MESSAGE("split replays: " << replays);
}

TEST_CASE("golden transcripts: the relay connection lost at every upstream action") {
    // Boost.MySQL style: the run as written, except that upstream action n
    // loses the connection; the client's input stays the same. What must
    // hold then is checked by the replay (Replay::check_upstream,
    // send_client, read, on_record): no 2xx to the "." without the relay's
    // 2xx, nothing sent on a dead connection or outside the transaction,
    // every command answered, commit_unknown when the "."'s reply was lost,
    // and the session closes within a bounded number of actions.
    std::size_t replays = 0;
    for (const auto& t : all_transcripts()) {
        CAPTURE(t.name);
        Options plain;
        plain.compare = false;
        const auto base = replay(t, plain);
        REQUIRE(base.violations.empty());
        for (std::size_t n = 0; n < base.upstream_results.size(); ++n) {
            Options o;
            o.compare = false;
            o.fault_at = n;
            o.results = &base.upstream_results;
            auto out = replay(t, o);
            ++replays;
            for (const auto& v : out.violations)
                FAIL_CHECK("relay lost at upstream action " << n << ": " << v);
        }
    }
    MESSAGE("fault replays: " << replays);
}

namespace {

// Reasons the session machine never produces; each is produced elsewhere.
const std::map<Reason, const char*> kNotSessionReasons{
    {Reason::too_many_connections,
     "gateway/server refuses the connection before a session exists (connection limiter)"},
    {Reason::untrusted_proxy,
     "gateway/server reads the PROXY header before the session machine is created"},
    {Reason::proxy_header_invalid,
     "gateway/server reads the PROXY header before the session machine is created"},
};

// The reason a reply line names: its code, enhanced code and table text.
std::optional<Reason> reason_of_reply(std::string_view line) {
    for (const auto& row : all_reasons()) {
        if (row.smtp_code / 100 == 2) continue;  // 250 2.0.0 OK is also NOOP's reply
        const std::string head = std::to_string(row.smtp_code) + " " + std::string(row.enhanced) +
                                 " " + std::string(row.text);
        for (const std::string sep : {" ", "-"}) {
            std::string h = head;
            h[3] = sep[0];
            if (line.substr(0, h.size()) == h && (line.size() == h.size() || line[h.size()] == ':'))
                return row.reason;
        }
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("golden transcripts cover every reason the session can produce") {
    std::set<Reason> seen;
    for (const auto& t : all_transcripts()) {
        for (const auto& l : t.expected) {
            if (starts(l, "AUDIT: reason=")) {
                const std::string v = l.substr(14, l.find(' ', 14) - 14);
                auto r = reason_from_label(v);
                CHECK_MESSAGE(r, t.name << ": unknown reason " << v);
                if (r) seen.insert(*r);
            } else if (starts(l, "S: ")) {
                if (auto r = reason_of_reply(l.substr(3))) seen.insert(*r);
            }
        }
    }
    std::string missing;
    for (const auto& row : all_reasons()) {
        const bool excluded = kNotSessionReasons.count(row.reason) > 0;
        if (excluded) CHECK_MESSAGE(!seen.count(row.reason), row.label << " is excluded but seen");
        if (!excluded && !seen.count(row.reason)) missing += " " + std::string(row.label);
    }
    CHECK_MESSAGE(missing.empty(), "no transcript produces:" << missing);
}
