#include "gateway/session/sasl.hpp"

#include "gateway/common/base64.hpp"

namespace relaygate::session {

using Kind = SaslExchange::Step::Kind;

SaslExchange::Step SaslExchange::fail(Reason r) {
    reset();
    Step s;
    s.kind = Kind::failed;
    s.reason = r;
    return s;
}

SaslExchange::Step SaslExchange::credentials(std::string user, std::string password) {
    reset();
    if (user.empty() || user.find('\0') != std::string::npos) return fail(Reason::auth_failed);
    Step s;
    s.kind = Kind::credentials;
    s.user = std::move(user);
    s.password = std::move(password);
    return s;
}

SaslExchange::Step SaslExchange::start(std::string_view mechanism,
                                       const std::optional<std::string>& initial_response) {
    reset();
    if (mechanism == "PLAIN") {
        state_ = State::plain;
        // RFC 4954 4: "=" is an empty initial response.
        if (initial_response) return respond(*initial_response == "=" ? "" : *initial_response);
        return Step{Kind::challenge, "", {}, {}, {}};
    }
    if (mechanism == "LOGIN") {
        state_ = State::login_user;
        if (initial_response) return respond(*initial_response);
        return Step{Kind::challenge, "VXNlcm5hbWU6", {}, {}, {}};  // "Username:"
    }
    return fail(Reason::auth_mechanism_unsupported);
}

SaslExchange::Step SaslExchange::respond(std::string_view line) {
    if (line == "*") return fail(Reason::auth_cancelled);  // RFC 4954 4: the client cancels
    auto decoded = base64_decode(line);
    if (!decoded) return fail(Reason::auth_bad_encoding);
    switch (state_) {
        case State::plain:
            return plain(*decoded);
        case State::login_user:
            user_ = std::move(*decoded);
            state_ = State::login_password;
            return Step{Kind::challenge, "UGFzc3dvcmQ6", {}, {}, {}};  // "Password:"
        case State::login_password:
            return credentials(std::move(user_), std::move(*decoded));
        case State::idle:
            break;
    }
    return fail(Reason::bad_sequence);
}

SaslExchange::Step SaslExchange::plain(std::string_view d) {
    // RFC 4616 2: [authzid] NUL authcid NUL passwd; authzid, if any, must be
    // the user itself (no proxy authorization).
    const auto a = d.find('\0');
    const auto b = a == std::string_view::npos ? a : d.find('\0', a + 1);
    if (b == std::string_view::npos || d.find('\0', b + 1) != std::string_view::npos)
        return fail(Reason::auth_bad_encoding);
    const std::string_view authz = d.substr(0, a), user = d.substr(a + 1, b - a - 1);
    if (!authz.empty() && authz != user) return fail(Reason::auth_failed);
    return credentials(std::string(user), std::string(d.substr(b + 1)));
}

}  // namespace relaygate::session
