#include "gateway/server/policy_poller.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "gateway/common/file.hpp"
#include "gateway/common/sha256.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/server/callback_awaitable.hpp"
#include "gateway/server/log.hpp"
#include "gateway/server/policy_holder.hpp"
#include "gateway/server/tls_context.hpp"

namespace relaygate::server {

using namespace net;

namespace {
// Beside the cached policy: the ETag it was served with and its signature.
std::filesystem::path beside(const std::string& cache, std::string_view suffix) {
    return cache + std::string(suffix);
}
constexpr std::uint64_t kMaxSignatureBytes = 4096;
// The bundle is read back in pieces of this size to hash and check it.
constexpr std::size_t kPieceSize = 64 << 10;
}  // namespace

Result<PolicyUrlSetup, std::string> policy_url_setup(const config::Config& config) {
    const auto& options = config.policy_fetch;
    PolicyUrlSetup out;
    auto url = parse_https_url(config.policy_url);
    auto signature_url = parse_https_url(options.signature_url);
    if (!url || !signature_url)
        return unexpected("not an https URL: " + (url ? options.signature_url : config.policy_url));
    out.url = std::move(*url);
    out.signature_url = std::move(*signature_url);
    std::string error;
    out.tls = make_verifying_client_context(options.ca_file, error);
    if (!out.tls) return unexpected("policy_fetch.ca_file: " + error);
    if (!options.public_key_file.empty()) {
        const auto pem = read_file(options.public_key_file);
        error = "cannot read it";
        if (pem) out.key = SignatureKey::from_pem(*pem, error);
        if (!out.key)
            return unexpected("policy_fetch.public_key_file " + options.public_key_file + ": " +
                              error);
    }
    return out;
}

PolicyPoller::PolicyPoller(const config::Config& config, PolicyUrlSetup setup, PolicyHolder& holder,
                           metrics::Metrics& metrics, asio::thread_pool& loader)
    : options_(config.policy_fetch),
      url_text_(config.policy_url),
      holder_(holder),
      metrics_(metrics),
      loader_(loader),
      setup_(std::move(setup)) {
    metrics_.policy_fetch_start();
}

// The cached copy was checked when it was fetched; its signature is
// checked again, so a copy from before a key rotation is not served. The
// bytes are hashed and checked a piece at a time, never held whole; the
// policy is then loaded in ranges from the same descriptor.
bool PolicyPoller::load_cache() {
    const int fd = ::open(options_.cache_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = load_cache(fd);
    ::close(fd);
    return ok;
}

bool PolicyPoller::load_cache(int fd) {
    std::optional<SignatureKey::Check> check;
    if (setup_.key) {
        if (const auto signature = read_file(beside(options_.cache_file, ".sig")))
            check.emplace(setup_.key->check(*signature));
    }
    Sha256 hash;
    if (!read_pieces(fd, kPieceSize, [&](std::string_view piece) {
            hash.update(piece);
            if (check) check->update(piece);
            return true;
        }))
        return false;
    if (setup_.key && !(check && check->verify())) {
        log_warn("policy_cache_rejected",
                 {{"file", options_.cache_file},
                  {"reason", "its signature does not verify with policy_fetch.public_key_file"}});
        return false;
    }
    const auto digest = hash.raw();
    log_info("policy_cache_loading", {{"file", options_.cache_file}, {"url", url_text_}});
    if (!holder_.reload_descriptor(fd, options_.cache_file, options_.cache_file)) return false;
    etag_ = read_file(beside(options_.cache_file, ".etag")).value_or("");
    digest_ = digest;
    return true;
}

bool PolicyPoller::start_up() {
    if (load_cache()) return true;
    asio::io_context io(1);
    auto guard = asio::make_work_guard(io);
    bool loaded = false;
    asio::co_spawn(io, fetch_once(), [&](std::exception_ptr e, bool ok) {
        loaded = !e && ok;
        guard.reset();
    });
    io.run();
    return loaded;
}

void PolicyPoller::start(asio::any_io_executor ex) {
    timer_.emplace(ex);
    asio::co_spawn(ex, loop(), log_exception("policy_url poller"));
}

void PolicyPoller::fetch_now() {
    if (timer_) asio::post(timer_->get_executor(), [this] { timer_->cancel(); });
}

void PolicyPoller::stop() {
    if (!timer_) return;
    asio::post(timer_->get_executor(), [this] {
        stopped_ = true;
        timer_->cancel();
    });
}

awaitable<void> PolicyPoller::loop() {
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    while (!stopped_) {
        timer_->expires_after(
            fetch_delay(options_.poll, options_.backoff_max, failures_, jitter(jitter_)));
        error_code ec;  // operation_aborted: fetch_now() or stop()
        co_await timer_->async_wait(asio::redirect_error(use_awaitable, ec));
        if (stopped_) break;
        failures_ = co_await fetch_once() ? 0 : failures_ + 1;
    }
}

awaitable<bool> PolicyPoller::fail(std::string_view kind, const std::string& error) {
    metrics_.policy_fetch(kind);
    holder_.set_error(error);
    log_warn("policy_fetch_failed", {{"url", url_text_},
                                     {"result", kind},
                                     {"error", error},
                                     {"failures_in_a_row", failures_ + 1},
                                     {"keeping_previous", holder_.get() != nullptr}});
    co_return false;
}

awaitable<bool> PolicyPoller::fetch_once() {
    FetchRequest request{setup_.url,       options_.verify_name, etag_, {},
                         options_.timeout, options_.max_bytes,   {}};
    if (!options_.bearer_token_file.empty()) {
        // Re-read every time: a rotated token (a projected service account
        // token, a Secret) is used from the next fetch on.
        auto token = read_secret_file(options_.bearer_token_file);
        if (!token || token->empty())
            co_return co_await fail("token", "cannot read policy_fetch.bearer_token_file " +
                                                 options_.bearer_token_file);
        request.bearer_token = std::move(*token);
    }
    // The body goes to the cache's temporary file as it arrives, hashed on
    // the way: 30 MB at 100k tenants is never held in memory.
    StagedWriter body(options_.cache_file);
    Sha256 hash;
    request.on_body = [&](std::string_view piece) {
        hash.update(piece);
        body.append(piece);
    };
    auto result = co_await https_get(*setup_.tls, request);
    if (result.status == FetchResult::Status::failed)
        co_return co_await fail(result.kind, url_text_ + ": " + result.error);
    if (result.status == FetchResult::Status::not_modified) {
        metrics_.policy_fetch("not_modified");
        holder_.set_error("");
        co_return true;
    }

    const auto digest = hash.raw();
    if (digest == digest_) {
        etag_ = result.etag;
        metrics_.policy_fetch("unchanged");
        holder_.set_error("");
        co_return true;
    }
    body.finish();
    if (body.lost())
        co_return co_await fail("cache", url_text_ + ": the body was not kept: " + body.error());
    if (body.file() < 0) log_warn("policy_cache_write_failed", {{"error", body.error()}});

    std::string signature;
    if (setup_.key) {
        request.url = setup_.signature_url;
        request.etag.clear();
        request.max_bytes = kMaxSignatureBytes;
        request.on_body = nullptr;
        auto sig = co_await https_get(*setup_.tls, request);
        if (sig.status != FetchResult::Status::ok)
            co_return co_await fail(sig.status == FetchResult::Status::failed ? sig.kind : "http",
                                    options_.signature_url + ": " + sig.error);
        auto check = setup_.key->check(sig.body);
        if (body.file() < 0)
            check.update(body.memory());
        else if (!read_pieces(body.file(), kPieceSize, [&](std::string_view piece) {
                     check.update(piece);
                     return true;
                 }))
            co_return co_await fail("cache", url_text_ + ": cannot read " +
                                                 staged_path(options_.cache_file).string() +
                                                 " back to check its signature");
        if (!check.verify())
            co_return co_await fail("bad_signature",
                                    url_text_ + ": the signature at " + options_.signature_url +
                                        " does not verify with policy_fetch.public_key_file");
        signature = std::move(sig.body);
    }

    // Parsing 100k tenants takes seconds: on the loader thread, like a
    // file reload. The cache is written there too, only for a policy that
    // loaded, so it always holds the policy being served.
    const bool loaded = co_await await_callback<bool>([&](auto done) {
        asio::post(loader_, [this, &body, &result, &signature, done = std::move(done)]() mutable {
            done(load_fetched(body, signature, result.etag));
        });
    });
    if (!loaded) {
        metrics_.policy_fetch("invalid");
        log_warn("policy_fetch_failed", {{"url", url_text_},
                                         {"result", "invalid"},
                                         {"failures_in_a_row", failures_ + 1},
                                         {"keeping_previous", holder_.get() != nullptr}});
        co_return false;
    }
    etag_ = result.etag;
    digest_ = digest;
    metrics_.policy_fetch("updated");
    co_return true;
}

bool PolicyPoller::load_fetched(StagedWriter& body, const std::string& signature,
                                const std::string& etag) {
    // Loaded in ranges through the descriptor the body was written with (the
    // bytes whose signature was checked, whatever happens to the name
    // meanwhile); from memory when the cache could not be written.
    if (body.file() < 0) return holder_.reload_text(body.memory(), url_text_);
    if (!holder_.reload_descriptor(body.file(), staged_path(options_.cache_file), url_text_))
        return false;
    // Signature, policy, ETag: a crash between two writes leaves a policy
    // whose signature does not verify (refused at start, fetched again) or
    // an old ETag (fetched again), never an unsigned policy served or a
    // stale one taken for current.
    std::string error;
    const bool cached =
        (!setup_.key || replace_file(beside(options_.cache_file, ".sig"), signature, error)) &&
        body.commit(error) && replace_file(beside(options_.cache_file, ".etag"), etag, error);
    if (!cached) log_warn("policy_cache_write_failed", {{"error", error}});
    return true;
}

}  // namespace relaygate::server
