#!/usr/bin/python3
"""Tests for tests/peers/sink.py.

Run:  /usr/bin/python3 tests/peers/test_sink.py
  or  /usr/bin/python3 -m unittest discover -s tests/peers -p 'test_sink.py'
Each test starts its own sink on 127.0.0.1 port 0 and stops it by PID.
"""

import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SINK = os.path.join(HERE, "sink.py")
PYTHON = "/usr/bin/python3"


class Sink:
    """A sink.py process in a temporary directory."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="relaygate-sink-test-")
        self.maildir = os.path.join(self.dir, "mail")
        self.logfile = os.path.join(self.dir, "log.jsonl")
        portfile = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            [PYTHON, SINK, "--host", "127.0.0.1", "--port", "0",
             "--port-file", portfile, "--maildir", self.maildir,
             "--log", self.logfile, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not os.path.exists(portfile):
            if self.proc.poll() is not None:
                raise RuntimeError("sink exited: " + self.proc.stderr.read().decode())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sink did not start")
            time.sleep(0.05)
        with open(portfile, encoding="ascii") as fh:
            self.port = int(fh.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def events(self, event=None):
        out = []
        if os.path.exists(self.logfile):
            with open(self.logfile, encoding="utf-8") as fh:
                for line in fh:
                    rec = json.loads(line)
                    if event is None or rec["event"] == event:
                        out.append(rec)
        return out

    def wait_event(self, event, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(event)
            if found:
                return found
            time.sleep(0.05)
        return []

    def messages(self):
        if not os.path.isdir(self.maildir):
            return []
        return sorted(f[:-5] for f in os.listdir(self.maildir) if f.endswith(".json"))

    def message(self, qid):
        with open(os.path.join(self.maildir, qid + ".eml"), "rb") as fh:
            body = fh.read()
        with open(os.path.join(self.maildir, qid + ".json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        return body, meta

    def client(self, timeout=10):
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                            timeout=timeout)


MESSAGE = (b"From: Brand <news@brand.example>\r\n"
           b"To: someone@example.net\r\n"
           b"Subject: hello\r\n"
           b"\r\n"
           b"first line\r\n"
           b".a line that starts with a dot\r\n"
           b"..two dots\r\n"
           b"last line\r\n")


class SinkTest(unittest.TestCase):
    def start(self, *extra):
        sink = Sink(*extra)
        self.addCleanup(sink.stop)
        return sink

    def test_stores_message_envelope_and_log(self):
        sink = self.start()
        with sink.client() as c:
            c.ehlo()
            c.mail("news@brand.example", ["SIZE=%d" % len(MESSAGE)])
            c.rcpt("someone@example.net")
            c.rcpt("other@example.net")
            code, reply = c.data(MESSAGE)
        self.assertEqual(code, 250)
        m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-F]+)", reply)
        self.assertIsNotNone(m, reply)
        qid = m.group(1).decode()
        self.assertEqual(sink.messages(), [qid])
        body, meta = sink.message(qid)
        # smtplib dot-stuffs; the sink un-stuffs: exactly the original bytes.
        self.assertEqual(body, MESSAGE)
        self.assertEqual(meta["mail_from"], "news@brand.example")
        self.assertEqual(meta["mail_options"], ["SIZE=%d" % len(MESSAGE)])
        self.assertEqual(meta["rcpt_tos"], ["someone@example.net", "other@example.net"])
        self.assertEqual(meta["client"]["addr"], "127.0.0.1")
        self.assertEqual(meta["helo"], "client.test")
        self.assertIsNone(meta["xclient"])
        self.assertEqual(meta["size"], len(MESSAGE))
        verbs = [e["verb"] for e in sink.events("command")]
        self.assertEqual(verbs, ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"])
        self.assertEqual(sink.events("stored")[0]["queue_id"], qid)
        self.assertEqual(sink.events("aborted_mid_data"), [])

    def test_queue_ids_unique_and_null_sender(self):
        sink = self.start()
        qids = set()
        with sink.client() as c:
            for _ in range(5):
                c.sendmail("<>", ["postmaster@example.net"], MESSAGE)
        qids = set(sink.messages())
        self.assertEqual(len(qids), 5)
        for q in qids:
            self.assertEqual(sink.message(q)[1]["mail_from"], "")

    def test_xclient(self):
        sink = self.start("--ehlo-extra", "XCLIENT", "--ehlo-extra", "PIPELINING")
        with sink.client() as c:
            c.ehlo()
            self.assertTrue(c.has_extn("xclient"))
            self.assertIn("ADDR", c.esmtp_features["xclient"])
            self.assertTrue(c.has_extn("pipelining"))
            # inside a transaction XCLIENT is refused
            c.mail("a@brand.example")
            self.assertEqual(c.docmd("XCLIENT", "ADDR=192.0.2.7")[0], 503)
            c.rset()
            code, text = c.docmd("XCLIENT",
                                 "ADDR=192.0.2.7 NAME=mx+2Eclient.example PROTO=ESMTP HELO=tenant.example")
            self.assertEqual(code, 220, text)
            # Session restarted: MAIL without a new EHLO is refused.
            self.assertEqual(c.docmd("MAIL", "FROM:<a@brand.example>")[0], 503)
            c.ehlo_resp = None
            c.ehlo()
            c.sendmail("a@brand.example", ["b@example.net"], MESSAGE)
        (qid,) = sink.messages()
        meta = sink.message(qid)[1]
        self.assertEqual(meta["xclient"], {"ADDR": "192.0.2.7", "NAME": "mx.client.example",
                                           "PROTO": "ESMTP", "HELO": "tenant.example"})
        self.assertEqual(meta["client"]["addr"], "127.0.0.1")

    def test_xclient_refused_when_not_advertised(self):
        sink = self.start()
        with sink.client() as c:
            c.ehlo()
            self.assertFalse(c.has_extn("xclient"))
            self.assertEqual(c.docmd("XCLIENT", "ADDR=192.0.2.7")[0], 550)

    def test_fail_rcpt_reply4xx(self):
        sink = self.start("--fail-at", "rcpt", "--fail-mode", "reply4xx")
        with sink.client() as c:
            c.ehlo()
            c.mail("a@brand.example")
            code, text = c.rcpt("b@example.net")
            self.assertEqual(code, 450, text)
            self.assertEqual(c.docmd("DATA")[0], 503)
        self.assertEqual(sink.messages(), [])
        self.assertEqual([e["step"] for e in sink.events("fault")], ["rcpt"])
        self.assertNotIn("data_start", [e["event"] for e in sink.events()])

    def test_fail_dot_close_stores_nothing(self):
        sink = self.start("--fail-at", "dot", "--fail-mode", "close")
        c = sink.client()
        c.ehlo()
        c.mail("a@brand.example")
        c.rcpt("b@example.net")
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            c.data(MESSAGE)
        c.close()
        self.assertEqual(sink.messages(), [])
        self.assertEqual(len(sink.events("dot")), 1)
        self.assertEqual(sink.events("fault")[0]["mode"], "close")
        # the server closed after the dot: not an abort by the client
        self.assertEqual(sink.events("aborted_mid_data"), [])

    def test_fail_times_then_recovers(self):
        sink = self.start("--fail-at", "mail", "--fail-mode", "reply5xx", "--fail-times", "1")
        with sink.client() as c:
            c.ehlo()
            self.assertEqual(c.mail("a@brand.example")[0], 550)
            self.assertEqual(c.mail("a@brand.example")[0], 250)

    def test_connect_close(self):
        sink = self.start("--fail-at", "connect", "--fail-mode", "close")
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            sink.client()
        self.assertEqual(len(sink.wait_event("fault")), 1)

    def test_connect_reply5xx_then_503(self):
        sink = self.start("--fail-at", "connect", "--fail-mode", "reply5xx")
        s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"554 "))
        s.sendall(b"EHLO x\r\n")
        self.assertTrue(f.readline().startswith(b"503 "))
        s.sendall(b"QUIT\r\n")
        self.assertTrue(f.readline().startswith(b"221 "))
        f.close()
        s.close()

    def test_hang_at_data(self):
        sink = self.start("--fail-at", "data", "--fail-mode", "hang")
        c = sink.client(timeout=1.0)
        c.ehlo()
        c.mail("a@brand.example")
        c.rcpt("b@example.net")
        t0 = time.monotonic()
        with self.assertRaises((socket.timeout, smtplib.SMTPServerDisconnected)):
            c.docmd("DATA")
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        c.close()
        self.assertEqual(sink.messages(), [])

    def test_delay_at_mail(self):
        sink = self.start("--delay-at", "mail", "--delay-seconds", "0.5")
        with sink.client() as c:
            c.ehlo()
            t0 = time.monotonic()
            self.assertEqual(c.mail("a@brand.example")[0], 250)
            self.assertGreaterEqual(time.monotonic() - t0, 0.45)

    def test_abort_mid_data_counted(self):
        sink = self.start()
        for n in (1, 2):
            s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220"))
            s.sendall(b"EHLO x\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            s.sendall(b"MAIL FROM:<a@brand.example>\r\nRCPT TO:<b@example.net>\r\n")
            f.readline()
            f.readline()
            s.sendall(b"DATA\r\n")
            self.assertTrue(f.readline().startswith(b"354"))
            s.sendall(b"From: a@brand.example\r\n\r\npartial body without end\r\n")
            time.sleep(0.2)
            f.close()
            s.close()
            deadline = time.monotonic() + 5
            while len(sink.events("aborted_mid_data")) < n and time.monotonic() < deadline:
                time.sleep(0.05)
        aborts = sink.events("aborted_mid_data")
        self.assertEqual([a["aborted_mid_data_total"] for a in aborts], [1, 2])
        self.assertEqual(aborts[0]["bytes_received"], len(b"From: a@brand.example\r\n\r\npartial body without end\r\n"))
        self.assertEqual(sink.events("dot"), [])
        self.assertEqual(sink.messages(), [])

    def test_bare_lf_is_data_not_end(self):
        # Only CRLF.CRLF ends DATA; "\n.\n" stays inside the message.
        sink = self.start()
        s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO x\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<a@brand.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        for _ in range(3):
            f.readline()
        payload = b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\n"
        s.sendall(payload + b".\r\n")
        self.assertTrue(f.readline().startswith(b"250 2.0.0 Ok: queued as "))
        s.sendall(b"QUIT\r\n")
        f.readline()
        f.close()
        s.close()
        (qid,) = sink.messages()
        self.assertEqual(sink.message(qid)[0], payload)


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]] + sys.argv[1:])
