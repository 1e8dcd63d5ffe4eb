// policy_url fetching: URL parsing, the signature check, the backoff and
// one HTTPS GET with Beast.
#include "gateway/server/policy_fetch.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <algorithm>
#include <vector>

#include "gateway/common/ascii.hpp"
#include "gateway/common/base64.hpp"
#include "gateway/server/tls_context.hpp"

namespace relaygate::server {

using namespace net;

std::optional<SignatureKey> SignatureKey::from_pem(std::string_view pem, std::string& error) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr, &EVP_PKEY_free);
    if (!key) {
        error = "not a PEM public key";
        return std::nullopt;
    }
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
        error = "not an Ed25519 key";
        return std::nullopt;
    }
    SignatureKey out;
    std::size_t size = out.key_.size();
    if (EVP_PKEY_get_raw_public_key(key.get(), out.key_.data(), &size) != 1 ||
        size != out.key_.size()) {
        error = "not an Ed25519 key";
        return std::nullopt;
    }
    if (sodium_init() < 0) {
        error = "libsodium cannot start";
        return std::nullopt;
    }
    // A point of small order, or outside the prime-order subgroup, is no
    // key anyone signs with (and libsodium refuses to multiply it).
    if (crypto_core_ed25519_is_valid_point(out.key_.data()) != 1) {
        error = "not a valid Ed25519 public key (a point of small order or outside the subgroup)";
        return std::nullopt;
    }
    return out;
}

SignatureKey::Check::Check() : hash_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {}

SignatureKey::Check SignatureKey::check(std::string_view signature) const {
    Check out;
    std::string raw(signature);
    if (raw.size() != out.signature_.size()) {
        // Base64, as `openssl base64` writes it: lines, then a newline.
        std::string text;
        for (char c : signature)
            if (!ascii::is_wsp(static_cast<unsigned char>(c)) && c != '\r' && c != '\n') text += c;
        raw = base64_decode(text).value_or("");
    }
    out.key_ = key_;
    out.usable_ = raw.size() == out.signature_.size() && out.hash_ &&
                  EVP_DigestInit_ex(out.hash_.get(), EVP_sha512(), nullptr) == 1;
    if (!out.usable_) return out;
    std::copy(raw.begin(), raw.end(), out.signature_.begin());
    // k = SHA-512(R || A || data): R is the signature's first half.
    out.update(std::string_view(raw.data(), 32));
    out.update(std::string_view(reinterpret_cast<const char*>(key_.data()), key_.size()));
    return out;
}

void SignatureKey::Check::update(std::string_view piece) {
    if (usable_) usable_ = EVP_DigestUpdate(hash_.get(), piece.data(), piece.size()) == 1;
}

// RFC 8032 5.1.7: S < L, and [S]B = R + [k]A, checked as the encoding of
// [S]B - [k]A being R's octets (the equation OpenSSL checks, without the
// cofactor). Every value is public: no constant time needed.
bool SignatureKey::Check::verify() {
    if (!usable_) return false;
    usable_ = false;  // once
    std::array<unsigned char, 64> digest{};
    unsigned size = 0;
    if (EVP_DigestFinal_ex(hash_.get(), digest.data(), &size) != 1 || size != digest.size())
        return false;
    const unsigned char* r = signature_.data();
    const unsigned char* s = signature_.data() + 32;
    // S reduced modulo L is S itself only when S < L.
    std::array<unsigned char, 64> wide{};
    std::copy(s, s + 32, wide.begin());
    std::array<unsigned char, 32> reduced{}, k{}, sb{}, ka{}, difference{};
    crypto_core_ed25519_scalar_reduce(reduced.data(), wide.data());
    if (!std::equal(reduced.begin(), reduced.end(), s)) return false;
    crypto_core_ed25519_scalar_reduce(k.data(), digest.data());
    return crypto_scalarmult_ed25519_base_noclamp(sb.data(), s) == 0 &&
           crypto_scalarmult_ed25519_noclamp(ka.data(), k.data(), key_.data()) == 0 &&
           crypto_core_ed25519_sub(difference.data(), sb.data(), ka.data()) == 0 &&
           std::equal(difference.begin(), difference.end(), r);
}

bool SignatureKey::verify(std::string_view data, std::string_view signature) const {
    auto c = check(signature);
    c.update(data);
    return c.verify();
}

std::chrono::milliseconds fetch_delay(std::chrono::seconds poll, std::chrono::seconds backoff_max,
                                      unsigned failures, double jitter) {
    using std::chrono::milliseconds;
    milliseconds delay = poll;
    const milliseconds cap = std::max<milliseconds>(poll, backoff_max);
    for (unsigned i = 1; i < failures && delay < cap; ++i)
        delay *= 2;
    delay = std::min(delay, cap);
    return delay + milliseconds(static_cast<std::int64_t>(static_cast<double>(delay.count()) * 0.2 *
                                                          std::clamp(jitter, 0.0, 1.0)));
}

namespace {

FetchResult failure(std::string_view kind, std::string error) {
    FetchResult r;
    r.kind = kind;
    r.error = std::move(error);
    return r;
}

std::string_view error_kind(const error_code& ec) {
    if (ec == beast::error::timeout) return "timeout";
    // Over TLS a connection closed early without close_notify is
    // stream_truncated: a body cut short looks like that.
    if (ec == http::error::partial_message || ec == http::error::end_of_stream ||
        ec == asio::ssl::error::stream_truncated)
        return "truncated";
    if (ec == http::error::body_limit) return "too_large";
    if (ec.category() == asio::error::get_ssl_category() ||
        ec.category() == asio::ssl::error::get_stream_category())
        return "tls";
    return "network";
}

}  // namespace

awaitable<FetchResult> https_get(asio::ssl::context& tls, FetchRequest request) {
    const auto ex = co_await asio::this_coro::executor;
    const std::string where = request.url.host + ":" + std::to_string(request.url.port);
    error_code ec;
    tcp::resolver resolver(ex);
    const auto endpoints =
        co_await resolver.async_resolve(request.url.host, std::to_string(request.url.port),
                                        asio::redirect_error(use_awaitable, ec));
    if (ec) co_return failure("network", "cannot resolve " + where + ": " + ec.message());

    beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
    expect_peer_name(stream.native_handle(),
                     request.verify_name.empty() ? request.url.host : request.verify_name);
    // One deadline for everything: a server that trickles its answer is as
    // broken as one that does not answer.
    beast::get_lowest_layer(stream).expires_after(request.timeout);
    const auto step = [&](std::string_view what) {
        return failure(error_kind(ec), std::string(what) + " " + where + ": " + ec.message());
    };
    co_await beast::get_lowest_layer(stream).async_connect(endpoints,
                                                           asio::redirect_error(use_awaitable, ec));
    if (ec) co_return step("cannot connect to");
    co_await stream.async_handshake(asio::ssl::stream_base::client,
                                    asio::redirect_error(use_awaitable, ec));
    if (ec) co_return step("TLS handshake with");

    http::request<http::empty_body> req{http::verb::get, request.url.target, 11};
    req.set(http::field::host, request.url.port == 443
                                   ? request.url.host
                                   : request.url.host + ":" + std::to_string(request.url.port));
    req.set(http::field::user_agent, "relaygate");
    req.set(http::field::accept, "application/json");
    if (!request.etag.empty()) req.set(http::field::if_none_match, request.etag);
    if (!request.bearer_token.empty())
        req.set(http::field::authorization, "Bearer " + request.bearer_token);
    req.keep_alive(false);
    co_await http::async_write(stream, req, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return step("cannot send the request to");

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(request.max_bytes);
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(use_awaitable, ec));
    if (ec) co_return step("cannot read the answer of");
    FetchResult out;
    out.http_status = parser.get().result_int();
    if (parser.get().result() == http::status::not_modified) {
        out.status = FetchResult::Status::not_modified;
        co_return out;
    }
    if (parser.get().result() != http::status::ok) {
        out.kind = "http";
        out.error = where + " answered HTTP " + std::to_string(out.http_status);
        co_return out;
    }
    out.etag = std::string(parser.get()[http::field::etag]);
    // The body in pieces of up to 64 KiB, each handed on before the next
    // is read.
    std::vector<char> piece(64 << 10);
    while (!parser.is_done()) {
        parser.get().body().data = piece.data();
        parser.get().body().size = piece.size();
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};  // the piece is full
        if (ec) co_return step("cannot read the answer of");
        const std::string_view got(piece.data(), piece.size() - parser.get().body().size);
        if (request.on_body)
            request.on_body(got);
        else
            out.body += got;
    }
    // The TLS close_notify is not waited for: the body is complete.
    beast::get_lowest_layer(stream).close();
    out.status = FetchResult::Status::ok;
    co_return out;
}

}  // namespace relaygate::server
