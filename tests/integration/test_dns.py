#!/usr/bin/python3
"""The DNS client end to end: `relaygate resolve` against ldns-testns
(ldnsutils) serving scripted answers on loopback -- record types, CNAME
chains inside one answer and across queries, negative answers, SERVFAIL,
TC=1 retried over TCP, timeouts, fallback to a second server, replies
with a wrong id or from another source port ignored, and a fresh random id
and source port for every query (a small recording responder, Recorder)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
import harness  # noqa: E402
from harness import GatewayTestCase  # noqa: E402
from testns import TestNs, entry  # noqa: E402


SOA = "test. 600 IN SOA ns.test. host.test. 1 7200 3600 86400 300"

MAIN_ZONE = "".join([
    entry("txt.test.", "TXT", ['txt.test. 300 IN TXT "v=spf1 " "ip4:192.0.2.0/24" " -all"',
                               'txt.test. 200 IN TXT "second"']),
    entry("a.test.", "A", ["a.test. 300 IN A 192.0.2.1", "a.test. 300 IN A 192.0.2.2"]),
    entry("aaaa.test.", "AAAA", ["aaaa.test. 300 IN AAAA 2001:db8::1"]),
    entry("1.2.0.192.in-addr.arpa.", "PTR", ["1.2.0.192.in-addr.arpa. 300 IN PTR Mail.Test."]),
    # The whole chain in one answer, as a recursive resolver returns it.
    entry("chain.test.", "TXT", ["chain.test. 300 IN CNAME mid.test.",
                                 "mid.test. 120 IN CNAME end.test.",
                                 'end.test. 300 IN TXT "at the end"']),
    # Only the alias: the client must ask for the target itself.
    entry("alias.test.", "TXT", ["alias.test. 300 IN CNAME target.test."]),
    entry("alias.test.", "CNAME", ["alias.test. 300 IN CNAME target.test."]),
    entry("target.test.", "TXT", ['target.test. 300 IN TXT "target"']),
    entry("nx.test.", "TXT", authority=[SOA], rcode="NXDOMAIN"),
    entry("nodata.test.", "TXT", ["nodata.test. 300 IN A 192.0.2.9"], authority=[SOA]),
    entry("fail.test.", "TXT", rcode="SERVFAIL"),
    entry("refused.test.", "TXT", rcode="REFUSED"),
    # Too big for UDP: TC=1 and no records; the full answer over TCP.
    entry("big.test.", "TXT", rcode="NOERROR", flags="TC", match="UDP"),
    entry("big.test.", "TXT", ['big.test. 300 IN TXT "%s"' % ("x" * 200)] * 1
          + ['big.test. 300 IN TXT "record %d"' % i for i in range(20)], match="TCP"),
    entry("wrongid.test.", "TXT", ['wrongid.test. 300 IN TXT "right server"']),
])

# A server whose replies carry the id from the data file (0), not the
# query's: a resolver must ignore them (RFC 5452 9.1).
WRONG_ID_ZONE = entry("wrongid.test.", "TXT", ['wrongid.test. 300 IN TXT "forged"'],
                      adjust="copy_query")

SLOW_ZONE = entry("slow.test.", "TXT", ['slow.test. 300 IN TXT "late"'],
                  adjust="copy_id copy_query sleep=3")


def dead_udp_port():
    """A loopback UDP port nothing listens on (ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """A UDP DNS responder in a thread: records (source port, id) of every
    query; answers NXDOMAIN (id and question copied) to query number
    `answer_from` on, from its own socket, or from `spoof_from` (another
    socket: a forged source port)."""

    def __init__(self, answer_from=0, spoof=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if spoof else None
        if self.spoof:
            self.spoof.bind(("127.0.0.1", 0))
        self.server = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer_from = answer_from
        self.queries = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries.append((peer[1], int.from_bytes(data[:2], "big")))
            if len(self.queries) <= self.answer_from:
                continue
            qend = 12
            while data[qend] != 0:  # the question name, then type and class
                qend += data[qend] + 1
            question = data[12:qend + 5]
            reply = data[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
            (self.spoof or self.sock).sendto(reply, peer)

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()
        if self.spoof:
            self.spoof.close()


class DnsTest(GatewayTestCase):

    def setUp(self):
        super().setUp()
        self.ns = self.start_ns("main", MAIN_ZONE)

    def start_ns(self, name, zone):
        ns = TestNs(self.workdir, name, zone)
        self.addCleanup(ns.stop)
        return ns

    def resolve(self, name, rtype="TXT", servers=None, timeout=2, attempts=2):
        args = [harness.OPTIONS["relaygate"], "resolve", name, "--type", rtype,
                "--timeout", str(timeout), "--attempts", str(attempts)]
        for s in servers or [self.ns.server]:
            args += ["--dns-server", s]
        t0 = time.monotonic()
        p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        elapsed = time.monotonic() - t0
        for pat in harness.SANITIZER_PATTERNS:
            self.assertNotIn(pat, p.stderr)
        self.assertEqual(p.stdout.count("\n"), 1, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        out["exit"] = p.returncode
        out["elapsed"] = elapsed
        return out

    def assertAnswer(self, out, status, records=None, exit_code=None):
        self.assertEqual(out["status"], status, out)
        if records is not None:
            self.assertEqual(out["records"], records, out)
        if exit_code is not None:
            self.assertEqual(out["exit"], exit_code, out)

    def test_txt_multi_string(self):
        out = self.resolve("TXT.test.")
        self.assertAnswer(out, "ok", ["v=spf1 ip4:192.0.2.0/24 -all", "second"], 0)
        self.assertEqual(out["name"], "txt.test")
        self.assertEqual(out["type"], "TXT")
        self.assertEqual(out["ttl"], 200)
        self.assertEqual(out["cname_target"], "")

    def test_a_aaaa_ptr(self):
        self.assertAnswer(self.resolve("a.test", "A"), "ok", ["192.0.2.1", "192.0.2.2"], 0)
        self.assertAnswer(self.resolve("aaaa.test", "aaaa"), "ok", ["2001:db8::1"], 0)
        self.assertAnswer(self.resolve("1.2.0.192.in-addr.arpa", "PTR"), "ok", ["mail.test"], 0)

    def test_cname_chain_in_one_answer(self):
        out = self.resolve("chain.test")
        self.assertAnswer(out, "ok", ["at the end"], 0)
        self.assertEqual(out["cname_target"], "end.test")
        self.assertEqual(out["ttl"], 120)

    def test_cname_alone_requeries_target(self):
        out = self.resolve("alias.test")
        self.assertAnswer(out, "ok", ["target"], 0)
        self.assertEqual(out["cname_target"], "target.test")
        # Asking for the CNAME itself does not follow it.
        out = self.resolve("alias.test", "CNAME")
        self.assertAnswer(out, "ok", ["target.test"], 0)

    def test_negative_answers(self):
        out = self.resolve("nx.test")
        self.assertAnswer(out, "nxdomain", [], 1)
        self.assertEqual(out["ttl"], 300)  # min(SOA TTL 600, MINIMUM 300)
        out = self.resolve("nodata.test")
        self.assertAnswer(out, "nodata", [], 1)
        self.assertEqual(out["ttl"], 300)

    def test_servfail_and_refused(self):
        out = self.resolve("fail.test", attempts=1)
        self.assertAnswer(out, "servfail", [], 2)
        out = self.resolve("refused.test", attempts=1)
        self.assertAnswer(out, "error", [], 2)
        self.assertIn("REFUSED", out["detail"])

    def test_truncated_udp_retried_over_tcp(self):
        out = self.resolve("big.test")
        self.assertAnswer(out, "ok", exit_code=0)
        self.assertEqual(len(out["records"]), 21)
        self.assertIn("x" * 200, out["records"])

    def test_slow_answer_times_out(self):
        slow = self.start_ns("slow", SLOW_ZONE)
        out = self.resolve("slow.test", servers=[slow.server], timeout=0.5, attempts=1)
        self.assertAnswer(out, "timeout", [], 2)
        self.assertLess(out["elapsed"], 2.5, out)

    def test_fallback_after_dead_server(self):
        dead = f"127.0.0.1:{dead_udp_port()}"
        out = self.resolve("a.test", "A", servers=[dead, self.ns.server], timeout=1, attempts=1)
        self.assertAnswer(out, "ok", ["192.0.2.1", "192.0.2.2"], 0)
        # A dead server alone: an error (port unreachable) or a timeout, never ok.
        out = self.resolve("a.test", "A", servers=[dead], timeout=0.5, attempts=1)
        self.assertIn(out["status"], ("error", "timeout"), out)
        self.assertEqual(out["exit"], 2)

    def test_wrong_id_ignored(self):
        bad = self.start_ns("wrongid", WRONG_ID_ZONE)
        out = self.resolve("wrongid.test", servers=[bad.server], timeout=0.7, attempts=1)
        self.assertAnswer(out, "timeout", [], 2)
        out = self.resolve("wrongid.test", servers=[bad.server, self.ns.server], timeout=0.7,
                           attempts=1)
        self.assertAnswer(out, "ok", ["right server"], 0)
        self.assertGreaterEqual(out["elapsed"], 0.7)

    def test_random_ids_and_source_ports(self):
        # The first three queries go unanswered: four attempts, each from a
        # fresh socket (its own random port) with a fresh random id.
        rec = Recorder(answer_from=3)
        self.addCleanup(rec.stop)
        out = self.resolve("random.test", servers=[rec.server], timeout=0.3, attempts=4)
        self.assertAnswer(out, "nxdomain", [], 1)
        ports = [p for p, _ in rec.queries]
        ids = [i for _, i in rec.queries]
        self.assertEqual(len(rec.queries), 4, rec.queries)
        self.assertEqual(len(set(ports)), 4, f"source ports reused: {ports}")
        self.assertGreaterEqual(len(set(ids)), 3, f"ids repeat: {ids}")

    def test_reply_from_another_port_ignored(self):
        # Right id and question, but sent from another port than the one
        # queried (an off-path forgery): never accepted.
        rec = Recorder(spoof=True)
        self.addCleanup(rec.stop)
        out = self.resolve("forged.test", servers=[rec.server], timeout=0.5, attempts=1)
        self.assertAnswer(out, "timeout", [], 2)
        self.assertEqual(len(rec.queries), 1)
        honest = Recorder()
        self.addCleanup(honest.stop)
        out = self.resolve("forged.test", servers=[honest.server], timeout=0.5, attempts=1)
        self.assertAnswer(out, "nxdomain", [], 1)

    def test_bad_input(self):
        out = self.resolve("a..test", "A")
        self.assertAnswer(out, "error", [], 2)
        p = subprocess.run([harness.OPTIONS["relaygate"], "resolve", "a.test", "--dns-server",
                            "not-an-address"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("not-an-address", p.stderr)


if __name__ == "__main__":
    harness.main()
