#!/usr/bin/python3
"""Proxy behaviour end to end: authorized mail arrives byte-identical apart
from the verdict header; unauthorized mail never reaches the upstream's
store; pipelining and upstream connection reuse."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, message  # noqa: E402


def policy_hash(policy_path):
    out = subprocess.run([harness.OPTIONS["relaygate"], "check", "--policy", policy_path],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"policy hash: (sha256:[0-9a-f]{64})", out)
    assert m, out
    return m.group(1)


def strip_field(raw, name):
    """Remove every field `name` (with continuation lines) from the header
    section of raw CRLF message bytes -- what the gateway must do."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    out, skipping = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == name.lower().encode()
        if not skipping:
            out.append(line)
    return b"\r\n".join(out) + sep + body


class AuthorizedTest(GatewayTestCase):

    def send_one(self, port, content, rcpts=("bob@dest.example",), mail="alice@demo.example"):
        with Client(port) as c:
            self.assertReply(c.ehlo(), "250")
            self.assertReply(c.cmd(f"MAIL FROM:<{mail}>"), "250 2.1.0")
            for r in rcpts:
                self.assertReply(c.cmd(f"RCPT TO:<{r}>"), "250 2.1.5")
            final = c.data(content)
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        return final

    def test_byte_identical_with_verdict_header_queue_id_and_xclient(self):
        sink, gw = self.setup_pair("--ehlo-extra", "XCLIENT")
        # A client-sent verdict header (folded, odd case) must be removed;
        # everything else -- dot lines, an empty last line, 8-bit-free odd
        # spacing, a trailing-whitespace line -- must arrive unchanged.
        content = message(
            extra_headers=["X-RELAYGATE-VERDICT: tenant=evil;",
                           "  identity=forged; policy=none",
                           "X-Spacing:   keep   this  ",
                           "x-relaygate-verdict:tenant=evil2"],
            body="Line 1\r\n.starts with a dot\r\n..two dots\r\n.\r\n \r\n\tTab\r\n\r\n")
        final = self.send_one(gw.port, content)
        self.assertReply(final, "250 2.0.0")
        m = re.search(r"queued as ([0-9A-F]+)", final.text)
        self.assertIsNotNone(m, final.text)
        qid = m.group(1)

        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        meta, eml = stored[0]
        self.assertEqual(meta["queue_id"], qid)
        self.assertEqual(meta["mail_from"], "alice@demo.example")
        self.assertEqual(meta["rcpt_tos"], ["bob@dest.example"])
        # XCLIENT told the signer who the real client is.
        self.assertIsNotNone(meta["xclient"])
        self.assertEqual(meta["xclient"].get("ADDR"), "127.0.0.1")
        self.assertEqual(meta["xclient"].get("HELO"), "client.demo.example")

        expected_verdict = ("X-Relaygate-Verdict: tenant=demo; identity=network; "
                            f"domain=demo.example; policy={policy_hash(gw.policy_path)}\r\n")
        expected = expected_verdict.encode() + strip_field(content, "X-Relaygate-Verdict")
        self.assertEqual(eml, expected)
        self.assertEqual(eml.lower().count(b"x-relaygate-verdict"), 1)

        txns = gw.wait_transactions(1)
        self.assertEqual(len(txns), 1)
        t = txns[0]
        self.assertEqual(t["reason"], "accepted")
        self.assertEqual(t["queue_id"], qid)
        self.assertEqual(t["reply"], final.lines[0])
        self.assertEqual(t["tenant"], "demo")
        self.assertEqual(t["identity"], "network")
        self.assertEqual(t["envelope_domain"], "demo.example")
        self.assertEqual(t["header_from_domain"], "demo.example")
        self.assertEqual(t["recipients"], 1)
        self.assertEqual(t["client"], "127.0.0.1")
        conns = gw.wait_connections_logged(1)
        self.assertEqual(conns[0]["transactions"], 1)

    def test_header_only_message(self):
        # No empty line: the whole message is its header section, decided
        # at the final dot (the DATA goes upstream only then).
        sink, gw = self.setup_pair()
        content = b"From: alice@demo.example\r\nSubject: header only\r\n"
        self.assertReply(self.send_one(gw.port, content), "250 2.0.0")
        _, eml = sink.stored()[0]
        verdict, _, rest = eml.partition(b"\r\n")
        self.assertTrue(verdict.startswith(b"X-Relaygate-Verdict: tenant=demo;"))
        self.assertEqual(rest, content)

    def test_report_mode_passes_and_marks_the_verdict(self):
        policy = {"version": 1, "tenants": {
            "demo": {"mode": "report", "domains": ["demo.example"],
                     "identities": [{"networks": ["127.0.0.1/32"]}]}}}
        sink, gw = self.setup_pair(policy=policy)
        final = self.send_one(gw.port, message(from_hdr="ceo@elsewhere.example"))
        self.assertReply(final, "250 2.0.0")
        _, eml = sink.stored()[0]
        verdict = eml.split(b"\r\n", 1)[0].decode()
        self.assertTrue(verdict.startswith("X-Relaygate-Verdict: tenant=demo; identity=network; "
                                           "domain=elsewhere.example; policy=sha256:"), verdict)
        self.assertTrue(verdict.endswith("; mode=report; would-reject=from_domain_unauthorized"),
                        verdict)
        t = gw.wait_transactions(1)[0]
        self.assertIs(t["report_only"], True)
        self.assertEqual(t["reason"], "accepted")

    def test_no_xclient_when_not_advertised(self):
        sink, gw = self.setup_pair()
        self.assertReply(self.send_one(gw.port, message()), "250 2.0.0")
        meta, _ = sink.stored()[0]
        self.assertIsNone(meta["xclient"])
        self.assertEqual(sink.commands("XCLIENT"), [])

    def test_swaks_message(self):
        sink, gw = self.setup_pair()
        content = message(from_hdr="alice@demo.example", body="swaks body\r\nsecond line\r\n")
        path = os.path.join(self.workdir, "msg.eml")
        with open(path, "wb") as fh:
            fh.write(content[:-2])  # swaks adds the CRLF before "."
        rc, out = harness.swaks(gw.port, "--from", "alice@demo.example",
                                "--to", "bob@dest.example,carol@dest.example",
                                "--data", "@" + path)
        self.assertEqual(rc, 0, out)
        replies = harness.swaks_server_lines(out)
        final = [l for l in replies if "queued as" in l]
        self.assertEqual(len(final), 1, out)
        self.assertRegex(final[0], r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
        qid = final[0].rsplit(" ", 1)[1]
        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        meta, eml = stored[0]
        self.assertEqual(meta["queue_id"], qid)
        self.assertEqual(meta["rcpt_tos"], ["bob@dest.example", "carol@dest.example"])
        verdict, _, rest = eml.partition(b"\r\n")
        self.assertTrue(verdict.startswith(b"X-Relaygate-Verdict: tenant=demo; identity=network;"))
        self.assertEqual(rest, content)
        self.assertEqual(gw.wait_transactions(1)[0]["queue_id"], qid)


class UnauthorizedTest(GatewayTestCase):

    def setUp(self):
        super().setUp()
        self.sink, self.gw = self.setup_pair()

    def assertSinkUntouched(self):
        self.assertEqual(self.sink.connections(), 0, "the upstream was contacted")
        self.assertNothingStored(self.sink)

    def assertNoUpstreamData(self):
        """The transaction may have reached MAIL/RCPT upstream, never DATA."""
        self.assertNothingStored(self.sink)
        self.assertEqual(self.sink.commands("DATA"), [])
        self.assertEqual(self.sink.events("data_start"), [])

    def assertNotCommitted(self, mid_data):
        """Nothing stored, no final dot upstream. mid_data: DATA went
        upstream, so the gateway must have closed the upstream connection
        without the dot (the sink logs aborted_mid_data); otherwise the
        upstream transaction ended with RSET before any DATA."""
        if mid_data:
            self.sink.wait_events("aborted_mid_data")
            self.assertEqual(len(self.sink.events("data_start")), 1)
        else:
            wait = harness.wait_for
            wait(lambda: self.sink.commands("RSET"), 10, what="RSET upstream")
            self.assertEqual(self.sink.commands("DATA"), [])
        self.assertNothingStored(self.sink)

    def test_unauthorized_envelope_never_contacts_upstream(self):
        with Client(self.gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<ceo@other.example>"), "550 5.7.1",
                             "Sender domain is not authorized")
            # The session continues and a later RCPT is out of sequence.
            self.assertReply(c.cmd("RCPT TO:<victim@dest.example>"), "503 5.5.1")
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        t = self.gw.wait_transactions(1)[0]
        self.assertEqual(t["reason"], "envelope_domain_unauthorized")
        self.assertEqual(t["stage"], "mail_from")
        self.assertSinkUntouched()

    def test_swaks_unauthorized_envelope(self):
        rc, out = harness.swaks(self.gw.port, "--from", "ceo@other.example",
                                "--to", "victim@dest.example")
        self.assertNotEqual(rc, 0)
        self.assertTrue(any(l.startswith("550 5.7.1 Sender domain is not authorized")
                            for l in harness.swaks_server_lines(out)), out)
        self.assertSinkUntouched()

    def test_unknown_client_address(self):
        # 127.0.0.2 is loopback too, but not in any tenant's networks.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", self.gw.port))
        c = Client.__new__(Client)
        c.sock, c.buf, c.timeout = s, b"", 10
        with c:
            self.assertReply(c.read_reply(), "220")
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "550 5.7.1",
                             "not identified")
        self.assertEqual(self.gw.wait_transactions(1)[0]["reason"], "tenant_unknown")
        self.assertSinkUntouched()

    def header_reject(self, content, status, reason, text=None):
        with Client(self.gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            self.assertReply(c.data(content), status, text)
            # The session is still usable after a rejected message.
            self.assertReply(c.cmd("NOOP"), "250 2.0.0")
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        t = self.gw.wait_transactions(1)[0]
        self.assertEqual(t["reason"], reason)
        self.assertEqual(t["queue_id"], "")
        self.assertNoUpstreamData()

    def test_unauthorized_header_from(self):
        self.header_reject(message(from_hdr="CEO <ceo@other.example>"), "550 5.7.1",
                           "from_domain_unauthorized", "From header domain is not authorized")

    def test_multiple_from_fields(self):
        self.header_reject(message(extra_headers=["From: ceo@other.example"]), "550 5.6.0",
                           "from_multiple_fields")

    def test_from_with_two_mailboxes(self):
        self.header_reject(message(from_hdr="alice@demo.example, ceo@other.example"),
                           "550 5.6.0", "from_multiple_mailboxes")

    def test_display_name_spoof(self):
        self.header_reject(message(from_hdr='"ceo@other.example" <alice@demo.example>'),
                           "550 5.7.1", "display_name_address")

    def test_from_header_is_case_insensitive_and_spaced(self):
        # "fRoM :" is a From field too, so this is a second From.
        self.header_reject(message(extra_headers=["fRoM : ceo@other.example"]), "550 5.6.0",
                           "from_multiple_fields")

    def test_bare_lf_in_header_rejected_before_data_upstream(self):
        content = message(extra_headers=["X-Smuggle: a\nFrom: ceo@other.example"])
        self.header_reject(content, "554 5.6.0", "data_bare_line_ending")

    def smuggle(self, separator, split):
        """A message whose body contains `separator` (an end of data as
        lenient receivers read it) followed by a smuggled transaction.
        split=False: all in one write (rejected before DATA goes upstream);
        split=True: the header and first line first, the smuggling part once
        the upstream is in DATA (rejected mid-DATA, upstream aborted)."""
        smuggled = (b"MAIL FROM:<ceo@other.example>" + b"\r\n"
                    b"RCPT TO:<victim@dest.example>" + b"\r\n"
                    b"DATA" + b"\r\n"
                    b"From: CEO <ceo@other.example>" + b"\r\n"
                    b"Subject: smuggled" + b"\r\n\r\nPay now." + b"\r\n")
        good = message()
        with Client(self.gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            self.assertReply(c.cmd("DATA"), "354")
            if split:
                c.send(good)
                self.sink.wait_events("data_start")
                c.send(b"body" + separator + smuggled + b".\r\n")
            else:
                c.send(good + b"body" + separator + smuggled + b".\r\n")
            final = c.read_reply()
            self.assertReply(final, "554 5.6.0", "bare CR or bare LF")
            # Exactly one reply: the smuggled commands were data, not commands.
            self.assertReply(c.cmd("NOOP"), "250 2.0.0")
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        t = self.gw.wait_transactions(1)[0]
        self.assertEqual(t["reason"], "data_bare_line_ending")
        self.assertEqual(len(self.gw.transactions()), 1)
        self.assertNotCommitted(mid_data=split)
        # The upstream saw exactly one MAIL and never the smuggled sender.
        self.assertEqual(self.sink.commands("MAIL"), ["MAIL FROM:<alice@demo.example>"])

    def test_smuggling_lf_dot_lf(self):
        self.smuggle(b"\n.\n", split=False)

    def test_smuggling_lf_dot_lf_mid_data(self):
        self.smuggle(b"\n.\n", split=True)

    def test_smuggling_crlf_dot_lf_mid_data(self):
        self.smuggle(b"\r\n.\n", split=True)

    def test_smuggling_lf_dot_crlf_mid_data(self):
        self.smuggle(b"\n.\r\n", split=True)

    def test_smuggling_cr_dot_cr_mid_data(self):
        self.smuggle(b"\r.\r", split=True)

    def test_empty_message(self):
        with Client(self.gw.port) as c:
            c.ehlo()
            c.cmd("MAIL FROM:<alice@demo.example>")
            c.cmd("RCPT TO:<bob@dest.example>")
            self.assertReply(c.cmd("DATA"), "354")
            self.assertReply(c.cmd("."), "550 5.6.0", "must have a From")
        self.assertEqual(self.gw.wait_transactions(1)[0]["reason"], "from_missing")
        self.assertNoUpstreamData()

    def test_nul_in_body(self):
        with Client(self.gw.port) as c:
            c.ehlo()
            c.cmd("MAIL FROM:<alice@demo.example>")
            c.cmd("RCPT TO:<bob@dest.example>")
            self.assertReply(c.cmd("DATA"), "354")
            c.send(message(body="first\r\n"))
            self.sink.wait_events("data_start")
            c.send(b"a\x00b\r\n.\r\n")
            self.assertReply(c.read_reply(), "554 5.6.0", "NUL")
        self.assertNotCommitted(mid_data=True)


class PipeliningTest(GatewayTestCase):

    def test_pipelined_group_in_one_write(self):
        sink, gw = self.setup_pair()
        with Client(gw.port) as c:
            self.assertIn("PIPELINING", c.ehlo().text)
            c.send("MAIL FROM:<alice@demo.example>\r\nRCPT TO:<bob@dest.example>\r\n"
                   "RCPT TO:<carol@dest.example>\r\nDATA\r\n")
            self.assertReply(c.read_reply(), "250 2.1.0")
            self.assertReply(c.read_reply(), "250 2.1.5")
            self.assertReply(c.read_reply(), "250 2.1.5")
            self.assertReply(c.read_reply(), "354")
            content = message()
            # End of data and the next commands pipelined together.
            c.send(harness.dot_stuff(content) + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
            self.assertReply(c.read_reply(), "250 2.0.0", "queued as")
            self.assertReply(c.read_reply(), "250 2.0.0")
            self.assertReply(c.read_reply(), "250 2.0.0")
            self.assertReply(c.read_reply(), "221 2.0.0")
        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0][0]["rcpt_tos"], ["bob@dest.example", "carol@dest.example"])
        self.assertTrue(stored[0][1].endswith(content))

    def test_data_before_354_is_a_synchronization_error(self):
        sink, gw = self.setup_pair()
        with Client(gw.port) as c:
            c.ehlo()
            c.send(b"MAIL FROM:<alice@demo.example>\r\nRCPT TO:<bob@dest.example>\r\nDATA\r\n"
                   + message() + b".\r\n")
            self.assertReply(c.read_reply(), "250 2.1.0")
            self.assertReply(c.read_reply(), "250 2.1.5")
            self.assertReply(c.read_reply(), "554 5.5.0", "synchronization")
            self.assertTrue(c.is_closed(), "connection should be closed after 554 5.5.0")
        self.assertEqual(gw.wait_transactions(1)[0]["reason"], "pipelining_violation")
        sink.wait_idle()
        self.assertNothingStored(sink)
        self.assertEqual(sink.commands("DATA"), [])

    def test_two_transactions_reuse_one_upstream_connection(self):
        sink, gw = self.setup_pair()
        with Client(gw.port) as c:
            c.ehlo()
            qids = []
            for i in range(3):
                self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
                self.assertReply(c.cmd(f"RCPT TO:<r{i}@dest.example>"), "250 2.1.5")
                r = c.data(message(subject=f"n{i}"))
                self.assertReply(r, "250 2.0.0")
                qids.append(r.text.rsplit(" ", 1)[1])
            # A rejected transaction in between does not cost the connection.
            self.assertReply(c.cmd("MAIL FROM:<x@other.example>"), "550 5.7.1")
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RSET"), "250 2.0.0")
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<last@dest.example>"), "250 2.1.5")
            self.assertReply(c.data(message(subject="last")), "250 2.0.0")
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        stored = sink.stored()
        self.assertEqual(len(stored), 4)
        self.assertTrue(set(qids) <= {m["queue_id"] for m, _ in stored})
        self.assertEqual(sink.connections(), 1, "upstream connection not reused")
        self.assertEqual({m["connection"] for m, _ in stored}, {1})
        self.assertEqual(len(sink.commands("RSET")), 1)
        self.assertEqual(len(sink.commands("EHLO")), 1)


class ExplainAgreesWithRunTest(GatewayTestCase):
    """`relaygate explain` runs the gateway's own session, so it refuses what
    `relaygate run` refuses, for the same reason and with the same reply.
    Each case here is one where explain's own fact code (before issue 14)
    accepted what run refused."""

    def setUp(self):
        super().setUp()
        self.sink, self.gw = self.setup_pair()

    def explain(self, mail_from, content=None):
        args = [harness.OPTIONS["relaygate"], "explain", "--policy", self.gw.policy_path,
                "--client-ip", "127.0.0.1", "--mail-from", mail_from, "--json"]
        if content is not None:
            path = os.path.join(self.workdir, "explain.eml")
            with open(path, "wb") as fh:
                fh.write(content)
            args += ["--message", path]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    def run_message(self, raw_data):
        """MAIL, RCPT, DATA, `raw_data` as sent (dot-stuffed, terminated);
        the final reply and the audit line."""
        with Client(self.gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            self.assertReply(c.cmd("DATA"), "354")
            c.send(raw_data)
            final = c.read_reply()
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        return final, self.gw.wait_transactions(1)[0]

    def assertSameRefusal(self, content, raw_data, reason):
        final, t = self.run_message(raw_data)
        self.assertEqual(t["reason"], reason)
        p = self.explain("alice@demo.example", content)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out["final"], "reject")
        self.assertTrue(out["mail_from"]["verdict"] == "accept")
        self.assertEqual(out["refused"]["reason"], reason)
        self.assertEqual(out["refused"]["smtp_reply"], t["reply"])
        self.assertTrue(final.text.startswith(t["reply"]), final.text)
        self.assertNothingStored(self.sink)

    def test_ambiguous_dkim_signature(self):
        # Two d= tags differing in case: a verifier may pick either. explain
        # used to verify it (permerror) and accept the message.
        content = message(extra_headers=[
            "DKIM-Signature: v=1; a=rsa-sha256; d=demo.example; D=other.example; s=sel;"
            " h=from; bh=AAAA; b=AAAA"])
        self.assertSameRefusal(content, harness.dot_stuff(content) + b".\r\n",
                               "dkim_signature_malformed")

    def test_lf_only_message_file(self):
        # The file's bytes are sent as they are: LF-only line endings are
        # refused like the gateway refuses them (explain used to name the
        # header reader's header_malformed).
        content = message().replace(b"\r\n", b"\n")
        self.assertSameRefusal(content, content + b"\r\n.\r\n", "data_bare_line_ending")

    def test_mail_from_the_path_parser_refuses(self):
        # explain used to take the domain after the last "@" and accept.
        with Client(self.gw.port) as c:
            c.ehlo()
            refused = c.cmd("MAIL FROM:<alice smith@demo.example>")
        self.assertEqual(refused.code // 100, 5, refused.text)
        p = self.explain("alice smith@demo.example")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn(refused.text.splitlines()[-1], p.stderr)
        self.assertEqual(p.stdout, "")
        # A path it accepts is decided by the policy, as before.
        p = self.explain("<alice@demo.example>")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout)["final"], "accept")


if __name__ == "__main__":
    harness.main()
