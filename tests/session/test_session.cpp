// Tests for the session state machine that a transcript cannot express:
// state the runner reads from the machine rather than from its actions.
// Every scripted conversation (client, relay, DNS, AUTH, TLS, audit) is a
// golden transcript in tests/session/transcripts/, run by
// test_transcripts.cpp, which also splits the client's bytes at every byte
// and loses the relay at every upstream action.
#include "gateway/session/session.hpp"

#include <doctest/doctest.h>

#include "tests/session/session_driver.hpp"

TEST_CASE("the client's EHLO/HELO name is kept for XCLIENT, latest wins") {
    FakeHooks hooks;
    session::Settings settings;
    SessionMachine m(settings, test_policy(), session::ClientInfo{"t-1", "192.0.2.10", 1}, hooks);
    auto drain = [&] {
        while (true) {
            Flat a = flatten(m.next());
            if (a.kind == TK::read_client) return;
        }
    };
    drain();
    CHECK(m.client_helo().empty());
    m.on_client_data("EHLO Client.Example\r\n");
    drain();
    CHECK(m.client_helo() == "client.example");
    m.on_client_data("EHLO [192.0.2.10]\r\n");
    drain();
    CHECK(m.client_helo() == "[192.0.2.10]");
    m.on_client_data("HELO mx.other.example\r\n");
    drain();
    CHECK(m.client_helo() == "mx.other.example");
    m.on_client_data("EHLO -bad-\r\n");  // refused: the last good name stays
    drain();
    CHECK(m.client_helo() == "mx.other.example");
}
