// The scripted client waits for each reply before the next command, as a
// client without PIPELINING would, and QUITs at the first unexpected reply.
// Nothing reaches a relay: the scripted relay only answers.
#include "gateway/cli/explain_session.hpp"

#include <chrono>
#include <stdexcept>
#include <variant>

#include "gateway/ratelimit/memory_store.hpp"
#include "gateway/smtp/data_writer.hpp"
#include "gateway/smtp/ehlo_capabilities.hpp"

namespace relaygate::cli {
namespace {

namespace act = session::act;

class ExplainHooks final : public session::Hooks {
  public:
    ExplainHooks(ExplainRun& run, std::uint64_t unix_time) : run_(run), unix_time_(unix_time) {}

    double now() override {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    std::uint64_t unix_time() override { return unix_time_; }
    void on_transaction(const session::TransactionRecord& r) override {
        // The record of a transaction the client's own QUIT abandoned says
        // nothing about the message.
        if (!quitting) run_.record = r;
    }
    void on_decision(std::string_view, double) override {}
    void on_reply(int) override {}
    void on_dkim_result(const dkim::VerifyResult& r) override { run_.dkim.push_back(r); }
    void on_policy_decision(std::string_view point, const policy::Decision& d) override {
        run_.decisions.insert_or_assign(std::string(point), d);
    }

    bool quitting = false;

  private:
    ExplainRun& run_;
    std::uint64_t unix_time_;
};

session::UpstreamResult relay_reply(int code, std::string enhanced, std::string text) {
    session::UpstreamResult r;
    r.ok = true;
    r.reply = smtp::Reply{code, std::move(enhanced), {std::move(text)}};
    return r;
}

// The scripted relay accepts everything, so every refusal comes from the
// session itself.
session::UpstreamResult relay(const session::Action& a) {
    if (std::holds_alternative<act::UpstreamConnect>(a)) {
        session::UpstreamResult r;
        r.ok = true;
        r.reply = smtp::Reply{250, "", {"relay.explain.invalid", "8BITMIME", "SMTPUTF8"}};
        r.capabilities =
            std::make_shared<const smtp::EhloCapabilities>(smtp::parse_ehlo_capabilities(r.reply));
        return r;
    }
    if (const auto* c = std::get_if<act::UpstreamCommand>(&a))
        return c->step == session::UpstreamStep::data ? relay_reply(354, "", "go ahead")
                                                      : relay_reply(250, "2.0.0", "OK");
    if (std::holds_alternative<act::UpstreamCommit>(a))
        return relay_reply(250, "2.0.0", "OK: not relayed (relaygate explain)");
    session::UpstreamResult r;  // UpstreamWrite
    r.ok = true;
    return r;
}

// "250-a\r\n250 b\r\n" -> 250 and "250 b".
std::pair<int, std::string> last_line(const std::string& reply) {
    std::string_view s(reply);
    while (s.ends_with("\r\n"))
        s.remove_suffix(2);
    const auto nl = s.rfind('\n');
    std::string line(nl == std::string_view::npos ? s : s.substr(nl + 1));
    int code = 0;
    for (std::size_t i = 0; i < 3 && i < line.size(); ++i)
        code = code * 10 + (line[i] - '0');
    return {code, line};
}

struct Step {
    std::string bytes;
    int expect;  // the reply code that lets the client go on
};

}  // namespace

ExplainRun run_explain_session(const session::Settings& settings,
                               std::shared_ptr<const policy::Policy> policy,
                               const ExplainInput& input, const TxtResolver& resolve) {
    std::vector<Step> steps{{"EHLO explain.invalid\r\n", 250},
                            {"MAIL FROM:" + input.reverse_path + " SMTPUTF8\r\n", 250}};
    constexpr std::size_t kMailStep = 1;
    if (input.message) {
        steps.push_back({"RCPT TO:<Postmaster>\r\n", 250});
        steps.push_back({"DATA\r\n", 354});
        std::string data;
        smtp::DataWriter writer;
        writer.write(*input.message, data);
        data += writer.terminator();
        steps.push_back({std::move(data), 250});
    }
    steps.push_back({"QUIT\r\n", 221});
    const std::size_t quit_step = steps.size() - 1;

    ExplainRun run;
    ExplainHooks hooks(run, input.unix_time);
    session::SessionMachine m(settings, std::move(policy), {"explain", input.client_ip, 0}, hooks);
    auto& conn = m.connection_facts();
    conn.sasl_user = input.conn.sasl_user;
    conn.client_cert_sha256 = input.conn.client_cert_sha256;
    conn.client_spki_sha256 = input.conn.client_spki_sha256;

    ratelimit::MemoryStore store([] { return 0.0; }, 10000);
    std::size_t sent = 0;    // steps fed to the machine
    std::string last_reply;  // the last reply since the last step was fed
    for (int guard = 0; guard < 1'000'000; ++guard) {
        session::Action a = m.next();
        if (auto* out = std::get_if<act::SendClient>(&a)) {
            last_reply = std::move(out->bytes);
        } else if (std::holds_alternative<act::ReadClient>(a)) {
            if (sent > 0) {
                auto [code, line] = last_line(last_reply);
                if (sent - 1 == kMailStep) {
                    run.mail_code = code;
                    run.mail_reply = line;
                }
                if (code != steps[sent - 1].expect && sent <= quit_step) sent = quit_step;
            }
            if (sent >= steps.size()) {
                m.on_client_closed();
                continue;
            }
            if (sent == quit_step) hooks.quitting = true;
            last_reply.clear();
            m.on_client_data(steps[sent++].bytes);
        } else if (auto* c = std::get_if<act::CheckLimits>(&a)) {
            auto outcome = store.decide(c->request);
            run.limits.emplace_back(std::move(c->request), outcome);
            m.on_limits_result(outcome);
        } else if (auto* refund = std::get_if<act::RefundLimits>(&a)) {
            store.decide(refund->request);  // no result expected
        } else if (const auto* q = std::get_if<act::DnsLookup>(&a)) {
            dns::Answer answer = resolve(q->name);
            run.dns.emplace_back(q->name, answer);
            m.on_dns_result(answer);
        } else if (std::holds_alternative<act::StartTls>(a)) {
            m.on_tls_result(false, {});  // never offered: STARTTLS is off
        } else if (std::holds_alternative<act::VerifyAuth>(a)) {
            m.on_auth_result(false);  // never sent: AUTH facts come from --auth-user
        } else if (std::holds_alternative<act::Close>(a)) {
            return run;
        } else if (std::holds_alternative<act::UpstreamAbort>(a) ||
                   std::holds_alternative<act::UpstreamQuit>(a)) {
            // the scripted relay has nothing to close
        } else {
            m.on_upstream_result(relay(a));
        }
    }
    throw std::runtime_error("the session did not finish");
}

}  // namespace relaygate::cli
