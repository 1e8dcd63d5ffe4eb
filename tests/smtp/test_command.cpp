// Tests for gateway/smtp/command: verbs, arguments, ESMTP parameters, the
// error kinds and the replies they map to, and RFC 5321 D.1 fed through the
// LineFramer at every split point.
#include "gateway/smtp/command.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gateway/smtp/line_framer.hpp"
#include "tests/smtp/split_feed.hpp"

using namespace relaygate;
using namespace relaygate::smtp;

namespace {

const ParseOptions kUtf8{true, false};

CommandErrorKind err(std::string_view line, const ParseOptions& o = {}) {
    auto r = parse_command(line, o);
    REQUIRE_FALSE(r.ok());
    return r.error().kind;
}

}  // namespace

TEST_CASE("verbs are case-insensitive and exact") {
    struct Row {
        const char* line;
        Verb verb;
    };
    for (auto row : {Row{"EHLO a.example", Verb::ehlo},
                     Row{"ehlo a.example", Verb::ehlo},
                     Row{"HeLo a.example", Verb::helo},
                     Row{"MAIL FROM:<a@b.example>", Verb::mail},
                     Row{"mail from:<a@b.example>", Verb::mail},
                     Row{"RCPT TO:<a@b.example>", Verb::rcpt},
                     Row{"rcpt to:<a@b.example>", Verb::rcpt},
                     Row{"DATA", Verb::data},
                     Row{"data", Verb::data},
                     Row{"RSET", Verb::rset},
                     Row{"NOOP", Verb::noop},
                     Row{"NOOP anything at all", Verb::noop},
                     Row{"QUIT", Verb::quit},
                     Row{"STARTTLS", Verb::starttls},
                     Row{"starttls", Verb::starttls},
                     Row{"AUTH PLAIN", Verb::auth},
                     Row{"VRFY smith", Verb::vrfy},
                     Row{"EXPN staff", Verb::expn},
                     Row{"HELP", Verb::help},
                     Row{"HELP MAIL", Verb::help}}) {
        CAPTURE(std::string(row.line));
        auto r = parse_command(row.line);
        REQUIRE(r.ok());
        CHECK(r->verb == row.verb);
    }
    CHECK(parse_command("HELP MAIL")->argument == "MAIL");
    CHECK(parse_command("VRFY <smith@x>")->argument == "<smith@x>");
}

TEST_CASE("unknown and unimplemented verbs") {
    for (const char* l : {"", " ", "FOO", "EHLOX a", "MAILFROM:<a@b>", "MAIL\tFROM:<a@b>", "DAT",
                          "DATA\x01", "\x80"}) {
        CAPTURE(std::string(l));
        auto r = parse_command(l);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == CommandErrorKind::unknown_verb);
        CHECK(reason(r.error()) == Reason::syntax_error);
        CHECK(info(reason(r.error())).smtp_code == 500);
    }
    for (const char* l :
         {"TURN", "etrn example.com", "BDAT 100 LAST", "XCLIENT ADDR=1.2.3.4", "SEND FROM:<a@b>"}) {
        CAPTURE(std::string(l));
        auto r = parse_command(l);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == CommandErrorKind::not_implemented);
        CHECK(info(reason(r.error())).smtp_code == 502);
    }
    CHECK(parse_command("xclient NAME=x").error().detail == "XCLIENT");
}

TEST_CASE("commands without arguments take none") {
    for (const char* l : {"DATA ", "DATA x", "RSET ", "QUIT now", "STARTTLS x", "STARTTLS "}) {
        CAPTURE(std::string(l));
        auto r = parse_command(l);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == CommandErrorKind::bad_syntax);
        REQUIRE(r.error().verb.has_value());
        CHECK(info(reason(r.error())).smtp_code == 501);
    }
    CHECK(err("VRFY") == CommandErrorKind::bad_syntax);
    CHECK(err("VRFY ") == CommandErrorKind::bad_syntax);
    CHECK(err("EXPN") == CommandErrorKind::bad_syntax);
    CHECK(err("NOOP ") == CommandErrorKind::bad_syntax);
    CHECK(err("HELP \xc3\xa4") == CommandErrorKind::bad_syntax);
    CHECK(err("NOOP\ta") == CommandErrorKind::unknown_verb);  // "NOOP\ta" is the verb token
    CHECK(err("NOOP a\tb") == CommandErrorKind::bad_syntax);
}

TEST_CASE("EHLO and HELO arguments (RFC 5321 4.1.1.1)") {
    auto e = parse_command("EHLO Mail.Example.COM");
    REQUIRE(e.ok());
    CHECK(e->helo_domain == "mail.example.com");
    CHECK_FALSE(e->helo_literal);
    e = parse_command("EHLO [192.0.2.7]");
    REQUIRE(e.ok());
    CHECK(e->helo_literal);
    CHECK(e->helo_domain == "[192.0.2.7]");
    CHECK(parse_command("EHLO [IPv6:2001:DB8::7]")->helo_domain == "[IPv6:2001:db8::7]");
    CHECK(parse_command("EHLO localhost")->helo_domain == "localhost");
    CHECK(parse_command("EHLO xn--bcher-kva.example")->helo_domain == "xn--bcher-kva.example");

    CHECK(err("EHLO") == CommandErrorKind::bad_syntax);
    CHECK(err("EHLO ") == CommandErrorKind::bad_syntax);
    CHECK(err("EHLO  a.example") == CommandErrorKind::bad_syntax);
    CHECK(err("EHLO a.example ") == CommandErrorKind::bad_syntax);
    CHECK(err("EHLO a.example b") == CommandErrorKind::bad_syntax);
    CHECK(err("EHLO a_b.example") == CommandErrorKind::bad_domain);
    CHECK(err("EHLO a.example.") == CommandErrorKind::bad_domain);
    CHECK(err("EHLO [1.2.3.999]") == CommandErrorKind::bad_domain);
    CHECK(err("EHLO b\xc3\xbc"
              "cher.example",
              kUtf8) == CommandErrorKind::bad_domain);
    CHECK(err("HELO [192.0.2.7]") == CommandErrorKind::bad_domain);  // HELO: Domain only
    CHECK(parse_command("HELO a.example")->helo_domain == "a.example");
    CHECK(info(reason(parse_command("EHLO -x").error())).smtp_code == 501);
}

TEST_CASE("MAIL FROM: paths and the single space after the colon") {
    auto m = parse_command("MAIL FROM:<Smith@Bar.com>");
    REQUIRE(m.ok());
    CHECK(m->path.local_part == "Smith");
    CHECK(m->path.domain == "bar.com");
    CHECK(m->path.mailbox() == "Smith@bar.com");
    CHECK_FALSE(m->mail.size.has_value());

    // Decision: one SP after the colon is tolerated (see command.hpp).
    CHECK(parse_command("MAIL FROM: <a@b.example>")->path.domain == "b.example");
    CHECK(parse_command("RCPT TO: <a@b.example>")->path.domain == "b.example");
    CHECK(parse_command("MAIL FROM:<>")->path.null);
    CHECK(parse_command("MAIL FROM: <>")->path.null);

    CHECK(err("MAIL FROM:  <a@b.example>") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM :<a@b.example>") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL  FROM:<a@b.example>") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM<a@b.example>") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL TO:<a@b.example>") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM:a@b.example") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM:<a@b.example> ") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example>x") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM:<a@b.example>>") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM:<a@b.example> <c@d.example>") == CommandErrorKind::bad_syntax);

    auto sr = parse_command("MAIL FROM:<@relay.example:a@b.example>");
    REQUIRE_FALSE(sr.ok());
    CHECK(sr.error().path_error == PathError::source_route);
    CHECK(reason(sr.error()) == Reason::bad_sender_syntax);
    auto rq = parse_command("RCPT TO:<\"a@b\"@c.example>");
    REQUIRE_FALSE(rq.ok());
    CHECK(rq.error().path_error == PathError::quoted_at);
    CHECK(reason(rq.error()) == Reason::bad_recipient_syntax);
    CHECK(info(reason(rq.error())).enhanced == "5.1.3");
    auto tl = parse_command("MAIL FROM:<" + std::string(65, 'x') + "@b.example>");
    REQUIRE_FALSE(tl.ok());
    CHECK(reason(tl.error()) == Reason::path_too_long);
    // A quoted local-part with a space is one path, not path + parameter.
    auto q = parse_command("MAIL FROM:<\"a b\"@c.example> SIZE=10");
    REQUIRE(q.ok());
    CHECK(q->path.local_part == "\"a b\"");
    CHECK(q->mail.size == 10u);
}

TEST_CASE("MAIL parameters (RFC 1870, 6152, 6531, 4954)") {
    auto m = parse_command("MAIL FROM:<a@b.example> SIZE=12345 BODY=8bitmime AUTH=<>");
    REQUIRE(m.ok());
    CHECK(m->mail.size == 12345u);
    CHECK(m->mail.body == Body::eight_bit_mime);
    CHECK(m->mail.auth == "<>");
    CHECK(parse_command("MAIL FROM:<a@b.example> body=7BIT")->mail.body == Body::seven_bit);
    CHECK(parse_command("MAIL FROM:<a@b.example> size=0")->mail.size == 0u);
    CHECK(parse_command("MAIL FROM:<a@b.example> SIZE=18446744073709551615")->mail.size ==
          18446744073709551615ull);
    // Over UINT64_MAX saturates; over 20 digits is malformed.
    CHECK(parse_command("MAIL FROM:<a@b.example> SIZE=99999999999999999999")->mail.size ==
          18446744073709551615ull);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=999999999999999999999") ==
          CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=-1") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=1k") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> SIZE") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> BODY=BINARYMIME") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example>  SIZE=1") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=1 ") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> =1") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> -X=1") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> X_Y=1") == CommandErrorKind::bad_syntax);
    CHECK(err("MAIL FROM:<a@b.example> X=a=b") == CommandErrorKind::bad_syntax);

    auto dup = parse_command("MAIL FROM:<a@b.example> SIZE=1 size=2");
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.error().kind == CommandErrorKind::duplicate_parameter);
    CHECK(dup.error().detail == "SIZE");
    CHECK(info(reason(dup.error())).smtp_code == 501);

    // A bad path is reported before a parameter problem.
    CHECK(err("MAIL FROM:<a@@b.example> RET=HDRS") == CommandErrorKind::bad_path);
    CHECK(err("MAIL FROM:<a@b.example> SIZE=1 SIZE=2 RET=HDRS") ==
          CommandErrorKind::duplicate_parameter);
    auto unk = parse_command("MAIL FROM:<a@b.example> RET=HDRS");
    REQUIRE_FALSE(unk.ok());
    CHECK(unk.error().kind == CommandErrorKind::unknown_parameter);
    CHECK(unk.error().detail == "RET");
    CHECK(info(reason(unk.error())).smtp_code == 555);

    // AUTH= is xtext (RFC 3461 4).
    CHECK(parse_command("MAIL FROM:<a@b.example> AUTH=e+3Dmc2@example.com")->mail.auth ==
          "e=mc2@example.com");
    CHECK(err("MAIL FROM:<a@b.example> AUTH=e+3dmc2@example.com") ==
          CommandErrorKind::bad_parameter_value);  // lower-case hex
    CHECK(err("MAIL FROM:<a@b.example> AUTH=a+0") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> AUTH=a+00") == CommandErrorKind::bad_parameter_value);
    CHECK(err("MAIL FROM:<a@b.example> AUTH") == CommandErrorKind::bad_parameter_value);

    // Too many parameters.
    std::string many = "MAIL FROM:<a@b.example>";
    for (int i = 0; i < 17; ++i)
        many += " X" + std::to_string(i);
    CHECK(err(many) == CommandErrorKind::bad_syntax);
}

TEST_CASE("SMTPUTF8 (RFC 6531)") {
    // Not offered: the parameter is unknown, UTF-8 paths need it.
    CHECK(err("MAIL FROM:<a@b.example> SMTPUTF8") == CommandErrorKind::unknown_parameter);
    auto no = parse_command("MAIL FROM:<j\xc3\xb6rg@b.example>", kUtf8);
    REQUIRE_FALSE(no.ok());
    CHECK(no.error().path_error == PathError::utf8_not_allowed);
    CHECK(reason(no.error()) == Reason::smtputf8_required);

    auto m = parse_command(
        "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc"
        "cher.example> SMTPUTF8",
        kUtf8);
    REQUIRE(m.ok());
    CHECK(m->mail.smtputf8);
    CHECK(m->path.domain == "xn--bcher-kva.example");
    CHECK(err("MAIL FROM:<a@b.example> SMTPUTF8=yes", kUtf8) ==
          CommandErrorKind::bad_parameter_value);

    // RCPT follows the transaction.
    CHECK(err("RCPT TO:<j\xc3\xb6rg@b.example>", kUtf8) == CommandErrorKind::bad_path);
    CHECK(parse_command("RCPT TO:<j\xc3\xb6rg@b.example>", ParseOptions{true, true}).ok());
    CHECK(err("RCPT TO:<j\xc3\xb6rg@b.example>", ParseOptions{false, true}) ==
          CommandErrorKind::bad_path);
}

TEST_CASE("RCPT TO: paths and generic parameters") {
    auto r = parse_command("RCPT TO:<Jones@foo.com>");
    REQUIRE(r.ok());
    CHECK(r->path.domain == "foo.com");
    CHECK(r->rcpt_params.empty());
    CHECK(parse_command("RCPT TO:<Postmaster>")->path.postmaster);
    CHECK(parse_command("RCPT TO:<>").error().path_error == PathError::null_not_allowed);

    auto p = parse_command("RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE orcpt=rfc822;a+40b X-FOO");
    REQUIRE(p.ok());
    REQUIRE(p->rcpt_params.size() == 3);
    CHECK(p->rcpt_params[0].keyword == "NOTIFY");
    CHECK(p->rcpt_params[0].value == "SUCCESS,FAILURE");
    CHECK(p->rcpt_params[1].keyword == "ORCPT");
    CHECK(p->rcpt_params[1].value == "rfc822;a+40b");
    CHECK(p->rcpt_params[2].keyword == "X-FOO");
    CHECK_FALSE(p->rcpt_params[2].value.has_value());
    CHECK(err("RCPT TO:<a@b.example> NOTIFY=NEVER notify=NEVER") ==
          CommandErrorKind::duplicate_parameter);
    CHECK(err("RCPT TO:<a@b.example> X=\xc3\xa4") == CommandErrorKind::bad_syntax);
    CHECK(parse_command("RCPT TO:<a@b.example> X=\xc3\xa4", ParseOptions{true, true}).ok());
    CHECK(err("RCPT TO:<a@b.example> X=\xc3", ParseOptions{true, true}) ==
          CommandErrorKind::bad_syntax);
    CHECK(err("RCPT TO:a@b.example") == CommandErrorKind::bad_path);
    CHECK(err("RCPT TO:<a@b.example") == CommandErrorKind::bad_path);
    CHECK(err("RCPT FROM:<a@b.example>") == CommandErrorKind::bad_syntax);
}

TEST_CASE("AUTH (RFC 4954 4)") {
    auto a = parse_command("auth plain AGFsaWNlAHNlY3JldA==");
    REQUIRE(a.ok());
    CHECK(a->auth_mechanism == "PLAIN");
    CHECK(a->auth_initial_response == "AGFsaWNlAHNlY3JldA==");
    auto l = parse_command("AUTH LOGIN");
    REQUIRE(l.ok());
    CHECK(l->auth_mechanism == "LOGIN");
    CHECK_FALSE(l->auth_initial_response.has_value());
    CHECK(parse_command("AUTH PLAIN =")->auth_initial_response == "=");
    CHECK(parse_command("AUTH SCRAM-SHA-256")->auth_mechanism == "SCRAM-SHA-256");
    for (const char* bad : {"AUTH", "AUTH ", "AUTH PLAIN ", "AUTH PLAIN abc", "AUTH PLAIN a=bc",
                            "AUTH PLAIN ab==c===", "AUTH PLAIN abc! ", "AUTH PL:AIN",
                            "AUTH PLAIN AAAA AAAA", "AUTH ABCDEFGHIJKLMNOPQRSTU"}) {
        CAPTURE(std::string(bad));
        CHECK(err(bad) == CommandErrorKind::bad_syntax);
    }
}

TEST_CASE("RFC 5321 D.1 client side through the framer, at every split") {
    const std::string stream =
        "EHLO bar.com\r\n"
        "MAIL FROM:<Smith@bar.com>\r\n"
        "RCPT TO:<Jones@foo.com>\r\n"
        "RCPT TO:<Green@foo.com>\r\n"
        "RCPT TO:<Brown@foo.com>\r\n"
        "DATA\r\n";
    const std::vector<std::string> expected{"EHLO bar.com",       "MAIL Smith@bar.com",
                                            "RCPT Jones@foo.com", "RCPT Green@foo.com",
                                            "RCPT Brown@foo.com", "DATA"};
    for (auto& s : relaygate::test::all_splits(stream, 0)) {
        CAPTURE(s.name);
        LineFramer f;
        std::vector<std::string> got;
        for (auto& piece : s.pieces) {
            std::string_view rest = piece;
            for (;;) {
                auto ev = f.feed(rest);
                rest.remove_prefix(ev.consumed);
                if (ev.kind == LineEvent::Kind::need_more) break;
                REQUIRE(ev.kind == LineEvent::Kind::line);
                auto c = parse_command(ev.line);
                REQUIRE(c.ok());
                std::string v(to_string(c->verb));
                if (c->verb == Verb::ehlo)
                    got.push_back(v + " " + c->helo_domain);
                else if (c->verb == Verb::data)
                    got.push_back(v);
                else
                    got.push_back(v + " " + c->path.mailbox());
            }
        }
        std::string g, e;
        for (auto& x : got)
            g += x + "|";
        for (auto& x : expected)
            e += x + "|";
        CHECK(g == e);
    }
}
