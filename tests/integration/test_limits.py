#!/usr/bin/python3
"""Limits and timeouts (issue 5, point 7): recipients, SIZE, message and
header size, command line length, errors per session, connections per
client and in total, slowloris (minimum data rate), command and data-block
timeouts."""

import os
import re
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, client_from, message  # noqa: E402


def reply_or_eof(c, timeout):
    """The next reply, or None if the server closed the connection first."""
    try:
        return c.read_reply(timeout=timeout)
    except ConnectionError:
        return None


TIMEOUT_BUG = ("no 421 before the close: the client saw EOF without a reply "
               "(see the final report: beast::tcp_stream closes the socket on "
               "its read timeout, so the 421 cannot be written)")




class LimitsTest(GatewayTestCase):

    def begin(self, c, rcpts=1):
        self.assertReply(c.ehlo(), "250")
        self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
        for i in range(rcpts):
            self.assertReply(c.cmd(f"RCPT TO:<r{i}@dest.example>"), "250 2.1.5")

    # ---- recipients and sizes -----------------------------------------
    def test_too_many_recipients(self):
        # 100 is the lowest max_recipients (RFC 5321 4.5.3.1.8).
        sink, gw = self.setup_pair(config={"limits": {"max_recipients": 100}})
        with Client(gw.port) as c:
            self.begin(c, rcpts=100)
            self.assertReply(c.cmd("RCPT TO:<r100@dest.example>"), "452 4.5.3")
            self.assertReply(c.cmd("RCPT TO:<r101@dest.example>"), "452 4.5.3")
            self.assertReply(c.data(message()), "250 2.0.0", "queued as")
        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0][0]["rcpt_tos"], [f"r{i}@dest.example" for i in range(100)])
        self.assertEqual(len(sink.commands("RCPT")), 100)

    def test_size_parameter_over_limit(self):
        sink, gw = self.setup_pair(config={"limits": {"max_message_bytes": 65536}})
        with Client(gw.port) as c:
            self.assertIn("SIZE 65536", c.ehlo().text)
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example> SIZE=65537"), "552 5.3.4")
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example> SIZE=65536"), "250 2.1.0")
        self.assertEqual(sink.commands("MAIL"), ["MAIL FROM:<alice@demo.example> SIZE=65536"])
        self.assertNothingStored(sink)

    def test_message_over_max_message_bytes(self):
        sink, gw = self.setup_pair(config={"limits": {"max_message_bytes": 65536}})
        with Client(gw.port) as c:
            self.begin(c)
            self.assertReply(c.cmd("DATA"), "354")
            c.send(message(body="first line\r\n"))
            sink.wait_events("data_start")  # the header passed; DATA is upstream
            for _ in range(80):
                c.send(b"y" * 998 + b"\r\n")
            c.send(b".\r\n")
            self.assertReply(c.read_reply(), "552 5.3.4", "exceeds")
            self.assertReply(c.cmd("NOOP"), "250 2.0.0")
        t = gw.wait_transactions(1)[0]
        self.assertEqual(t["reason"], "message_too_big")
        sink.wait_events("aborted_mid_data")
        self.assertNothingStored(sink)

    def test_message_at_the_limit_passes(self):
        sink, gw = self.setup_pair(config={"limits": {"max_message_bytes": 65536}})
        base = message(body="")
        filler = 65536 - len(base)
        body = (b"z" * 998 + b"\r\n") * (filler // 1000)
        body += b"z" * (filler - len(body) - 2) + b"\r\n"
        content = base + body
        self.assertEqual(len(content), 65536)
        with Client(gw.port) as c:
            self.begin(c)
            self.assertReply(c.data(content), "250 2.0.0")
        self.assertTrue(sink.stored()[0][1].endswith(content))

    def test_header_section_over_max_header_bytes(self):
        sink, gw = self.setup_pair(config={"limits": {"max_header_bytes": 4096}})
        hdrs = [f"X-Filler-{i}: " + "h" * 70 for i in range(80)]  # ~6.5 KB
        with Client(gw.port) as c:
            self.begin(c)
            self.assertReply(c.data(message(extra_headers=hdrs)), "552 5.3.4",
                             "header section is too large")
        self.assertEqual(gw.wait_transactions(1)[0]["reason"], "header_too_big")
        self.assertNothingStored(sink)
        self.assertEqual(sink.commands("DATA"), [])

    def test_text_line_over_1000(self):
        sink, gw = self.setup_pair()
        with Client(gw.port) as c:
            self.begin(c)
            # RFC 5321 4.5.3.1.6: 1000 octets including the CRLF.
            self.assertReply(c.data(message(body="a" * 998 + "\r\n")), "250 2.0.0")
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            self.assertReply(c.data(message(body="a" * 999 + "\r\n")), "554 5.6.0",
                             "longer than 1000")
        self.assertEqual(len(sink.stored()), 1)

    # ---- command stage ------------------------------------------------
    def test_command_line_over_512(self):
        sink, gw = self.setup_pair()
        with Client(gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("NOOP " + "x" * 600), "500 5.5.2", "Line too long")
            local = "a" * 64
            long_mail = f"MAIL FROM:<{local}@{'d' * 440}.demo.example>"
            self.assertGreater(len(long_mail) + 2, 512)
            self.assertReply(c.cmd(long_mail), "500 5.5.2", "Line too long")
            # A line of exactly 512 octets including CRLF is fine.
            self.assertReply(c.cmd("NOOP " + "x" * 505), "250 2.0.0")
        self.assertEqual(sink.connections(), 0)

    def test_errors_per_session(self):
        sink, gw = self.setup_pair(config={"limits": {"max_errors": 3}})
        with Client(gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("XYZZY"), "500 5.5.2")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "503 5.5.1")
            c.send("FOO BAR\r\n")
            self.assertReply(c.read_reply(), "500 5.5.2")
            self.assertReply(c.read_reply(), "421 4.7.0", "Too many errors")
            self.assertTrue(c.is_closed())
        self.assertEqual(gw.wait_connections_logged(1)[0]["transactions"], 0)
        self.assertEqual(sink.connections(), 0)

    def test_rejected_transactions_count_as_errors(self):
        sink, gw = self.setup_pair(config={"limits": {"max_errors": 2}})
        with Client(gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<a@other.example>"), "550 5.7.1")
            c.send("MAIL FROM:<b@other.example>\r\n")
            self.assertReply(c.read_reply(), "550 5.7.1")
            self.assertReply(c.read_reply(), "421 4.7.0")
            self.assertTrue(c.is_closed())
        self.assertEqual(sink.connections(), 0)

    # ---- connections --------------------------------------------------
    def test_max_connections_per_client(self):
        sink, gw = self.setup_pair(config={"limits": {"max_connections_per_client": 2}})
        a, b = Client(gw.port), Client(gw.port)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertReply(a.greeting, "220")
        self.assertReply(b.greeting, "220")
        with Client(gw.port) as c:
            self.assertReply(c.greeting, "421 4.7.0", "Too many connections")
            self.assertTrue(c.is_closed())
        # Another client address is not affected.
        with client_from("127.0.0.2", gw.port) as d:
            self.assertReply(d.greeting, "220")
        # A freed slot can be used again.
        self.assertReply(a.cmd("QUIT"), "221 2.0.0")
        a.close()
        # The slot is released when the session's coroutine ends, just after
        # its audit line: retry briefly rather than race it.
        def greeted():
            with Client(gw.port) as e:
                return e.greeting.code == 220
        harness.wait_for(greeted, 10, interval=0.1, what="a freed per-client slot")
        self.assertReply(b.ehlo(), "250")  # the held connection still works
        status, _, body = gw.http_get("/metrics")
        self.assertEqual(status, 200)
        # At least the refused third connection (a retry above may add more).
        m = re.search(r'^relaygate_connections_total\{result="rejected_limit"\} (\d+)', body, re.M)
        self.assertIsNotNone(m, body)
        self.assertGreaterEqual(int(m.group(1)), 1)

    def test_max_connections_total(self):
        sink, gw = self.setup_pair(config={"limits": {"max_connections": 2}})
        a = client_from("127.0.0.3", gw.port, timeout=10)
        b = client_from("127.0.0.4", gw.port, timeout=10)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertReply(a.greeting, "220")
        self.assertReply(b.greeting, "220")
        with client_from("127.0.0.5", gw.port) as c:
            self.assertReply(c.greeting, "421 4.7.0", "Too many connections")
            self.assertTrue(c.is_closed())

    # ---- timeouts -----------------------------------------------------
    def test_slowloris_min_data_rate(self):
        sink, gw = self.setup_pair(config={"timeouts": {"data_grace_seconds": 1,
                                                        "min_data_rate_bytes_per_second": 1000}})
        with Client(gw.port, timeout=20) as c:
            self.begin(c)
            self.assertReply(c.cmd("DATA"), "354")
            c.send(message(body="start\r\n"))
            sink.wait_events("data_start")
            started = time.monotonic()
            reply = None
            # Trickle ~50 bytes/s, far under the 1000 bytes/s floor.
            while time.monotonic() - started < 15:
                try:
                    c.send(b"slow-bytes")
                except OSError:  # reset by the gateway: cut off without a reply
                    ended = True
                    break
                r, _, _ = select.select([c.sock], [], [], 0.2)
                if r:
                    ended = True
                    reply = reply_or_eof(c, 5)
                    break
            else:
                ended = False
            self.assertTrue(ended, "a slowloris was not cut off within 15 s")
            self.assertLess(time.monotonic() - started, 8)
            self.assertTrue(reply is None or c.is_closed())
        conn = gw.wait_connections_logged(1)[0]
        self.assertEqual(conn["close"], "data_too_slow")
        sink.wait_events("aborted_mid_data")
        self.assertNothingStored(sink)
        self.assertTrue(all(t["reason"] != "accepted" for t in gw.transactions()))
        self.assertIsNotNone(reply, TIMEOUT_BUG)
        self.assertReply(reply, "421 4.4.2", "too slow")

    def test_fast_enough_data_passes_rate_check(self):
        sink, gw = self.setup_pair(config={"timeouts": {"data_grace_seconds": 1,
                                                        "min_data_rate_bytes_per_second": 1000}})
        with Client(gw.port) as c:
            self.begin(c)
            self.assertReply(c.cmd("DATA"), "354")
            content = message(body="".join(f"line {i}\r\n" for i in range(300)))
            # 3 chunks over ~1.5 s: ~2.5 KB/s on average, above the floor.
            for i in range(3):
                c.send(content[i * len(content) // 3:(i + 1) * len(content) // 3])
                time.sleep(0.5)
            c.send(b".\r\n")
            self.assertReply(c.read_reply(), "250 2.0.0")
        self.assertEqual(len(sink.stored()), 1)

    def test_command_timeout(self):
        # 10 s is the lowest command_seconds (see README: Config).
        sink, gw = self.setup_pair(config={"timeouts": {"command_seconds": 10}})
        with Client(gw.port) as c:
            self.begin(c)  # a transaction open upstream, then silence
            started = time.monotonic()
            reply = reply_or_eof(c, 20)
            self.assertLess(time.monotonic() - started, 14)
            self.assertTrue(reply is None or c.is_closed())
        self.assertEqual(gw.wait_connections_logged(1)[0]["close"], "timeout")
        sink.wait_idle()
        self.assertNothingStored(sink)
        self.assertIsNotNone(reply, TIMEOUT_BUG)
        self.assertReply(reply, "421 4.4.2", "Timeout")

    def test_data_block_timeout(self):
        sink, gw = self.setup_pair(config={"timeouts": {"data_block_seconds": 10,
                                                        "min_data_rate_bytes_per_second": 0}})
        with Client(gw.port) as c:
            self.begin(c)
            self.assertReply(c.cmd("DATA"), "354")
            c.send(message(body="partial\r\n"))
            sink.wait_events("data_start")
            reply = reply_or_eof(c, 20)
            self.assertTrue(reply is None or c.is_closed())
        self.assertEqual(gw.wait_connections_logged(1)[0]["close"], "timeout")
        sink.wait_events("aborted_mid_data")
        self.assertNothingStored(sink)
        self.assertIsNotNone(reply, TIMEOUT_BUG)
        self.assertReply(reply, "421 4.4.2", "Timeout")


if __name__ == "__main__":
    harness.main()
