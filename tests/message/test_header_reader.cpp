// Tests for gateway/message/header_reader: the "Composition Kills" header
// attack classes, RFC 5322 Appendix A examples, and streaming at every split.
// Every case is fed whole and through HeaderCollector at every split point.
#include "gateway/message/header_reader.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gateway/message/header_collector.hpp"

using namespace relaygate;
using namespace relaygate::message;
using namespace std::string_literals;

namespace {

// "ok:<From|Sender|...>=local@domain;..." or the reject label.
// Also checks read_header_into() on facts reused from every case before.
std::string verdict(std::string_view header, const HeaderOptions& opt) {
    auto r = read_header(header, opt);
    static HeaderFacts reused;
    auto e = read_header_into(header, opt, reused);
    if (r) {
        CHECK_FALSE(e.has_value());
        CHECK(reused == *r);
    } else {
        REQUIRE(e.has_value());
        CHECK(e->reason == r.error().reason);
        CHECK(e->detail == r.error().detail);
        CHECK(reused == HeaderFacts{});  // nothing of a refused header is left
    }
    if (!r) return std::string(label(r.error().reason));
    std::string out = "ok:";
    for (const auto& m : r->originators)
        out += std::string(to_string(m.field)) + "=" + m.local_part + "@" + m.domain + ";";
    return out;
}

// The same message through HeaderCollector, split into two chunks at `cut`.
std::string streamed_verdict(std::string_view msg, std::size_t cut, const HeaderOptions& opt) {
    HeaderCollector c(opt.max_header_bytes);
    std::size_t used1 = 0, used2 = 0;
    auto s = c.feed(msg.substr(0, cut), used1);
    if (s == HeaderCollector::Status::need_more) s = c.feed(msg.substr(cut), used2);
    if (s == HeaderCollector::Status::need_more) s = c.finish();
    if (s == HeaderCollector::Status::too_big) return "header_too_big";
    return verdict(c.header(), opt);
}

struct Case {
    const char* name;
    std::string msg;
    std::string expect;  // reason label, or "ok:..." originators
};

void run(const std::vector<Case>& cases, const HeaderOptions& opt) {
    for (const auto& c : cases) {
        CAPTURE(std::string(c.name));
        CAPTURE(c.msg);
        CHECK(verdict(c.msg, opt) == c.expect);
        // Streaming must not change the verdict, wherever the chunks split.
        for (std::size_t cut = 0; cut <= c.msg.size(); ++cut) {
            CAPTURE(cut);
            REQUIRE(streamed_verdict(c.msg, cut, opt) == c.expect);
        }
    }
}

const std::string kRest = "To: <victim@victim.example>\r\nSubject: test\r\n\r\nbody\r\n";

}  // namespace

TEST_CASE("multiple From fields and whitespace tricks (Composition Kills 6(a)-(c), A8-A11)") {
    run(
        {
            {"A8 two From",
             "From: <first@attack.example>\r\nFrom: <admin@legit.example>\r\n" + kRest,
             "from_multiple_fields"},
            {"case variants", "FROM: <a@attack.example>\r\nfrom: <admin@legit.example>\r\n" + kRest,
             "from_multiple_fields"},
            {"A9 leading space",
             " From: <first@attack.example>\r\nFrom: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"A10 space before colon",
             "From: <first@attack.example>\r\nFrom : <admin@legit.example>\r\n" + kRest,
             "from_multiple_fields"},
            {"tab before colon",
             "From: <first@attack.example>\r\nFrom\t: <admin@legit.example>\r\n" + kRest,
             "from_multiple_fields"},
            {"obs WSP before colon alone still names From",
             "From  : <admin@legit.example>\r\n" + kRest, "ok:From=admin@legit.example;"},
            {"A11 folded field name",
             "From\r\n : <first@attack.example>\r\nFrom: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"line without colon", "From <admin@legit.example>\r\n" + kRest, "header_malformed"},
            {"mbox From_ line",
             "From admin@legit.example Mon Jan 1 00:00:00 2024\r\nFrom: <a@b.example>\r\n" + kRest,
             "header_malformed"},
            {"empty field name", ": x\r\nFrom: <a@b.example>\r\n" + kRest, "header_malformed"},
            {"control char in field name", "Fr\x01om: <a@b.example>\r\n" + kRest,
             "header_malformed"},
            {"whitespace-only continuation (obs-FWS)",
             "Subject: x\r\n \r\nFrom: <admin@legit.example>\r\n" + kRest, "header_malformed"},
            {"folded From value is fine", "From: Admin\r\n <admin@legit.example>\r\n" + kRest,
             "ok:From=admin@legit.example;"},
            {"folded inside the address", "From: <admin@\r\n legit.example>\r\n" + kRest,
             "ok:From=admin@legit.example;"},
        },
        {});
}

TEST_CASE("Sender and Resent-From fallbacks (Composition Kills 6(d), A12, A13)") {
    run(
        {
            {"A12 folded From with Sender",
             "From\r\n : <first@attack.example>\r\nSender: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"A13 folded From with Resent-From",
             "From\r\n : <first@attack.example>\r\nResent-From: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"only Sender", "Sender: <admin@legit.example>\r\n" + kRest, "from_missing"},
            {"only Resent-From", "Resent-From: <admin@legit.example>\r\n" + kRest, "from_missing"},
            {"empty header section", "\r\nbody\r\n", "from_missing"},
            {"From and Sender are both reported",
             "Sender: <s@sender.legit.example>\r\nFrom: <admin@legit.example>\r\n" + kRest,
             "ok:Sender=s@sender.legit.example;From=admin@legit.example;"},
            {"Resent fields are reported",
             "From: <a@x.example>\r\nResent-From: <r@y.example>, <q@z.example>\r\n"
             "Resent-Sender: <s@w.example>\r\n" +
                 kRest,
             "ok:From=a@x.example;Resent-From=r@y.example;Resent-From=q@z.example;Resent-Sender=s@"
             "w.example;"},
            {"two Sender fields",
             "From: <a@x.example>\r\nSender: <b@y.example>\r\nSender: <c@z.example>\r\n" + kRest,
             "duplicate_singleton_field"},
            {"Sender with two mailboxes",
             "From: <a@x.example>\r\nSender: <b@y.example>, <c@z.example>\r\n" + kRest,
             "address_syntax"},
            {"Resent-Sender with two mailboxes",
             "From: <a@x.example>\r\nResent-Sender: <b@y.example>, <c@z.example>\r\n" + kRest,
             "address_syntax"},
            {"empty Sender", "From: <a@x.example>\r\nSender:\r\n" + kRest, "address_syntax"},
            {"Sender group", "From: <a@x.example>\r\nSender: g: <b@y.example>;\r\n" + kRest,
             "address_group"},
            {"Sender route",
             "From: <a@x.example>\r\nSender: <@legit.example:b@y.example>\r\n" + kRest,
             "address_route"},
            {"Resent-From bad domain",
             "From: <a@x.example>\r\nResent-From: <b@-y.example>\r\n" + kRest,
             "address_invalid_domain"},
        },
        {});
}

TEST_CASE("multiple mailboxes and empty From (Composition Kills 8(a), 8(e), A14, A18)") {
    run(
        {
            {"A14", "From: <first@attack.example>, <admin@legit.example>\r\n" + kRest,
             "from_multiple_mailboxes"},
            {"A18 special character precedence",
             "From: admin@legit.example,<second@attack.example>\r\n" + kRest,
             "from_multiple_mailboxes"},
            {"empty From", "From:\r\n" + kRest, "from_empty"},
            {"From with only a comment", "From: (nobody)\r\n" + kRest, "from_empty"},
            {"From empty group (RFC 6854)", "From: undisclosed recipients:;\r\n" + kRest,
             "from_empty"},
            {"From group with members", "From: team: <a@legit.example>;\r\n" + kRest,
             "address_group"},
            {"From mailbox plus empty group", "From: <a@legit.example>, g:;\r\n" + kRest,
             "address_group"},
            {"From <>", "From: <>\r\n" + kRest, "address_syntax"},
            {"trailing comma", "From: <a@legit.example>,\r\n" + kRest, "address_syntax"},
            {"empty list element", "From: <a@legit.example>,,<b@legit.example>\r\n" + kRest,
             "address_syntax"},
        },
        {});
    HeaderOptions allow;
    allow.allow_multiple_from_mailboxes = true;
    run(
        {
            {"allowed with Sender",
             "From: <a@legit.example>, <b@other.example>\r\nSender: <a@legit.example>\r\n" + kRest,
             "ok:From=a@legit.example;From=b@other.example;Sender=a@legit.example;"},
            {"allowed but Sender missing (RFC 5322 3.6.2)",
             "From: <a@legit.example>, <b@other.example>\r\n" + kRest, "from_multiple_mailboxes"},
        },
        allow);
}

TEST_CASE("encoded addresses, routes, quoted pairs (Composition Kills 8(b)-(d), A15-A17)") {
    run(
        {
            {"A15 encoded address as a list element",
             "From: =?utf-8?B?PGFkbWluQGxlZ2l0LmV4YW1wbGU+?=,<second@attack.example>\r\n" + kRest,
             "address_encoded_word"},
            {"encoded local-part", "From: =?utf-8?q?admin?=@legit.example\r\n" + kRest,
             "address_encoded_word"},
            {"encoded domain", "From: <admin@=?utf-8?q?legit.example?=>\r\n" + kRest,
             "address_encoded_word"},
            {"encoded quoted local-part", "From: \"=?utf-8?q?admin?=\"@legit.example\r\n" + kRest,
             "address_encoded_word"},
            {"encoded display name naming another domain",
             "From: =?utf-8?q?admin=40legit.example?= <x@attack.example>\r\n" + kRest,
             "display_name_address"},
            {"base64 display name naming another domain",
             "From: =?utf-8?b?YWRtaW5AbGVnaXQuZXhhbXBsZQ==?= <x@attack.example>\r\n" + kRest,
             "display_name_address"},
            {"plain encoded display name is fine",
             "From: =?utf-8?q?J=C3=B6rg?= <j@legit.example>\r\n" + kRest,
             "ok:From=j@legit.example;"},
            {"UTF-7 display name cannot be checked",
             "From: =?utf-7?q?admin+AEA-legit.example?= <x@attack.example>\r\n" + kRest,
             "address_encoded_word"},
            {"A16 route", "From: <@attack.example,@any.example:admin@legit.example>\r\n" + kRest,
             "address_route"},
            {"route with leading comma", "From: <,@attack.example:admin@legit.example>\r\n" + kRest,
             "address_route"},
            {"A17 quoted pair after address",
             "From: <admin@legit.example>\\,<second@attack.example>\r\n" + kRest,
             "address_trailing_text"},
            {"quoted local-part with @", "From: \"admin@legit.example\"@attack.example\r\n" + kRest,
             "address_quoted_at"},
            {"quoted-pair @ in quoted local-part",
             "From: \"admin\\@legit.example\"@attack.example\r\n" + kRest, "address_quoted_at"},
            {"backslash outside quotes", "From: admin\\@legit.example@attack.example\r\n" + kRest,
             "address_syntax"},
            {"quoted local-part with delimiters", "From: \"a>,<b\"@attack.example\r\n" + kRest,
             "address_syntax"},
            {"plain quoted local-part", "From: \"john doe\"@legit.example\r\n" + kRest,
             "ok:From=john doe@legit.example;"},
            {"quoted-pair inside display name",
             "From: \"Admin \\\"Boss\\\"\" <a@legit.example>\r\n" + kRest,
             "ok:From=a@legit.example;"},
            {"domain literal", "From: <admin@[192.0.2.1]>\r\n" + kRest, "address_domain_literal"},
        },
        {});
}

TEST_CASE("delimiter confusion and display names (Composition Kills 8(e), 8(f), A19)") {
    run(
        {
            {"A19 address after angle address",
             "From: <any@attack.example>admin@legit.example\r\n" + kRest, "address_trailing_text"},
            {"addr-spec before angle address",
             "From: admin@legit.example <any@attack.example>\r\n" + kRest, "address_trailing_text"},
            {"two angle addresses", "From: <a@attack.example><admin@legit.example>\r\n" + kRest,
             "address_trailing_text"},
            {"name with two angle addresses",
             "From: Admin <a@attack.example> <admin@legit.example>\r\n" + kRest,
             "address_trailing_text"},
            {"semicolon separator", "From: a@attack.example;admin@legit.example\r\n" + kRest,
             "address_trailing_text"},
            {"two @", "From: admin@legit.example@attack.example\r\n" + kRest, "address_syntax"},
            {"two @ in angle", "From: <admin@legit.example@attack.example>\r\n" + kRest,
             "address_syntax"},
            {"space-separated words", "From: Admin admin@legit.example\r\n" + kRest,
             "address_syntax"},
            {"quoted display name with address",
             "From: \"admin@legit.example\" <a@attack.example>\r\n" + kRest,
             "display_name_address"},
            {"display name with angle address",
             "From: \"Legit <admin@legit.example>\" <a@attack.example>\r\n" + kRest,
             "display_name_address"},
            {"display name naming own address",
             "From: \"a@attack.example\" <a@attack.example>\r\n" + kRest,
             "ok:From=a@attack.example;"},
            {"display name with at but no domain",
             "From: \"Sales @ Acme\" <a@attack.example>\r\n" + kRest, "ok:From=a@attack.example;"},
            {"comment naming another address",
             "From: a@attack.example (admin@legit.example)\r\n" + kRest, "display_name_address"},
            {"comment after domain is a comment",
             "From: admin@legit.example(.attack.example)\r\n" + kRest,
             "ok:From=admin@legit.example;"},
            {"unclosed comment", "From: admin@legit.example (x\r\n" + kRest, "address_syntax"},
            {"nesting bound",
             "From: a@legit.example " + std::string(40, '(') + std::string(40, ')') + "\r\n" +
                 kRest,
             "address_syntax"},
            {"obs-local-part", "From: admin . x@legit.example\r\n" + kRest, "address_syntax"},
            {"obs-domain", "From: admin@legit . example\r\n" + kRest, "address_syntax"},
            {"mixed quoted local-part", "From: \"admin\".x@legit.example\r\n" + kRest,
             "address_syntax"},
            {"control character", "From: <ad\x01min@legit.example>\r\n" + kRest, "address_syntax"},
            {"DEL", "From: <admin@legit.example>\x7f\r\n" + kRest, "address_trailing_text"},
            {"bad domain", "From: <admin@legit_example.com>\r\n" + kRest, "address_invalid_domain"},
            {"trailing dot", "From: <admin@legit.example.>\r\n" + kRest, "address_syntax"},
            {"uppercase domain is folded", "From: <Admin@LEGIT.Example>\r\n" + kRest,
             "ok:From=Admin@legit.example;"},
        },
        {});
    HeaderOptions allow;
    allow.allow_display_name_address = true;
    run({{"allowed by option", "From: \"admin@legit.example\" <a@attack.example>\r\n" + kRest,
          "ok:From=a@attack.example;"}},
        allow);
}

TEST_CASE("NUL, bare CR/LF, 8-bit, size bound") {
    run(
        {
            {"NUL in From", "From: <admin@legit.example\0@attack.example>\r\n"s + kRest,
             "header_malformed"},
            {"NUL in another field", "X: a\0b\r\nFrom: <admin@legit.example>\r\n"s + kRest,
             "header_malformed"},
            {"bare LF", "From: <a@attack.example>\nFrom: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"bare CR", "From: <a@attack.example>\rFrom: <admin@legit.example>\r\n" + kRest,
             "header_malformed"},
            {"LF-only end of header",
             "From: <a@attack.example>\r\n\nFrom: <admin@legit.example>\r\n\r\n",
             "header_malformed"},
            {"no final CRLF", "From: <admin@legit.example>", "header_malformed"},
            {"8-bit without SMTPUTF8",
             "From: <admin@legit.example>\r\nSubject: caf\xc3\xa9\r\n\r\n",
             "header_8bit_without_smtputf8"},
            {"8-bit domain without SMTPUTF8",
             "From: <admin@b\xc3\xbc"
             "cher.example>\r\n\r\n",
             "header_8bit_without_smtputf8"},
            {"duplicate Subject", "From: <a@x.example>\r\nSubject: a\r\nsubject : b\r\n\r\n",
             "duplicate_singleton_field"},
            {"duplicate Message-ID",
             "From: <a@x.example>\r\nMessage-ID: <1@x>\r\nMessage-Id: <2@x>\r\n\r\n",
             "duplicate_singleton_field"},
            {"repeated Received is fine",
             "Received: a\r\nReceived: b\r\nFrom: <a@x.example>\r\n\r\n", "ok:From=a@x.example;"},
            {"message without body or empty line", "From: <a@x.example>\r\nSubject: s\r\n",
             "ok:From=a@x.example;"},
        },
        {});
    HeaderOptions small;
    small.max_header_bytes = 64;
    run({{"over the bound",
          "From: <a@x.example>\r\nX-Pad: " + std::string(33, 'x') + "\r\n\r\nbody\r\n",
          "header_too_big"},
         {"at the bound",
          "From: <a@x.example>\r\nX-Pad: " + std::string(32, 'x') + "\r\n\r\nbody\r\n",
          "ok:From=a@x.example;"}},
        small);
}

TEST_CASE("invisible characters and IDNA (SMTPUTF8)") {
    HeaderOptions utf8;
    utf8.smtputf8 = true;
    run(
        {
            {"U-label domain",
             "From: <a@b\xc3\xbc"
             "cher.example>\r\n\r\n",
             "ok:From=a@xn--bcher-kva.example;"},
            {"A-label domain", "From: <a@XN--BCHER-KVA.example>\r\n\r\n",
             "ok:From=a@xn--bcher-kva.example;"},
            {"upper-case U-label",
             "From: <a@B\xc3\x9c"
             "CHER.example>\r\n\r\n",
             "address_invalid_domain"},
            {"zero-width space in domain", "From: <admin@legit\xe2\x80\x8b.example>\r\n\r\n",
             "address_invalid_domain"},
            {"no-break space after domain", "From: <admin@legit.example\xc2\xa0>\r\n\r\n",
             "address_invalid_domain"},
            {"full-width dot in domain",
             "From: <admin@legit\xef\xbc\x8e"
             "example>\r\n\r\n",
             "address_invalid_domain"},
            {"right-to-left override in domain", "From: <admin@\xe2\x80\xaelegit.example>\r\n\r\n",
             "address_invalid_domain"},
            {"zero-width joiner in local-part", "From: <ad\xe2\x80\x8dmin@legit.example>\r\n\r\n",
             "address_syntax"},
            {"UTF-8 local-part", "From: <j\xc3\xb6rg@legit.example>\r\n\r\n",
             "ok:From=j\xc3\xb6rg@legit.example;"},
            {"invisible char hides address in display name",
             "From: \"admin@legit\xe2\x80\x8b.example\" <a@attack.example>\r\n\r\n",
             "display_name_address"},
            {"full-width at in display name",
             "From: \"admin\xef\xbc\xa0legit.example\" <a@attack.example>\r\n\r\n",
             "display_name_address"},
            {"invalid UTF-8", "From: <a@x.example>\r\nSubject: \xc3\x28\r\n\r\n",
             "header_malformed"},
        },
        utf8);
}

TEST_CASE("RFC 5322 Appendix A examples parse") {
    run(
        {
            {"A.1.1",
             "From: John Doe <jdoe@machine.example>\r\nTo: Mary Smith <mary@example.net>\r\n"
             "Subject: Saying Hello\r\nDate: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
             "Message-ID: <1234@local.machine.example>\r\n\r\nThis is a message just to say "
             "hello.\r\n"
             "So, \"Hello\".\r\n",
             "ok:From=jdoe@machine.example;"},
            {"A.1.2",
             "From: \"Joe Q. Public\" <john.q.public@example.com>\r\n"
             "To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>\r\n"
             "Cc: <boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>\r\n"
             "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\nMessage-ID: "
             "<5678.21-Nov-1997@example.com>\r\n"
             "\r\nHi everyone.\r\n",
             "ok:From=john.q.public@example.com;"},
            {"A.1.3",
             "From: Pete <pete@silly.example>\r\n"
             "To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\n"
             "Cc: Undisclosed recipients:;\r\nDate: Thu, 13 Feb 1969 23:32:54 -0330\r\n"
             "Message-ID: <testabcd.1234@silly.example>\r\n\r\nTesting.\r\n",
             "ok:From=pete@silly.example;"},
            {"A.2 reply",
             "From: Mary Smith <mary@example.net>\r\nTo: John Doe <jdoe@machine.example>\r\n"
             "Reply-To: \"Mary Smith: Personal Account\" <smith@home.example>\r\n"
             "Subject: Re: Saying Hello\r\nDate: Fri, 21 Nov 1997 10:01:10 -0600\r\n"
             "Message-ID: <3456@example.net>\r\nIn-Reply-To: <1234@local.machine.example>\r\n"
             "References: <1234@local.machine.example>\r\n\r\nThis is a reply to your hello.\r\n",
             "ok:From=mary@example.net;"},
            {"A.3 resent",
             "Resent-From: Mary Smith <mary@example.net>\r\n"
             "Resent-To: Jane Brown <j-brown@other.example>\r\n"
             "Resent-Date: Mon, 24 Nov 1997 14:22:01 -0800\r\n"
             "Resent-Message-ID: <78910@example.net>\r\nFrom: John Doe <jdoe@machine.example>\r\n"
             "To: Mary Smith <mary@example.net>\r\nSubject: Saying Hello\r\n"
             "Date: Fri, 21 Nov 1997 09:55:06 -0600\r\nMessage-ID: <1234@local.machine.example>\r\n"
             "\r\nThis is a message just to say hello.\r\n",
             "ok:Resent-From=mary@example.net;From=jdoe@machine.example;"},
            {"A.4 trace",
             "Received: from x.y.test\r\n   by example.net\r\n   via TCP\r\n   with ESMTP\r\n"
             "   id ABC12345\r\n   for <mary@example.net>;  21 Nov 1997 10:05:43 -0600\r\n"
             "Received: from node.example by x.y.test; 21 Nov 1997 10:01:22 -0600\r\n"
             "From: John Doe <jdoe@node.example>\r\nTo: Mary Smith <mary@example.net>\r\n"
             "Subject: Saying Hello\r\nDate: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
             "Message-ID: <1234@local.node.example>\r\n\r\nThis is a message just to say "
             "hello.\r\n",
             "ok:From=jdoe@node.example;"},
            {"A.5 white space, comments",
             "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\n"
             "To:A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
             "         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of "
             "the group)\r\n"
             "Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\r\n"
             "Date: Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n"
             "               -0330 (Newfoundland Time)\r\n"
             "Message-ID:              <testabcd.1234@silly.test>\r\n\r\nTesting.\r\n",
             "ok:From=pete@silly.test;"},
            {"A.6.1 obsolete phrase",
             "From: Joe Q. Public <john.q.public@example.com>\r\n"
             "To: Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example\r\n"
             "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
             "Message-ID: <5678.21-Nov-1997@example.com>\r\n\r\nHi everyone.\r\n",
             "ok:From=john.q.public@example.com;"},
            // A.6.3 combines obs-domain ("machine(comment).  example") and a
            // whitespace-only line: both refused on purpose (README).
            {"A.6.3 obsolete white space (refused)",
             "From  : John Doe <jdoe@machine(comment).  example>\r\nTo    : Mary Smith\r\n  \r\n"
             "          <mary@example.net>\r\nSubject     : Saying Hello\r\n"
             "Date  : Fri, 21 Nov 1997 09(comment):   55  :  06 -0600\r\n"
             "Message-ID  : <1234   @   local(blah)  .machine .example>\r\n\r\nThis is a message "
             "just to say hello.\r\n",
             "header_malformed"},
        },
        {});
}

TEST_CASE(
    "RFC 2045 fields at most once: MIME-Version, Content-Type, -Transfer-Encoding, -ID, "
    "-Description") {
    const std::string from = "From: <a@x.example>\r\n";
    run(
        {
            {"two MIME-Version", from + "MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n" + kRest,
             "duplicate_mime_field"},
            {"Content-Type in two cases",
             from + "Content-Type: text/plain\r\ncontent-type: text/html\r\n" + kRest,
             "duplicate_mime_field"},
            {"Content-Type with obs WSP before the colon",
             from + "Content-Type: text/plain\r\nContent-Type : text/html\r\n" + kRest,
             "duplicate_mime_field"},
            {"Content-Transfer-Encoding upper case",
             from + "CONTENT-TRANSFER-ENCODING: 7bit\r\nContent-Transfer-Encoding: base64\r\n" +
                 kRest,
             "duplicate_mime_field"},
            {"two Content-ID", from + "Content-ID: <a@x>\r\nContent-ID: <b@x>\r\n" + kRest,
             "duplicate_mime_field"},
            {"two Content-Description",
             from + "Content-Description: a\r\ncontent-description\t: b\r\n" + kRest,
             "duplicate_mime_field"},
            {"one of each",
             from +
                 "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                 "Content-Transfer-Encoding: 7bit\r\nContent-ID: <a@x>\r\n"
                 "Content-Description: d\r\n" +
                 kRest,
             "ok:From=a@x.example;"},
            {"no MIME-Version is not ambiguous", from + "Content-Type: text/plain\r\n" + kRest,
             "ok:From=a@x.example;"},
            // RFC 2183 2: Content-Disposition is a MIME-extension-field.
            {"two Content-Disposition are not refused",
             from + "Content-Disposition: inline\r\nContent-Disposition: attachment\r\n" + kRest,
             "ok:From=a@x.example;"},
            {"similar names are other fields",
             from + "Content-Type-X: a\r\nContent-Type-X: b\r\nX-Content-Type: a\r\n" + kRest,
             "ok:From=a@x.example;"},
            {"From count is checked first",
             "From: <a@x.example>\r\nFrom: <b@x.example>\r\nContent-Type: a\r\nContent-Type: "
             "b\r\n" +
                 kRest,
             "from_multiple_fields"},
            {"RFC 5322 singletons are checked first",
             from + "Content-Type: a\r\nContent-Type: b\r\nSubject: x\r\n" + kRest,
             "duplicate_singleton_field"},
            {"before the From address",
             "From: <a@[192.0.2.1]>\r\nMIME-Version: 1.0\r\nMIME-Version: 1.0\r\n" + kRest,
             "duplicate_mime_field"},
        },
        {});
}

TEST_CASE("Authentication-Results and ARC-Authentication-Results claiming our authserv-id") {
    HeaderOptions opt;
    opt.authserv_ids = {"gw.example", "Signer.Example"};
    const std::string from = "From: <a@x.example>\r\n";
    const std::string ok = "ok:From=a@x.example;";
    const std::string forged = "authentication_results_forged";
    run(
        {
            {"plain",
             from + "Authentication-Results: gw.example; dkim=pass header.d=bank.example\r\n" +
                 kRest,
             forged},
            {"signer id, other case",
             from + "Authentication-Results: signer.EXAMPLE; spf=pass\r\n" + kRest, forged},
            {"upper-case id", from + "Authentication-Results: GW.EXAMPLE; dkim=pass\r\n" + kRest,
             forged},
            {"field name lower case",
             from + "authentication-results: gw.example; dkim=pass\r\n" + kRest, forged},
            {"field name with obs WSP",
             from + "Authentication-Results : gw.example; dkim=pass\r\n" + kRest, forged},
            {"with version", from + "Authentication-Results: gw.example 1; spf=pass\r\n" + kRest,
             forged},
            {"no-result", from + "Authentication-Results: gw.example; none\r\n" + kRest, forged},
            {"quoted-string",
             from + "Authentication-Results: \"gw.example\"; dkim=pass\r\n" + kRest, forged},
            {"quoted-pair",
             from + "Authentication-Results: \"gw\\.example\" 1; dkim=pass\r\n" + kRest, forged},
            {"comments around",
             from + "Authentication-Results: (ok (really)) gw.example (mx);\r\n dkim=pass\r\n" +
                 kRest,
             forged},
            {"folded", from + "Authentication-Results:\r\n gw.example;\r\n\tdkim=pass\r\n" + kRest,
             forged},
            {"trailing dot", from + "Authentication-Results: gw.example.; dkim=pass\r\n" + kRest,
             forged},
            {"second field of two",
             from +
                 "Authentication-Results: mx.other.example; spf=pass\r\nAuthentication-Results: "
                 "gw.example; dkim=pass\r\n" +
                 kRest,
             forged},
            // Not strict RFC 8601, but a careless reader finds our id: fail closed.
            {"no results", from + "Authentication-Results: gw.example\r\n" + kRest, forged},
            {"tspecial after the id",
             from + "Authentication-Results: gw.example/x; dkim=pass\r\n" + kRest, forged},
            {"token char after the id",
             from + "Authentication-Results: gw.example+x; dkim=pass\r\n" + kRest, forged},
            {"unclosed comment",
             from + "Authentication-Results: (gw.example; dkim=pass\r\n" + kRest, forged},
            {"id inside a comment-unaware reading",
             from + "Authentication-Results: (gw.example) other.example; spf=pass\r\n" + kRest,
             forged},
            {"AAR", from + "ARC-Authentication-Results: i=1; gw.example; dkim=pass\r\n" + kRest,
             forged},
            {"AAR with CFWS and version",
             from + "arc-authentication-results : i = 2 ;(c) \"GW.example\" 1; spf=pass\r\n" +
                 kRest,
             forged},
            {"AAR without i=",
             from + "ARC-Authentication-Results: gw.example; dkim=pass\r\n" + kRest, forged},
            {"AAR with bad i=",
             from + "ARC-Authentication-Results: i=x; gw.example; dkim=pass\r\n" + kRest, forged},
            {"before the From address",
             "From: <a@[192.0.2.1]>\r\nAuthentication-Results: gw.example; dkim=pass\r\n" + kRest,
             forged},

            {"another authserv-id",
             from + "Authentication-Results: mx.other.example; dkim=pass header.d=gw.example\r\n" +
                 kRest,
             ok},
            {"a subdomain of ours is not ours",
             from + "Authentication-Results: mx.gw.example; spf=pass\r\n" + kRest, ok},
            {"ours as a prefix",
             from + "Authentication-Results: gw.example.evil.example; spf=pass\r\n" + kRest, ok},
            {"ours as a comment only",
             from + "Authentication-Results: other.example (not gw.example); spf=pass\r\n" + kRest,
             ok},
            {"AAR of another",
             from +
                 "ARC-Authentication-Results: i=1; mx.other.example; dkim=pass "
                 "header.d=gw.example\r\n" +
                 kRest,
             ok},
            {"malformed field of another verifier",
             from +
                 "Authentication-Results: ; dkim=pass\r\nAuthentication-Results: "
                 "other.example\r\n" +
                 kRest,
             ok},
            {"unterminated quote of another",
             from + "Authentication-Results: \"other.example; dkim=pass\r\n" + kRest, ok},
            {"other fields are not read",
             from +
                 "X-Authentication-Results: gw.example; "
                 "dkim=pass\r\nX-Original-Authentication-Results: gw.example; spf=pass\r\n" +
                 kRest,
             ok},
            // ARC-Seal and ARC-Message-Signature carry no authserv-id.
            {"ARC-Seal and ARC-Message-Signature",
             from +
                 "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=gw.example; s=s; "
                 "b=AA==\r\nARC-Message-Signature: i=1; a=rsa-sha256; d=gw.example; s=s; h=from; "
                 "bh=AA==; b=AA==\r\n" +
                 kRest,
             ok},
            {"MIME duplicates are checked first",
             from +
                 "Authentication-Results: gw.example; dkim=pass\r\nMIME-Version: "
                 "1.0\r\nMIME-Version: 1.0\r\n" +
                 kRest,
             "duplicate_mime_field"},
        },
        opt);

    // Without configured ids nothing is forged (the session always adds its hostname).
    run({{"no ids", from + "Authentication-Results: gw.example; dkim=pass\r\n" + kRest, ok}}, {});

    auto r = read_header(from + "authentication-results : GW.example; dkim=pass\r\n" + kRest, opt);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().detail == "authentication-results claims authserv-id gw.example");
}

TEST_CASE("authserv-ids as U-labels under SMTPUTF8") {
    HeaderOptions opt;
    opt.smtputf8 = true;
    opt.authserv_ids = {"xn--bcher-kva.example"};
    run(
        {
            {"U-label spelling of our A-label",
             "From: <a@x.example>\r\nAuthentication-Results: b\xc3\xbc"
             "cher.example; dkim=pass\r\n" +
                 kRest,
             "authentication_results_forged"},
            {"A-label in another case",
             "From: <a@x.example>\r\nAuthentication-Results: XN--BCHER-KVA.example; dkim=pass\r\n" +
                 kRest,
             "authentication_results_forged"},
            {"another U-label",
             "From: <a@x.example>\r\nAuthentication-Results: b\xc3\xa4"
             "cher.example; dkim=pass\r\n" +
                 kRest,
             "ok:From=a@x.example;"},
        },
        opt);
}

TEST_CASE("DKIM-Signature is left to the session (gateway/dkim parses it)") {
    // The header reader cannot link the DKIM parser; the session refuses a
    // malformed signature right after read_header (tests/session).
    run({{"duplicate tags",
          "From: <a@x.example>\r\nDKIM-Signature: v=1; d=a.example; d=b.example\r\n" + kRest,
          "ok:From=a@x.example;"}},
        {});
}

TEST_CASE("fields: names, values, offsets, count and values") {
    std::string h =
        "From : Admin\r\n <a@x.example>\r\nX-Relaygate-Verdict: forged\r\nSubject:\thi\r\n"
        "x-relaygate-verdict : again\r\n folded\r\n\r\nbody";
    auto r = read_header(h, {});
    REQUIRE(r.ok());
    REQUIRE(r->fields.size() == 4);
    CHECK(r->fields[0].name == "From");
    CHECK(r->fields[0].value == "Admin <a@x.example>");
    CHECK(r->fields[0].offset == 0);
    CHECK(r->fields[0].length == 30);
    CHECK(r->fields[2].value == "hi");
    CHECK(r->fields[3].value == "again folded");
    CHECK(r->header_size == h.size() - 4);
    CHECK(r->count("X-RELAYGATE-VERDICT") == 2);
    CHECK(r->values("subject") == std::vector<std::string_view>{"hi"});
    CHECK(r->originators.size() == 1);
    CHECK(r->originators[0].display_name == "Admin");
    CHECK(r->mailboxes(OriginatorField::from).size() == 1);
    CHECK(r->mailboxes(OriginatorField::sender).empty());
    for (const auto& f : r->fields) {
        CHECK(h.substr(f.offset + f.length - 2, 2) == "\r\n");
        CHECK(h.substr(f.offset).starts_with(f.name));
    }

    std::string stripped = without_fields(h, r.value(), "X-Relaygate-Verdict");
    CHECK(stripped == "From : Admin\r\n <a@x.example>\r\nSubject:\thi\r\n\r\n");
    // Stripping a field that is not there changes nothing.
    CHECK(without_fields(h, r.value(), "Cc") == h.substr(0, r->header_size));
    auto again = read_header(stripped, {});
    REQUIRE(again.ok());
    CHECK(again->count("x-relaygate-verdict") == 0);
    CHECK(again->originators[0].domain == "x.example");
}

TEST_CASE("originator field names") {
    CHECK(to_string(OriginatorField::from) == "From");
    CHECK(to_string(OriginatorField::sender) == "Sender");
    CHECK(to_string(OriginatorField::resent_from) == "Resent-From");
    CHECK(to_string(OriginatorField::resent_sender) == "Resent-Sender");
}
