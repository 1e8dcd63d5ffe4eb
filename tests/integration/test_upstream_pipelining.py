#!/usr/bin/python3
"""RFC 2920 pipelining towards the relay (upstream.pipelining and
upstream.defer_mail): a client's MAIL and first RCPT go to a relay that
offers PIPELINING in one write, and the client's replies come back in
order. With defer_mail (the default) that holds for a client that waits
for each reply too: relaygate answers the MAIL itself and the relay's
refusal of it answers the RCPT. Without it only a client that pipelines
(swaks --pipeline) gets a group. The relays are the scriptable sink
(tests/peers/sink.py, offering PIPELINING with --ehlo-extra) with its
fault injection, and Postfix's smtp-sink.

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
    return waiting_send(port, "--pipeline", *args)


def waiting_send(port, *args):
    """One message, each command after the last reply; (exit, server lines)."""
    code, out = swaks(port, "--from", "alice@demo.example", "--to", "bob@dest.example", *args)
    return code, out, swaks_server_lines(out)


def reply_codes(lines):
    """The codes of the last line of each reply."""
    return [l[:3] for l in lines if re.match(r"^\d{3} ", l)]


NO_DEFER = {"upstream": {"defer_mail": False}}


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
        self.assertEqual(reply_codes(lines)[-5:], ["250", "250", "354", "250", "221"], lines)

    def test_turned_off_the_mail_goes_alone(self):
        sink, gw = self.pair(upstream={"pipelining": False})
        code, out, _ = pipelined_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 0)

    def test_a_client_that_waits_gets_the_mail_answered_and_sent_with_its_rcpt(self):
        sink, gw = self.pair()
        code, out, lines = waiting_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 1)
        # A group for a client that waited for the MAIL's reply: relaygate
        # answered the MAIL before the relay saw it.
        self.assertEqual(reply_codes(lines)[-5:], ["250", "250", "354", "250", "221"], lines)

    def test_without_defer_a_client_that_waits_gets_no_group(self):
        sink, gw = self.pair(**NO_DEFER)
        code, out, lines = waiting_send(gw.port)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(sink.stored()), 1)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 0)

    def test_relay_refuses_the_mail_its_reply_answers_the_rcpt_nothing_stored(self):
        sink, gw = self.pair("--fail-at", "mail", "--fail-mode", "reply5xx")
        for send in (waiting_send, pipelined_send):
            code, out, lines = send(gw.port)
            self.assertNotEqual(code, 0)
            codes = reply_codes(lines)
            # EHLO, MAIL (relaygate's 250), RCPT (the relay's 5xx for the
            # MAIL), and 503 for the DATA of a transaction that is over.
            self.assertEqual(codes[2], "250", lines)
            self.assertTrue(codes[3].startswith("5") and codes[3] != "503", lines)
            if send is pipelined_send:
                self.assertEqual(codes[4], "503", lines)
        self.assertEqual(sink.stored(), [])
        txns = wait_for(lambda: len(gw.transactions()) >= 2 and gw.transactions(), 10,
                        what="2 audit lines")
        self.assertEqual([(t["reason"], t["stage"]) for t in txns],
                         [("upstream_rejected", "mail_from")] * 2)

    def test_relay_refuses_the_mail_without_defer_the_rcpt_gets_503_nothing_stored(self):
        sink, gw = self.pair("--fail-at", "mail", "--fail-mode", "reply5xx", **NO_DEFER)
        code, out, lines = pipelined_send(gw.port)
        self.assertNotEqual(code, 0)
        self.assertIn("503 5.5.1 Bad sequence of commands", lines, out)
        codes = reply_codes(lines)
        self.assertTrue(codes[2].startswith("5") and codes[2] != "503", lines)  # the MAIL's
        self.assertEqual(codes[3], "503", lines)  # its RCPT
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
        for send in (pipelined_send, waiting_send, pipelined_send, waiting_send):
            code, out, _ = send(gw.port)
            self.assertEqual(code, 0, out)
        self.assertEqual(metric(gw, "relaygate_upstream_pipelined_total"), 4)
        txns = wait_for(lambda: len(gw.transactions()) >= 4 and gw.transactions(), 10,
                        what="4 audit lines")
        self.assertEqual([t["reason"] for t in txns], ["accepted"] * 4)


if __name__ == "__main__":
    import harness
    harness.main()
