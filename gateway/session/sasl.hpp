// The SASL exchange of SMTP AUTH (RFC 4954) for PLAIN (RFC 4616) and LOGIN:
// it decodes what the client sends and yields a user name and a password.
// It never checks a password; the session asks its runner to (VerifyAuth).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/common/reason.hpp"

namespace relaygate::session {

class SaslExchange {
  public:
    // What the session does next.
    struct Step {
        enum class Kind : std::uint8_t {
            challenge,    // send "334 <challenge>" and read the response
            credentials,  // the exchange is over: verify user + password
            failed,       // the exchange is over: reply `reason`
        };
        Kind kind = Kind::failed;
        std::string challenge;  // base64, may be empty
        std::string user;
        std::string password;
        Reason reason = Reason::auth_failed;
    };

    // AUTH <mechanism> [initial-response] (the mechanism upper-cased).
    Step start(std::string_view mechanism, const std::optional<std::string>& initial_response);
    // A response line to the last challenge.
    Step respond(std::string_view line);
    // A challenge is outstanding: the next line is a response, not a command.
    bool active() const { return state_ != State::idle; }
    void reset() { *this = SaslExchange{}; }

  private:
    enum class State : std::uint8_t { idle, plain, login_user, login_password };
    Step plain(std::string_view decoded);
    Step credentials(std::string user, std::string password);
    Step fail(Reason r);

    State state_ = State::idle;
    std::string user_;  // LOGIN: the user name, while the password is asked
};

}  // namespace relaygate::session
