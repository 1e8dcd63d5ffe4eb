// Verifier: turns each DKIM-Signature into its header hash input at header
// time, streams the body once per distinct (canon, l=), and decides each
// signature when the keys are in (RFC 6376 6.1). Crypto through OpenSSL EVP;
// no I/O, no clock, no exceptions.
#include "gateway/dkim/verifier.hpp"

#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>

#include "gateway/common/ascii.hpp"
#include "gateway/dkim/key_record.hpp"
#include "gateway/dkim/openssl.hpp"

namespace relaygate::dkim {

namespace {

constexpr std::string_view kSignatureField = "DKIM-Signature";

std::string_view strip_crlf(std::string_view s) {
    if (s.ends_with("\r\n")) s.remove_suffix(2);
    return s;
}

std::string sha256(std::string_view data) {
    std::string out(EVP_MAX_MD_SIZE, '\0');
    unsigned int n = 0;
    if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n,
                   EVP_sha256(), nullptr) != 1)
        return {};
    out.resize(n);
    return out;
}

// RFC 6376 3.7 with rsa-sha256 (PKCS#1 v1.5 over SHA-256 of the data) or
// RFC 8463 3 (Ed25519 over the SHA-256 of the data, i.e. the data is hashed
// once more than for RSA before the pure-EdDSA verify).
bool verify_signature(const PublicKey& key, std::string_view header_data,
                      std::string_view signature) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) return false;
    bool ok = false;
    const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
    if (key.algorithm == Algorithm::rsa_sha256) {
        EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
        ok = EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.key.get()) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_DigestVerify(ctx.get(), sig, signature.size(),
                              reinterpret_cast<const unsigned char*>(header_data.data()),
                              header_data.size()) == 1;
    } else {
        const std::string digest = sha256(header_data);
        ok = !digest.empty() &&
             EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.key.get()) == 1 &&
             EVP_DigestVerify(ctx.get(), sig, signature.size(),
                              reinterpret_cast<const unsigned char*>(digest.data()),
                              digest.size()) == 1;
    }
    // A failed verify leaves entries on the thread's error queue; they are
    // not errors of whoever calls OpenSSL next on this thread.
    ERR_clear_error();
    return ok;
}

// RFC 6376 3.6.1 t=s: i= must use exactly the d= domain, not a subdomain.
bool strict_identity_violated(std::string_view txt, const Signature& s) {
    if (s.identity.empty()) return false;
    auto tags = parse_tag_list(txt);
    if (!tags) return false;
    for (const auto& t : *tags) {
        if (t.name != "t") continue;
        std::string_view v = t.value;
        bool strict = false;
        while (true) {
            const auto colon = v.find(':');
            const std::string_view flag = ascii::trim_wsp(v.substr(0, colon));
            if (flag == "s") strict = true;
            if (colon == std::string_view::npos) break;
            v.remove_prefix(colon + 1);
        }
        if (!strict) return false;
        const auto at = s.identity.rfind('@');
        return ascii::lower(std::string_view(s.identity).substr(at + 1)) != s.domain;
    }
    return false;
}

}  // namespace

std::string_view to_string(Status s) {
    switch (s) {
        case Status::pass:
            return "pass";
        case Status::fail:
            return "fail";
        case Status::temperror:
            return "temperror";
        case Status::permerror:
            return "permerror";
    }
    return "permerror";
}

Verifier::Verifier(std::size_t max_signatures) : max_signatures_(max_signatures) {}

void Verifier::on_header(std::string_view header_section,
                         const std::vector<message::HeaderField>& fields) {
    entries_.clear();
    bodies_.clear();
    keys_.clear();
    body_done_ = false;

    auto raw = [&](const message::HeaderField& f) -> std::optional<std::string_view> {
        if (f.offset > header_section.size() || f.length > header_section.size() - f.offset)
            return std::nullopt;
        return header_section.substr(f.offset, f.length);
    };

    for (const auto& field : fields) {
        if (entries_.size() >= max_signatures_) break;
        if (!ascii::iequals(field.name, kSignatureField)) continue;
        Entry e;
        const auto sig_field = raw(field);
        if (!sig_field) {
            e.error = "field outside the header section";
            entries_.push_back(std::move(e));
            continue;
        }
        const std::string_view field_text = strip_crlf(*sig_field);
        const auto colon = field_text.find(':');
        auto parsed = parse_signature(
            colon == std::string_view::npos ? std::string_view{} : field_text.substr(colon + 1));
        if (!parsed) {
            e.error = parsed.error();
            entries_.push_back(std::move(e));
            continue;
        }
        const Signature& s = parsed.value();

        // RFC 6376 5.4.2: for a name listed n times, the last n instances are
        // signed, bottom-up; a name with no instance left contributes nothing.
        // One stack of instances per name keeps this linear in h= and fields.
        std::map<std::string, std::vector<std::size_t>, std::less<>> instances;
        for (const auto& name : s.signed_headers)
            instances.try_emplace(name);
        for (std::size_t i = 0; i < fields.size(); ++i) {
            const auto it = instances.find(ascii::lower(fields[i].name));
            if (it != instances.end()) it->second.push_back(i);
        }
        for (const auto& name : s.signed_headers) {
            auto& stack = instances.find(name)->second;
            if (stack.empty()) continue;
            if (const auto r = raw(fields[stack.back()]))
                e.header_data += canonicalize_header(s.header_canon, *r);
            stack.pop_back();
        }
        // RFC 6376 3.7: then the signature field itself, b= empty, no final CRLF.
        e.header_data += canonicalize_header(s.header_canon, without_b_value(field_text));

        const auto body = std::find_if(bodies_.begin(), bodies_.end(), [&](const Body& b) {
            return b.canon == s.body_canon && b.length == s.length;
        });
        if (body == bodies_.end()) {
            bodies_.push_back(
                Body{s.body_canon, s.length, BodyHasher(s.body_canon, s.length), {}, 0});
            e.body = bodies_.size() - 1;
        } else {
            e.body = static_cast<std::size_t>(body - bodies_.begin());
        }
        e.key_name = key_query_name(s);
        e.signature = std::move(parsed).value();
        entries_.push_back(std::move(e));
    }
}

void Verifier::on_body(std::string_view chunk) {
    if (body_done_) return;
    for (auto& b : bodies_)
        b.hasher.update(chunk);
}

void Verifier::on_body_end() {
    if (body_done_) return;
    for (auto& b : bodies_) {
        b.digest = b.hasher.finish();
        b.canonical_size = b.hasher.canonical_size();
    }
    body_done_ = true;
}

std::vector<std::string> Verifier::key_queries() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) {
        if (!e.signature || keys_.contains(e.key_name)) continue;
        if (std::find(out.begin(), out.end(), e.key_name) == out.end()) out.push_back(e.key_name);
    }
    return out;
}

void Verifier::on_key(std::string_view key_name, const KeyLookup& lookup) {
    std::string name = ascii::lower(key_name);
    if (name.ends_with('.')) name.pop_back();  // a fully-qualified name is the same name
    for (const auto& e : entries_) {
        if (e.signature && e.key_name == name) {
            keys_[name] = lookup;
            return;
        }
    }
}

std::vector<VerifyResult> Verifier::results(std::uint64_t now) const {
    std::vector<VerifyResult> out;
    out.reserve(entries_.size());
    for (const auto& e : entries_)
        out.push_back(verify(e, now));
    return out;
}

VerifyResult Verifier::verify(const Entry& e, std::uint64_t now) const {
    VerifyResult r;
    auto done = [&](Status status, std::string detail) {
        r.status = status;
        r.detail = std::move(detail);
        return r;
    };
    if (!e.signature) return done(Status::permerror, e.error);
    const Signature& s = *e.signature;
    r.domain = s.domain;
    r.selector = s.selector;
    r.key_name = e.key_name;
    r.length_limited = s.length.has_value();

    // RFC 6376 3.5 x=: past the expiration the signature is not valid.
    if (s.expiration && now > *s.expiration) return done(Status::fail, "signature expired");

    // RFC 6376 6.1.2: no key is PERMFAIL, a failed lookup TEMPFAIL.
    const auto key_it = keys_.find(e.key_name);
    if (key_it == keys_.end()) return done(Status::temperror, "key lookup missing");
    const KeyLookup& lookup = key_it->second;
    r.key_cname_target = lookup.cname_target;
    if (lookup.outcome == KeyLookup::Outcome::error)
        return done(Status::temperror, "key lookup failed");
    if (lookup.outcome == KeyLookup::Outcome::not_found || lookup.txt.empty())
        return done(Status::permerror, "no key record");

    // More than one record: the first usable one counts (6.1.2 leaves it open).
    std::optional<PublicKey> key;
    std::string key_error;
    for (const auto& txt : lookup.txt) {
        auto k = parse_key_record(txt, s.algorithm);
        if (k) {
            if (strict_identity_violated(txt, s)) {
                if (key_error.empty()) key_error = "i= domain is not d= (key t=s)";
                continue;
            }
            key.emplace(std::move(k).value());
            break;
        }
        if (key_error.empty()) key_error = k.error();
    }
    if (!key) return done(Status::permerror, key_error);

    if (!body_done_) return done(Status::temperror, "body incomplete");
    const Body& body = bodies_[e.body];
    // l= larger than the body: the signer did not sign this body (opendkim
    // treats it as an invalid signature too).
    if (s.length && *s.length > body.canonical_size)
        return done(Status::fail, "l= exceeds body length");
    if (body.digest.empty() || body.digest != s.body_hash)
        return done(Status::fail, "body hash mismatch");

    if (!verify_signature(*key, e.header_data, s.signature))
        return done(Status::fail, "bad signature");
    return done(Status::pass, "");
}

}  // namespace relaygate::dkim
