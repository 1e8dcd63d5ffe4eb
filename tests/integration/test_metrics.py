#!/usr/bin/python3
"""Admin endpoints after real traffic: /metrics passes `promtool check
metrics` and counts transactions by tenant and reason; /readyz reports the
policy hash; /livez answers; SIGTERM drains."""

import gzip
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, message  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(found) if found else None


def policy_hash(policy_path):
    out = subprocess.run([harness.OPTIONS["relaygate"], "check", "--policy", policy_path],
                         capture_output=True, text=True, check=True).stdout
    return re.search(r"policy hash: (sha256:[0-9a-f]{64})", out).group(1)


class MetricsTest(GatewayTestCase):

    def traffic(self, port):
        """2 accepted, 1 envelope reject, 1 header From reject, 1 multiple
        From; 3 client connections."""
        with Client(port) as c:
            c.ehlo()
            for _ in range(2):
                self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
                self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
                self.assertReply(c.data(message()), "250 2.0.0")
            c.cmd("QUIT")
        with Client(port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<ceo@other.example>"), "550 5.7.1")
            c.cmd("QUIT")
        with Client(port) as c:
            c.ehlo()
            for from_hdr, status in (("ceo@other.example", "550 5.7.1"),
                                     ("a@demo.example, b@demo.example", "550 5.6.0")):
                self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
                self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
                self.assertReply(c.data(message(from_hdr=from_hdr)), status)
            c.cmd("QUIT")

    def test_metrics_after_traffic(self):
        sink, gw = self.setup_pair()
        self.traffic(gw.port)
        gw.wait_transactions(5)
        gw.wait_connections_logged(3)

        status, headers, text = gw.http_get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                              capture_output=True, text=True)
        self.assertEqual(lint.returncode, 0,
                         f"promtool check metrics:\n{lint.stdout}{lint.stderr}")

        m = parse_metrics(text)
        tx = "relaygate_transactions_total"
        self.assertEqual(value(m, tx, tenant="demo", reason="accepted", mode="enforce"), 2)
        self.assertEqual(value(m, tx, reason="envelope_domain_unauthorized"), 1)
        self.assertEqual(value(m, tx, tenant="demo", reason="from_domain_unauthorized"), 1)
        self.assertEqual(value(m, tx, reason="from_multiple_mailboxes"), 1)
        self.assertEqual(value(m, tx), 5)
        self.assertEqual(value(m, "relaygate_messages_relayed_total", tenant="demo"), 2)
        accepted = [t for t in gw.transactions() if t["reason"] == "accepted"]
        self.assertEqual(value(m, "relaygate_relayed_bytes_total", tenant="demo"),
                         sum(t["size"] for t in accepted))
        self.assertEqual(value(m, "relaygate_connections_total", result="accepted"), 3)
        self.assertEqual(value(m, "relaygate_connections_total", result="rejected_limit"), 0)
        self.assertEqual(value(m, "relaygate_connections_active"), 0)
        # Two 250 per accepted message's final reply and more; at least the
        # three 5xx rejections are counted.
        self.assertGreaterEqual(value(m, "relaygate_smtp_replies_total", **{"class": "5xx"}), 3)
        h = policy_hash(gw.policy_path)
        self.assertEqual(value(m, "relaygate_policy_info", hash=h), 1)
        self.assertEqual(value(m, "relaygate_policy_tenants"), 2)
        # One upstream connection for the session with two messages, one for
        # the session whose header checks failed (MAIL/RCPT went upstream).
        self.assertEqual(value(m, "relaygate_upstream_connect_duration_seconds_count"),
                         sink.connections())
        self.assertEqual(value(m, "relaygate_upstream_errors_total"), 0)
        # Names follow the conventions: prefix, _total only on counters.
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                self.assertTrue(name.startswith("relaygate_"), name)
                self.assertEqual(name.endswith("_total"), kind == "counter", line)

    def test_upstream_error_metric(self):
        sink, gw = self.setup_pair("--fail-at", "rcpt", "--fail-mode", "close")
        with Client(gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "451 4.4.2")
        gw.wait_transactions(1)
        m = parse_metrics(gw.http_get("/metrics")[2])
        self.assertEqual(value(m, "relaygate_upstream_errors_total", kind="reset"), 1)
        self.assertEqual(value(m, "relaygate_transactions_total", reason="upstream_failed"), 1)

    def test_build_info_matches_the_version_flag(self):
        _sink, gw = self.setup_pair()
        out = subprocess.run([harness.OPTIONS["relaygate"], "--version"], capture_output=True,
                             text=True, check=True).stdout
        version, revision = re.match(r"relaygate (\S+) \(revision (\S+)\)", out).groups()
        self.assertRegex(revision, r"^([0-9a-f]{12}|unknown)$")
        m = parse_metrics(gw.http_get("/metrics")[2])
        series = [dict(ls) for (n, ls), v in m.items() if n == "relaygate_build_info"]
        self.assertEqual(series, [{"version": version, "revision": revision}])
        self.assertEqual(value(m, "relaygate_build_info"), 1)

    def traffic_with_unknown_client(self, port):
        """traffic() plus one MAIL from an address no tenant owns (tenant "none")."""
        self.traffic(port)
        with harness.client_from("127.0.0.2", port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "550 5.7.1")
            c.cmd("QUIT")

    def tenant_series(self, gw):
        m = parse_metrics(gw.http_get("/metrics")[2])
        out = {}
        for (name, labels), v in m.items():
            if name in ("relaygate_transactions_total", "relaygate_messages_relayed_total",
                        "relaygate_relayed_bytes_total"):
                out.setdefault(dict(labels)["tenant"], set()).add(name)
        return out, value(m, "relaygate_metrics_tenant_labels")

    def test_series_of_a_removed_tenant_go_at_the_reload(self):
        _sink, gw = self.setup_pair()
        self.traffic_with_unknown_client(gw.port)
        series, labels = self.tenant_series(gw)
        self.assertEqual(labels, 1)
        self.assertEqual(series["demo"], {"relaygate_transactions_total",
                                          "relaygate_messages_relayed_total",
                                          "relaygate_relayed_bytes_total"})
        # demo leaves the policy (its network now belongs to "renamed").
        policy = json.loads(json.dumps(harness.DEMO_POLICY))
        policy["tenants"]["renamed"] = policy["tenants"].pop("demo")
        with open(gw.policy_path + ".new", "w", encoding="utf-8") as fh:
            json.dump(policy, fh)
        os.replace(gw.policy_path + ".new", gw.policy_path)
        os.kill(gw.proc.pid, signal.SIGHUP)
        harness.wait_for(lambda: "demo" not in self.tenant_series(gw)[0], 10,
                         what="tenant demo's series removed")
        self.assertIn("none", self.tenant_series(gw)[0])  # the no-tenant series stay
        self.traffic_with_unknown_client(gw.port)
        series, _ = self.tenant_series(gw)
        self.assertNotIn("demo", series)
        self.assertIn("renamed", series)

    def test_tenant_label_off_above_the_configured_tenant_count(self):
        for setting in ({"tenant_label_max_tenants": 1}, {"tenant_label": "off"}):
            with self.subTest(setting=setting):
                sink = self.start_sink(name=f"sink-{len(setting)}-{id(setting)}")
                gw = self.start_gateway(sink.port, config={"metrics": setting},
                                        name=f"gw-{id(setting)}")
                self.traffic_with_unknown_client(gw.port)
                series, labels = self.tenant_series(gw)
                self.assertEqual(labels, 0)
                # Two tenants in the policy: every tenant is "(all)".
                self.assertEqual(set(series), {"(all)", "none"}, series)

    def test_metrics_gzip_when_asked(self):
        _sink, gw = self.setup_pair()
        self.traffic(gw.port)

        def scrape(accept):
            req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}/metrics",
                                         headers={"Accept-Encoding": accept} if accept else {})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.headers, resp.read()

        plain_headers, plain = scrape(None)
        self.assertIsNone(plain_headers["Content-Encoding"])
        self.assertEqual(plain_headers["Vary"], "Accept-Encoding")
        for accept in ("gzip", "deflate, gzip;q=0.5", "*", "x-gzip"):
            headers, body = scrape(accept)
            self.assertEqual(headers["Content-Encoding"], "gzip", accept)
            text = gzip.decompress(body).decode()
            # The same samples (histogram sums aside, nothing moved in between).
            self.assertEqual(set(parse_metrics(text)), set(parse_metrics(plain.decode())))
            self.assertLess(len(body) * 4, len(plain), "gzip should shrink /metrics > 4x")
        for accept in ("gzip;q=0", "identity", "br, deflate"):
            headers, body = scrape(accept)
            self.assertIsNone(headers["Content-Encoding"], accept)
            parse_metrics(body.decode())

    def test_certificate_expiry_gauge_follows_reloads(self):
        from identity_helpers import Cert  # pylint: disable=import-outside-toplevel
        certs = os.path.join(self.workdir, "certs")
        os.makedirs(certs)
        cert = Cert(certs, "server", "relaygate.test", days=2)
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, config={
            "listeners": [{"address": "127.0.0.1", "port": 0, "starttls": "offered"}],
            "tls": {"cert_file": cert.cert, "key_file": cert.key}})
        name = "relaygate_tls_certificate_expiry_timestamp_seconds"

        def expiry():
            return value(parse_metrics(gw.http_get("/metrics")[2]), name)
        self.assertAlmostEqual(expiry(), time.time() + 2 * 86400, delta=3600)
        warnings = [r for r in gw.log_records() if r.get("event") == "tls_certificate_expiring"]
        self.assertEqual(len(warnings), 1, "under 14 days left: a warning at start")
        # cert-manager style: new files in place, then SIGHUP.
        renewed = Cert(certs, "server", "relaygate.test", days=90)
        self.assertEqual(renewed.cert, cert.cert)
        os.kill(gw.proc.pid, signal.SIGHUP)
        harness.wait_for(lambda: expiry() > time.time() + 89 * 86400, 10,
                         what="the gauge to show the renewed certificate")
        self.assertAlmostEqual(expiry(), time.time() + 90 * 86400, delta=3600)

    def test_livez_and_readyz(self):
        sink, gw = self.setup_pair()
        status, _, body = gw.http_get("/livez")
        self.assertEqual((status, body), (200, "ok\n"))
        status, headers, body = gw.http_get("/readyz")
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertIs(doc["ready"], True)
        self.assertIs(doc["policy_loaded"], True)
        self.assertIs(doc["listeners_up"], True)
        self.assertIs(doc["draining"], False)
        self.assertEqual(doc["policy_hash"], policy_hash(gw.policy_path))
        self.assertEqual(gw.http_get("/nope")[0], 404)

    def test_sigterm_drains(self):
        sink, gw = self.setup_pair(config={"drain_timeout_seconds": 5})
        with Client(gw.port) as c:
            c.ehlo()  # the session now waits in a read for its next command
            gw.expect_exit = True
            os.kill(gw.proc.pid, signal.SIGTERM)
            harness.wait_for(lambda: gw.http_get("/readyz", timeout=2)[0] == 503, 10,
                             what="/readyz 503 while draining")
            doc = json.loads(gw.http_get("/readyz")[2])
            self.assertIs(doc["draining"], True)
            self.assertIs(doc["ready"], False)
            # Either the gateway says 421 at once (idle sessions woken) or
            # at the next command; both are "421 4.3.2 at the next command".
            readable, _, _ = select.select([c.sock], [], [], 0.5)
            if readable:
                first = c.read_reply()
            else:
                first = c.cmd("NOOP")
                if first.code != 421:
                    # Still make sure the drain ends the session one command later.
                    self.assertReply(c.cmd("NOOP"), "421 4.3.2", "shutting down")
            self.assertTrue(c.is_closed())
        self.assertEqual(gw.proc.wait(timeout=15), 0)
        self.assertReply(first, "421 4.3.2", "shutting down")

    def test_sigterm_lets_a_message_in_data_finish(self):
        sink, gw = self.setup_pair(config={"drain_timeout_seconds": 10})
        with Client(gw.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            self.assertReply(c.cmd("DATA"), "354")
            content = message()
            c.send(content[:100])
            gw.expect_exit = True
            os.kill(gw.proc.pid, signal.SIGTERM)
            harness.wait_for(lambda: gw.http_get("/readyz", timeout=2)[0] == 503, 10,
                             what="/readyz 503 while draining")
            c.send(content[100:] + b".\r\n")
            self.assertReply(c.read_reply(), "250 2.0.0", "queued as")
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "421 4.3.2")
            self.assertTrue(c.is_closed())
        self.assertEqual(gw.proc.wait(timeout=15), 0)
        self.assertEqual(len(sink.stored()), 1)

if __name__ == "__main__":
    harness.main()
