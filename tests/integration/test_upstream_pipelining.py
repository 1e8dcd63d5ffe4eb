#!/usr/bin/python3
"""RFC 2920 pipelining towards the relay (upstream.pipelining): a client
that pipelines (swaks --pipeline) gets its MAIL and first RCPT to a relay
that offers PIPELINING in one write, and both replies back in order. The
relays are the scriptable sink (tests/peers/sink.py, offering PIPELINING
with --ehlo-extra) with its fault injection, and Postfix's smtp-sink.

    tests/integration/test_upstream_pipelining.py --relaygate PATH
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import GatewayTestCase, swaks, swaks_server_lines, wait_for  # noqa: E402
from identity_helpers import metric  # noqa: E402

PIPELINING = ("--ehlo-extra", "PIPELINING")
SMTP_SINK = "/usr/sbin/smtp-sink"


def pipelined_send(port, *args):
    """One message with MAIL, RCPT and DATA pipelined; (exit, server lines)."""
    code, out = swaks(port, "--pipeline", "--from", "alice@demo.example", "--to",
                      "bob@dest.example", *args)
    return code, out, swaks_server_lines(out)


class UpstreamPipeliningTest(GatewayTestCase):

    def pair(self, *sink_args, **config):
        sink = self.start_sink(*PIPELINING, *sink_args)
        gw = self.start_gateway(sink.port, config=config or None)
        return sink, gw

    def test_mail_and_first_rcpt_go_together_and_the_message_is_relayed(self):
        sink, gw = self.pair()
        code, out, lines = pipelined_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 1)
        self.assertEqual(sink.commands("MAIL"), ["MAIL FROM:<alice@demo.example>"])
        self.assertEqual(sink.commands("RCPT"), ["RCPT TO:<bob@dest.example>"])
        # The client's replies in its own order: MAIL, RCPT, DATA, ".".
        codes = [l[:3] for l in lines if re.match(r"^\d{3} ", l)]
        self.assertEqual(codes[-5:], ["250", "250", "354", "250", "221"], lines)

    def test_turned_off_the_mail_goes_alone(self):
        sink, gw = self.pair(upstream={"pipelining": False})
        code, out, _ = pipelined_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 0)

    def test_relay_refuses_the_mail_the_rcpt_gets_503_nothing_stored(self):
        sink, gw = self.pair("--fail-at", "mail", "--fail-mode", "reply5xx")
        code, out, lines = pipelined_send(gw.port)
        self.assertNotEqual(code, 0)
        self.assertIn("503 5.5.1 Bad sequence of commands", lines, out)
        refused = [l for l in lines if l.startswith("5") and not l.startswith("503")]
        self.assertTrue(refused, out)
        self.assertEqual(sink.stored(), [])
        txns = wait_for(lambda: gw.transactions(), 10, what="the audit line")
        self.assertEqual(txns[0]["reason"], "upstream_rejected")
        self.assertEqual(txns[0]["stage"], "mail_from")

    def test_relay_refuses_the_rcpt_of_the_group(self):
        sink, gw = self.pair("--fail-at", "rcpt", "--fail-mode", "reply5xx")
        code, out, lines = pipelined_send(gw.port)
        self.assertNotEqual(code, 0)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 1)
        first = [l for l in lines if re.match(r"^\d{3} ", l)]
        mail_at = next(i for i, l in enumerate(first) if l.startswith("250 2.1.0")
                       or l.startswith("250 OK"))
        self.assertTrue(first[mail_at + 1].startswith("5"), lines)
        self.assertEqual(sink.stored(), [])

    def test_a_group_lost_with_its_connection_is_sent_again_on_a_fresh_one(self):
        sink, gw = self.pair("--fail-at", "mail", "--fail-mode", "close", "--fail-times", "1")
        code, out, _ = pipelined_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(sink.connections(), 2)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 2)

    def test_postfix_smtp_sink(self):
        if not os.path.exists(SMTP_SINK):
            self.skipTest("postfix (smtp-sink) is not installed")
        out_path = os.path.join(self.workdir, "smtp-sink.out")
        with open(out_path, "wb") as out:
            sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-c", "127.0.0.1:0", "100"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(sink.wait)
        self.addCleanup(sink.kill)

        def port():
            ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
            for line in ss.splitlines():
                if f"pid={sink.pid}," in line:
                    return int(line.split()[3].rsplit(":", 1)[1])
            return None

        # smtp-sink offers XCLIENT but answers it 250, not Postfix's 220.
        gw = self.start_gateway(wait_for(port, 10, what="smtp-sink listening"),
                                config={"upstream": {"xclient": False}})
        for _ in range(3):
            code, out, _ = pipelined_send(gw.port)
            self.assertEqual(code, 0, out)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 3)
        txns = wait_for(lambda: len(gw.transactions()) >= 3 and gw.transactions(), 10,
                        what="3 audit lines")
        self.assertEqual([t["reason"] for t in txns], ["accepted"] * 3)


if __name__ == "__main__":
    import harness
    harness.main()
