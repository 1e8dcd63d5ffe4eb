#!/usr/bin/python3
"""The upstream connection pool (upstream.pool_size): an idle relay
connection outlives its client session and carries the next client's mail,
after RSET and, when the relay offers it, XCLIENT with the new client's
attributes. The sink (tests/peers/sink.py) records, per stored message, the
connection it came on and the XCLIENT attributes in force (merged as Postfix
merges them: an attribute not sent keeps its last value). The tests prove
that one client's attributes never reach another client's transaction,
also with many clients at once, and cover stale connections, the idle
timeout, a full pool, a relay at its process limit, the drain and the pool
turned off.

    tests/integration/test_upstream_pool.py --relaygate PATH
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, client_from, message, wait_for  # noqa: E402
from identity_helpers import metric  # noqa: E402

# demo.example from the whole loopback /8, so clients can come from
# distinct addresses.
POLICY = {
    "version": 1,
    "tenants": {
        "demo": {
            "domains": ["demo.example"],
            "identities": [{"networks": ["127.0.0.0/8"]}],
        },
    },
}

XCLIENT = ("--ehlo-extra", "XCLIENT")


def send_one(port, addr, helo, token, verb="EHLO", messages=1):
    """One session from `addr` naming itself `helo`; returns the final
    replies."""
    replies = []
    with client_from(addr, port) as c:
        r = c.cmd(f"{verb} {helo}")
        assert r.code == 250, r.text
        for i in range(messages):
            r = c.cmd("MAIL FROM:<alice@demo.example>")
            assert r.code == 250, r.text
            r = c.cmd("RCPT TO:<bob@dest.example>")
            assert r.code == 250, r.text
            replies.append(c.data(message(subject=f"{token} #{i}")))
        c.cmd("QUIT")
    return replies


def stored_by_token(sink):
    """{subject: meta} of every stored message."""
    out = {}
    for meta, eml in sink.stored():
        for line in eml.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out[line[9:].decode()] = meta
                break
    return out


def pool_metric(gw, name, **labels):
    return metric(gw, "relaygate_upstream_pool_" + name, **labels)


class UpstreamPoolTest(GatewayTestCase):

    def pair(self, *sink_args, threads=1, **upstream):
        sink = self.start_sink(*sink_args)
        gw = self.start_gateway(sink.port, policy=POLICY,
                                config={"threads": threads, "upstream": upstream})
        return sink, gw

    def wait_pooled(self, gw, count=1):
        wait_for(lambda: pool_metric(gw, "idle_connections") == count, 10,
                 what=f"{count} idle pooled connection(s)")

    def test_xclient_attributes_never_reach_another_client(self):
        sink, gw = self.pair(*XCLIENT)
        clients = [("127.0.0.2", "a.example", "EHLO"), ("127.0.0.3", "b.example", "EHLO"),
                   ("127.0.0.4", "c.example", "HELO")]
        for n, (addr, helo, verb) in enumerate(clients):
            replies = send_one(gw.port, addr, helo, f"client-{addr}", verb=verb)
            self.assertReply(replies[0], "250 2.0.0")
            self.wait_pooled(gw)
            self.assertEqual(pool_metric(gw, "checkouts_total", result="reused"), n)

        # One relay connection carried all three, each under its own name.
        self.assertEqual(sink.connections(), 1)
        stored = stored_by_token(sink)
        self.assertEqual(len(stored), 3)
        for addr, helo, _verb in clients:
            meta = stored[f"client-{addr} #0"]
            self.assertEqual(meta["connection"], 1)
            self.assertEqual(meta["xclient"], {"ADDR": addr, "HELO": helo, "PROTO": "ESMTP"},
                             f"attributes in force for {addr}'s message")
        # RSET (the health check) before each re-announcement.
        verbs = [line.split()[0].upper() for line in sink.commands()]
        self.assertEqual(verbs.count("XCLIENT"), 3)
        for i, v in enumerate(verbs):
            if v == "XCLIENT" and i > verbs.index("XCLIENT"):
                self.assertEqual(verbs[i - 1], "RSET", verbs)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="empty"), 1)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="stale"), 0)

    def test_many_clients_at_once_keep_their_own_attributes(self):
        sink, gw = self.pair(*XCLIENT, threads=2)
        addrs = [f"127.0.0.{10 + i}" for i in range(8)]
        rounds = harness.scale(4, 2)
        errors = []

        def worker(addr):
            try:
                for r in range(rounds):
                    replies = send_one(gw.port, addr, f"h{addr.replace('.', '-')}.example",
                                       f"{addr} round {r}", messages=2)
                    if any(x.code != 250 for x in replies):
                        errors.append((addr, [x.text for x in replies]))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append((addr, repr(exc)))

        threads = [threading.Thread(target=worker, args=(a,)) for a in addrs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        stored = stored_by_token(sink)
        self.assertEqual(len(stored), len(addrs) * rounds * 2)
        for token, meta in stored.items():
            addr = token.split()[0]
            self.assertEqual(meta["xclient"]["ADDR"], addr, token)
            self.assertEqual(meta["xclient"]["HELO"], f"h{addr.replace('.', '-')}.example",
                             token)
        sessions = len(addrs) * rounds
        self.assertLess(sink.connections(), sessions, "no relay connection was reused")
        self.assertGreater(pool_metric(gw, "checkouts_total", result="reused"), 0)

    def test_a_relay_that_withdraws_xclient_reuses_per_client(self):
        # As Postfix with smtpd_authorized_xclient_hosts = the gateway only:
        # after XCLIENT ADDR=<client> it no longer offers XCLIENT, so the
        # connection can carry only that client's mail afterwards.
        sink, gw = self.pair(*XCLIENT, "--xclient-hosts", "127.0.0.1/32")
        sequence = [("127.0.0.2", "a.example"), ("127.0.0.2", "a.example"),
                    ("127.0.0.3", "b.example"), ("127.0.0.2", "a.example"),
                    ("127.0.0.3", "b.example"), ("127.0.0.2", "a2.example")]
        for n, (addr, helo) in enumerate(sequence):
            replies = send_one(gw.port, addr, helo, f"{n} {addr} {helo}")
            self.assertReply(replies[0], "250 2.0.0")
            wait_for(lambda: pool_metric(gw, "idle_connections") >= 1, 10, what="pooled")
        stored = stored_by_token(sink)
        conn_of = {}
        for n, (addr, helo) in enumerate(sequence):
            meta = stored[f"{n} {addr} {helo} #0"]
            self.assertEqual(meta["xclient"], {"ADDR": addr, "HELO": helo, "PROTO": "ESMTP"})
            conn_of.setdefault((addr, helo), set()).add(meta["connection"])
        # One connection per distinct client, each reused by that client only.
        self.assertEqual(sink.connections(), 3)
        self.assertEqual([len(c) for c in conn_of.values()], [1, 1, 1])
        self.assertEqual(len(set().union(*conn_of.values())), 3)
        self.assertEqual(len(sink.commands("XCLIENT")), 3)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="reused"), 3)

    def test_without_xclient_the_connection_carries_no_client_attributes(self):
        sink, gw = self.pair()  # the sink does not offer XCLIENT
        for addr in ("127.0.0.2", "127.0.0.3"):
            self.assertReply(send_one(gw.port, addr, "x.example", addr)[0], "250 2.0.0")
            self.wait_pooled(gw)
        self.assertEqual(sink.connections(), 1)
        self.assertEqual([m["xclient"] for m in stored_by_token(sink).values()], [None, None])
        self.assertEqual(sink.commands("XCLIENT"), [])

    def test_a_connection_the_relay_closed_is_replaced_quietly(self):
        # The sink closes connections idle for 1 s; the pool keeps them 30 s.
        sink, gw = self.pair(*XCLIENT, "--timeout", "1")
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "first")[0], "250 2.0.0")
        self.wait_pooled(gw)
        sink.wait_events("disconnect", 1, timeout=10)
        replies = send_one(gw.port, "127.0.0.3", "b.example", "second")
        self.assertReply(replies[0], "250 2.0.0")
        self.assertEqual(sink.connections(), 2)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="stale"), 1)
        self.assertEqual(stored_by_token(sink)["second #0"]["xclient"]["ADDR"], "127.0.0.3")
        # Not counted as a relay failure.
        self.assertEqual(metric(gw, "relaygate_upstream_errors_total", kind="reset"), 0)

    def test_with_pipelining_the_rset_rides_with_the_mail_and_still_finds_dead_ones(self):
        # The sink offers PIPELINING and closes connections idle for 1 s: the
        # second session's RSET goes ahead of its MAIL in one write, meets a
        # closed connection, and the MAIL is sent again on a fresh one.
        sink, gw = self.pair("--ehlo-extra", "PIPELINING", "--timeout", "1", xclient=False)
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "first")[0], "250 2.0.0")
        self.wait_pooled(gw)
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "second")[0], "250 2.0.0")
        self.assertEqual(sink.connections(), 1)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="reused"), 1)
        self.assertEqual([c.split()[0] for c in sink.commands()].count("RSET"), 1)
        self.wait_pooled(gw)
        sink.wait_events("disconnect", 1, timeout=10)
        self.assertReply(send_one(gw.port, "127.0.0.3", "b.example", "third")[0], "250 2.0.0")
        self.assertEqual(sink.connections(), 2)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="stale"), 1)
        self.assertEqual(len(stored_by_token(sink)), 3)
        # Not counted as a relay failure.
        self.assertEqual(metric(gw, "relaygate_upstream_errors_total", kind="reset"), 0)

    def test_idle_pooled_connections_are_closed_after_the_idle_timeout(self):
        sink, gw = self.pair(*XCLIENT, idle_timeout_seconds=1)
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "only")[0], "250 2.0.0")
        sink.wait_closed(timeout=10)
        self.assertEqual(sink.commands("QUIT"), ["QUIT"])
        wait_for(lambda: pool_metric(gw, "closed_total", reason="idle_timeout") == 1, 5,
                 what="the idle_timeout close counted")
        self.assertEqual(pool_metric(gw, "idle_connections"), 0)

    def test_the_pool_keeps_at_most_pool_size(self):
        sink, gw = self.pair(pool_size=1)
        gate = threading.Barrier(3)
        clients = [client_from(f"127.0.0.{i}", gw.port) for i in (2, 3, 4)]
        try:
            # Three sessions with a relay connection each, ended together.
            for i, c in enumerate(clients):
                self.assertReply(c.ehlo(), "250")
                self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
                self.assertReply(c.cmd("RSET"), "250 2.0.0")
            self.assertEqual(sink.connections(), 3)

            def quit_client(c):
                gate.wait(10)
                c.cmd("QUIT")
            ts = [threading.Thread(target=quit_client, args=(c,)) for c in clients]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
        finally:
            for c in clients:
                c.close()
        wait_for(lambda: len(sink.events("disconnect")) == 2, 10, what="two connections QUIT")
        self.assertEqual(pool_metric(gw, "idle_connections"), 1)
        self.assertEqual(pool_metric(gw, "closed_total", reason="full"), 2)

    def test_drain_quits_pooled_connections(self):
        sink, gw = self.pair(*XCLIENT)
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "only")[0], "250 2.0.0")
        self.wait_pooled(gw)
        gw.expect_exit = True
        code = gw.stop()
        self.assertEqual(code, 0)
        sink.wait_closed(timeout=10)
        self.assertEqual(sink.commands("QUIT"), ["QUIT"])

    # A relay at its process limit (sink --max-sessions, like Postfix's
    # default_process_limit) greets a new connection only when another ends.
    # Without giving pooled connections back, a session would wait for its
    # greeting until the pool's idle timeout (60 s here) and get 451 at the
    # connect timeout (8 s).
    BUSY = {"idle_timeout_seconds": 60, "connect_timeout_seconds": 8}

    def test_a_busy_relay_gets_idle_connections_back_from_the_other_threads(self):
        sink = self.start_sink("--max-sessions", "1")
        gw = self.start_gateway(sink.port, policy=POLICY, config={
            "threads": 2, "upstream": self.BUSY,
            # Accepted connections go round-robin: one to each thread.
            "listeners": [{"address": "127.0.0.1", "port": 0, "reuse_port": False}]})
        self.assertReply(send_one(gw.port, "127.0.0.2", "a.example", "first")[0], "250 2.0.0")
        self.wait_pooled(gw)
        # The other thread's pool is empty: it connects, and the relay's only
        # session is the idle one in the first thread's pool.
        t0 = time.monotonic()
        self.assertReply(send_one(gw.port, "127.0.0.3", "b.example", "second")[0], "250 2.0.0")
        self.assertLess(time.monotonic() - t0, 6, "greeted once the idle connection went")
        self.assertEqual(pool_metric(gw, "closed_total", reason="relay_busy"), 1)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="empty"), 2)
        self.assertEqual(len(stored_by_token(sink)), 2)

    def test_a_connection_released_while_a_session_waits_for_the_relay_is_closed(self):
        sink = self.start_sink("--max-sessions", "2")
        gw = self.start_gateway(sink.port, policy=POLICY,
                                config={"threads": 1, "upstream": self.BUSY})
        busy = [client_from("127.0.0.2", gw.port), client_from("127.0.0.3", gw.port)]
        waiting = client_from("127.0.0.4", gw.port)
        try:
            for c in busy + [waiting]:
                self.assertEqual(c.cmd("EHLO x.example").code, 250)
            for c in busy:  # both relay sessions in use
                self.assertEqual(c.cmd("MAIL FROM:<alice@demo.example>").code, 250)
                self.assertEqual(c.cmd("RCPT TO:<bob@dest.example>").code, 250)
            result = {}

            def third():
                result["mail"] = waiting.cmd("MAIL FROM:<alice@demo.example>")
                result["rcpt"] = waiting.cmd("RCPT TO:<bob@dest.example>")
            t = threading.Thread(target=third)
            t.start()
            time.sleep(1.5)  # past kRelayBusyAfter: the third session waits
            self.assertTrue(t.is_alive(), "the relay cannot greet a third session yet")
            # The first session ends: its connection goes back to the relay
            # instead of into the pool, and the third session is greeted.
            self.assertReply(busy[0].data(message(subject="one")), "250 2.0.0")
            busy[0].cmd("QUIT")
            t.join(6)
            self.assertFalse(t.is_alive())
            self.assertEqual(result["rcpt"].code, 250, result["rcpt"].text)
            self.assertReply(waiting.data(message(subject="three")), "250 2.0.0")
            self.assertReply(busy[1].data(message(subject="two")), "250 2.0.0")
        finally:
            for c in busy + [waiting]:
                c.close()
        self.assertEqual(pool_metric(gw, "closed_total", reason="relay_busy"), 1)
        self.assertEqual(sorted(stored_by_token(sink)), ["one", "three", "two"])

    def test_pool_size_zero_opens_a_connection_per_session(self):
        sink, gw = self.pair(*XCLIENT, pool_size=0)
        for addr in ("127.0.0.2", "127.0.0.3"):
            self.assertReply(send_one(gw.port, addr, "x.example", addr)[0], "250 2.0.0")
        sink.wait_closed(timeout=10)
        self.assertEqual(sink.connections(), 2)
        self.assertEqual(len(sink.commands("QUIT")), 2)
        self.assertEqual(pool_metric(gw, "idle_connections"), 0)
        self.assertEqual(pool_metric(gw, "checkouts_total", result="empty"), 0)


if __name__ == "__main__":
    harness.main()
