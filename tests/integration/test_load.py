#!/usr/bin/python3
"""Bounded load: Postfix's smtp-source through relaygate, with smtp-sink
(fast, counted by its own counters) and sink.py (slow, exact per-message
accounting) as upstream. Asserts no crash, every message relayed exactly
once (or refused), no sanitizer report; the ASan build (--sanitize ON) runs
a scaled-down load."""

import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import GatewayTestCase, scale, stop_pid, wait_for  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"

LOAD_CONFIG = {
    # smtp-source connects from 127.0.0.1 only.
    "limits": {"max_connections_per_client": 2000, "max_connections": 2000},
    "threads": 2,
    # smtp-sink advertises XCLIENT but answers it with 250, not Postfix's 220.
    "upstream": {"xclient": False},
}


class SmtpSink:
    """Postfix's smtp-sink on an ephemeral port, counting with -c."""

    def __init__(self, workdir):
        self.out_path = os.path.join(workdir, "smtp-sink.out")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-c", "127.0.0.1:0", "1000"],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        self.port = wait_for(self._port, 10, what="smtp-sink listening")

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError("smtp-sink exited: " + self.output())
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={self.proc.pid}," in line:
                return int(line.split()[3].rsplit(":", 1)[1])
        return None

    def output(self):
        with open(self.out_path, "rb") as fh:
            return fh.read().decode("ascii", "replace")

    def counters(self):
        """The last 'sess=N quit=N mesg=N' line smtp-sink printed."""
        found = re.findall(r"sess=(\d+) quit=(\d+) mesg=(\d+)", self.output())
        if not found:
            return {"sess": 0, "quit": 0, "mesg": 0}
        s, q, m = map(int, found[-1])
        return {"sess": s, "quit": q, "mesg": m}

    def stop(self):
        stop_pid(self.proc)
        self._out.close()


def smtp_source(port, sessions, messages, size=1024, reuse=False, timeout=240):
    args = [SMTP_SOURCE, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "a@demo.example", "-t", "b@x.example"]
    if reuse:
        args.append("-d")
    started = time.monotonic()
    p = subprocess.run(args + [f"127.0.0.1:{port}"], capture_output=True, timeout=timeout)
    elapsed = time.monotonic() - started
    counts = re.findall(rb"(\d+)\r", p.stdout)
    done = int(counts[-1]) if counts else 0
    return p.returncode, done, p.stderr.decode("utf-8", "replace"), elapsed


class LoadTest(GatewayTestCase):

    def check_gateway_after_load(self, gw, expected_txns):
        self.assertTrue(gw.alive(), "relaygate died under load:\n" + gw.stderr()[-4000:])
        status, _, body = gw.http_get("/livez")
        self.assertEqual(status, 200)
        self.assertIsNone(gw.sanitizer_report())
        txns = wait_for(lambda: len(gw.transactions()) >= expected_txns and gw.transactions(),
                        30, what="all audit lines")
        # All sessions are gone again.
        wait_for(lambda: re.search(r"^relaygate_connections_active 0$",
                                   gw.http_get("/metrics")[2], re.M), 20,
                 what="relaygate_connections_active back to 0")
        return txns

    def run_against_smtp_sink(self, sessions, messages, reuse):
        sink = SmtpSink(self.workdir)
        self.addCleanup(sink.stop)
        gw = self.start_gateway(sink.port, config=LOAD_CONFIG)
        rc, done, err, elapsed = smtp_source(gw.port, sessions, messages, reuse=reuse)
        sys.stderr.write(f"\n  smtp-source -s {sessions} -m {messages}{' -d' if reuse else ''}: "
                         f"{done} messages in {elapsed:.1f} s ({done / elapsed:.0f} msg/s) ")
        self.assertEqual(rc, 0, f"smtp-source failed: {err}")
        self.assertEqual(done, messages)
        txns = self.check_gateway_after_load(gw, messages)
        reasons = collections.Counter(t["reason"] for t in txns)
        self.assertEqual(reasons, {"accepted": messages})
        # smtp-sink counts a message at each "." it answered with 250.
        wait_for(lambda: sink.counters()["mesg"] >= messages, 10, what="smtp-sink counters")
        self.assertEqual(sink.counters()["mesg"], messages)
        conns = gw.audit("connection")
        expected_conns = sessions if reuse else messages
        self.assertEqual(len(conns), expected_conns)
        self.assertEqual(sum(c["transactions"] for c in conns), messages)

    def test_load_smtp_sink_connection_reuse(self):
        # The example: 200 concurrent sessions, 20k messages.
        self.run_against_smtp_sink(sessions=scale(200, 50), messages=scale(20000, 2000),
                                   reuse=True)

    def test_load_smtp_sink_connection_per_message(self):
        self.run_against_smtp_sink(sessions=scale(200, 50), messages=scale(5000, 500),
                                   reuse=False)

    def test_load_exact_accounting(self):
        """Every accepted message is stored upstream exactly once under the
        queue id the client was given; nothing else is stored."""
        sink = self.start_sink("--timeout", "60")
        gw = self.start_gateway(sink.port, config=LOAD_CONFIG)
        sessions, messages = scale(50, 20), scale(1000, 200)
        rc, done, err, elapsed = smtp_source(gw.port, sessions, messages, reuse=True)
        self.assertEqual(rc, 0, f"smtp-source failed: {err}")
        self.assertEqual(done, messages)
        txns = self.check_gateway_after_load(gw, messages)
        accepted = [t for t in txns if t["reason"] == "accepted"]
        self.assertEqual(len(accepted), messages)
        qids = [t["queue_id"] for t in accepted]
        self.assertEqual(len(set(qids)), messages, "a queue id was reported twice")
        stored = wait_for(lambda: len(sink.stored()) >= messages and sink.stored(), 30,
                          what="all messages stored")
        self.assertEqual(sorted(m["queue_id"] for m, _ in stored), sorted(qids))
        for meta, eml in stored:
            self.assertTrue(eml.startswith(b"X-Relaygate-Verdict: tenant=demo; "), eml[:200])
            self.assertEqual(eml.count(b"X-Relaygate-Verdict"), 1)
            self.assertEqual(meta["rcpt_tos"], ["b@x.example"])
        self.assertEqual(sink.events("aborted_mid_data"), [])
        # One upstream connection per client session, reused for all its messages.
        self.assertEqual(sink.connections(), sessions)

    def test_load_with_refusals(self):
        """Mixed load where every other session is refused at MAIL (an
        unauthorized sender): refused ones never reach the upstream,
        accepted ones arrive once."""
        sink = SmtpSink(self.workdir)
        self.addCleanup(sink.stop)
        gw = self.start_gateway(sink.port, config=LOAD_CONFIG)
        sessions, messages = scale(50, 20), scale(2000, 300)
        procs = []
        for sender in ("a@demo.example", "x@other.example"):
            procs.append(subprocess.Popen(
                [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", "512",
                 "-f", sender, "-t", "b@x.example", f"127.0.0.1:{gw.port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        good_rc = procs[0].wait(timeout=240)
        bad_err = procs[1].communicate(timeout=240)[1].decode("utf-8", "replace")
        self.assertEqual(good_rc, 0)
        # smtp-source gives up (fatal) at the first refused MAIL FROM.
        self.assertIn("550 5.7.1", bad_err)
        wait_for(lambda: sum(1 for t in gw.transactions() if t["reason"] == "accepted")
                 >= messages, 30, what="accepted audit lines")
        txns = self.check_gateway_after_load(gw, messages)
        reasons = collections.Counter(t["reason"] for t in txns)
        self.assertEqual(reasons["accepted"], messages)
        self.assertGreaterEqual(reasons["envelope_domain_unauthorized"], 1)
        self.assertEqual(set(reasons), {"accepted", "envelope_domain_unauthorized"})
        wait_for(lambda: sink.counters()["mesg"] >= messages, 10, what="smtp-sink counters")
        self.assertEqual(sink.counters()["mesg"], messages)


if __name__ == "__main__":
    harness.main()
