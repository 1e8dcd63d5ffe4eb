#!/usr/bin/python3
"""policy_url: the policy fetched from a local HTTPS server (Python's
http.server in a thread, wrapped in TLS with a certificate from a test CA).

The server checks the bearer token, answers If-None-Match with 304, serves a
detached Ed25519 signature at <url>.sig (made with `openssl pkeyutl`), and
can be switched to fail: HTTP 500, a slow answer, a truncated body, a bad
signature, an invalid policy. Every failure keeps the policy being served
(checked with SMTP), shows in /readyz and in relaygate_policy_fetches_total,
and backs off; the next good bundle is loaded. A restart with the server
down serves the cached copy; without one, or with a tampered one, `run`
refuses to start."""

import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, wait_for  # noqa: E402
from identity_helpers import (log_events, make_ca, make_server_cert, metric,  # noqa: E402
                              policy_hash_of, readyz)

TOKEN = "s3cret-token"


def policy(*domains):
    return {"version": 1, "tenants": {"demo": {
        "domains": list(domains), "identities": [{"networks": ["127.0.0.1/32"]}]}}}


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True,
                          timeout=60).stdout


class PolicyServer:
    """HTTPS on 127.0.0.1 serving /policy.json and /policy.json.sig."""

    def __init__(self, cert, key, signing_key):
        self.signing_key = signing_key
        self.mode = "normal"  # normal | 500 | slow | truncated
        self.send_etag = True
        self.requests = []     # (monotonic time, path, If-None-Match, status)
        self.body = self.sig = b""
        self.etag = ""
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, body=b"", headers=(), length=None):
                server.requests.append((time.monotonic(), self.path,
                                        self.headers.get("If-None-Match"), status))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def do_GET(self):
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    return self.answer(401, b"no\n")
                if server.mode == "500":
                    return self.answer(500, b"broken\n")
                if server.mode == "slow":
                    time.sleep(3)
                if self.path == "/policy.json.sig":
                    return self.answer(200, server.sig)
                if self.path != "/policy.json":
                    return self.answer(404)
                etag = [("ETag", server.etag)] if server.send_etag else []
                if server.send_etag and self.headers.get("If-None-Match") == server.etag:
                    return self.answer(304, headers=etag)
                if server.mode == "truncated":
                    return self.answer(200, server.body[: len(server.body) // 2], etag,
                                       length=len(server.body))
                return self.answer(200, server.body, etag)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, body, sign_with=None):
        """Serve `body` (a dict or bytes) with a new ETag and its signature."""
        if isinstance(body, dict):
            body = json.dumps(body, indent=1).encode()
        with tempfile.NamedTemporaryFile() as fh:
            fh.write(body)
            fh.flush()
            raw = openssl("pkeyutl", "-sign", "-rawin", "-inkey",
                          sign_with or self.signing_key, "-in", fh.name)
        self.sig = openssl("base64", stdin=raw)
        self.body = body
        self.etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]

    def count(self, status, path="/policy.json"):
        return sum(1 for r in self.requests if r[3] == status and r[1] == path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class PolicyUrlTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="relaygate-it-pki-")
        cls.ca = make_ca(cls.pki, "ca", "relaygate policy CA")
        cls.other_ca = make_ca(cls.pki, "other-ca", "relaygate other CA")
        cls.cert, cls.key = make_server_cert(cls.pki, "policy", "ca", "policy.test",
                                             san="DNS:policy.test,IP:127.0.0.1")
        cls.sign_key, cls.pub_key = (os.path.join(cls.pki, n) for n in ("sign.key", "sign.pub"))
        openssl("genpkey", "-algorithm", "ed25519", "-out", cls.sign_key)
        openssl("pkey", "-in", cls.sign_key, "-pubout", "-out", cls.pub_key)
        cls.wrong_key = os.path.join(cls.pki, "wrong.key")
        openssl("genpkey", "-algorithm", "ed25519", "-out", cls.wrong_key)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.server = PolicyServer(self.cert, self.key, self.sign_key)
        self.addCleanup(self.server.stop)
        self.server.publish(policy("demo.example"))
        self.sink = self.start_sink()
        self.token_file = os.path.join(self.workdir, "token")
        with open(self.token_file, "w", encoding="ascii") as fh:
            fh.write(TOKEN + "\n")
        self.cache = os.path.join(self.workdir, "cache", "policy.json")
        os.makedirs(os.path.dirname(self.cache))

    def config(self, **fetch):
        return {"policy_file": None,
                "policy_url": f"https://127.0.0.1:{self.server.port}/policy.json",
                "policy_fetch": {"ca_file": self.ca, "bearer_token_file": self.token_file,
                                 "public_key_file": self.pub_key, "cache_file": self.cache,
                                 "poll_seconds": 1, "timeout_seconds": 1,
                                 "backoff_max_seconds": 4, **fetch}}

    def hash_of(self, body):
        path = os.path.join(self.workdir, "hash-%d.json" % time.monotonic_ns())
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=1)
        return policy_hash_of(path)

    def mail_from(self, gw, domain):
        with Client(gw.port) as c:
            c.ehlo()
            return c.cmd(f"MAIL FROM:<alice@{domain}>").code

    def run_failing(self, **fetch):
        """`relaygate run` that must refuse to start: its exit code and log."""
        cfg = {"listeners": [{"address": "127.0.0.1", "port": 0}],
               "upstream": {"host": "127.0.0.1", "port": self.sink.port},
               "admin": {"enabled": False}, **self.config(**fetch)}
        del cfg["policy_file"]
        path = os.path.join(self.workdir, "failing.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh)
        p = subprocess.run([harness.OPTIONS["relaygate"], "run", "--config", path],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr

    def wait_fetches(self, gw, result, at_least=1, timeout=20):
        return wait_for(lambda: metric(gw, "relaygate_policy_fetches_total",
                                       result=result) >= at_least,
                        timeout, interval=0.1, what=f"a policy fetch with result {result}")

    def test_fetch_304_update_and_every_failure_keeps_the_policy(self):
        gw = self.start_gateway(self.sink.port, config=self.config())
        status, doc = readyz(gw)
        self.assertEqual(status, 200)
        self.assertEqual(doc["policy_source"], "url")
        self.assertEqual(doc["policy_origin"], gw.config["policy_url"])
        self.assertEqual(doc["policy_hash"], self.hash_of(policy("demo.example")))
        self.assertEqual(doc["policy_last_error"], "")
        self.assertEqual(self.mail_from(gw, "demo.example"), 250)
        self.assertEqual(self.mail_from(gw, "new.example"), 550)
        # The cache holds exactly what was served, with its ETag and signature.
        with open(self.cache, "rb") as fh:
            self.assertEqual(fh.read(), self.server.body)
        with open(self.cache + ".etag", encoding="ascii") as fh:
            self.assertEqual(fh.read(), self.server.etag)

        # Polls after that send If-None-Match and get 304: nothing reloads.
        self.wait_fetches(gw, "not_modified", 2)
        self.assertGreaterEqual(self.server.count(304), 2)
        self.assertEqual(len(log_events(gw, "policy_loaded")), 1)
        self.assertGreater(metric(gw, "relaygate_policy_last_fetch_success_timestamp_seconds"), 0)

        good = doc["policy_hash"]
        failures = [("500", "http", "HTTP 500"), ("slow", "timeout", "timeout"),
                    ("truncated", "truncated", "truncated")]
        for mode, result, text in failures:
            with self.subTest(mode=mode):
                self.server.mode = mode
                self.server.publish(policy("demo.example", f"{mode}.example"))
                self.wait_fetches(gw, result)
                doc = readyz(gw)[1]
                self.assertEqual(doc["policy_hash"], good)
                self.assertIn(text, doc["policy_last_error"])
                self.assertEqual(self.mail_from(gw, "demo.example"), 250)
                self.server.mode = "normal"
                self.server.publish(policy("demo.example"))
                wait_for(lambda: readyz(gw)[1]["policy_last_error"] == "", 20, interval=0.1,
                         what="the error cleared by a good fetch")

        # Signed by another key: refused, the old policy stays.
        self.server.publish(policy("demo.example", "forged.example"), sign_with=self.wrong_key)
        self.wait_fetches(gw, "bad_signature")
        self.assertIn("does not verify", readyz(gw)[1]["policy_last_error"])
        self.assertEqual(self.mail_from(gw, "forged.example"), 550)
        # Signed, but not a valid policy (network_host_bits): refused by the linter.
        self.server.publish({"version": 1, "tenants": {"demo": {
            "domains": ["demo.example", "bad.example"],
            "identities": [{"networks": ["127.0.0.1/24"]}]}}})
        self.wait_fetches(gw, "invalid")
        self.assertEqual(readyz(gw)[1]["policy_hash"], good)
        with open(self.cache, "rb") as fh:
            self.assertNotIn(b"bad.example", fh.read())
        # It was loaded from the cache's temporary file (written as the body
        # arrived), which is removed when the fetch ends.
        wait_for(lambda: not os.path.exists(self.cache + ".tmp"), 5, interval=0.05,
                 what="the temporary file removed")

        # The next good bundle is loaded, cached, and used by new sessions.
        new = policy("demo.example", "new.example")
        self.server.publish(new)
        wait_for(lambda: readyz(gw)[1]["policy_hash"] == self.hash_of(new), 20, interval=0.2,
                 what="the new policy")
        self.assertEqual(self.mail_from(gw, "new.example"), 250)
        self.assertEqual(metric(gw, "relaygate_policy_fetches_total", result="updated"), 2)
        with open(self.cache, "rb") as fh:
            self.assertEqual(fh.read(), self.server.body)
        self.assertFalse(os.path.exists(self.cache + ".tmp"))

    def test_a_cache_that_cannot_be_written_does_not_stop_updates(self):
        # The temporary file's name is taken by a directory: the body is kept
        # in memory instead, loaded from there, and not cached.
        os.makedirs(self.cache + ".tmp")
        gw = self.start_gateway(self.sink.port, config=self.config())
        self.assertEqual(readyz(gw)[1]["policy_hash"], self.hash_of(policy("demo.example")))
        self.assertEqual(self.mail_from(gw, "demo.example"), 250)
        self.assertFalse(os.path.exists(self.cache))
        errors = [r["error"] for r in log_events(gw, "policy_cache_write_failed")]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("cannot create " + self.cache + ".tmp", errors[0])
        new = policy("demo.example", "new.example")
        self.server.publish(new)
        wait_for(lambda: readyz(gw)[1]["policy_hash"] == self.hash_of(new), 20, interval=0.2,
                 what="the new policy")
        self.assertEqual(self.mail_from(gw, "new.example"), 250)
        self.assertFalse(os.path.exists(self.cache))

    def test_a_server_without_etags_costs_no_reloads(self):
        self.server.send_etag = False
        gw = self.start_gateway(self.sink.port, config=self.config())
        self.wait_fetches(gw, "unchanged", 2)
        self.assertEqual(self.server.count(304), 0)
        self.assertEqual(len(log_events(gw, "policy_loaded")), 1)
        new = policy("demo.example", "new.example")
        self.server.publish(new)
        wait_for(lambda: readyz(gw)[1]["policy_hash"] == self.hash_of(new), 20, interval=0.2,
                 what="the new policy")
        self.assertEqual(len(log_events(gw, "policy_loaded")), 2)

    def test_failures_back_off(self):
        gw = self.start_gateway(self.sink.port, config=self.config())
        self.server.mode = "500"
        self.wait_fetches(gw, "http", 4, timeout=30)
        times = [t for t, path, _, status in self.server.requests if status == 500]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # poll 1 s, then 1, 2, 4 (backoff_max) plus up to 20% jitter and
        # the fetch itself (slow on a busy machine).
        self.assertGreater(gaps[2], 3.8, gaps)
        self.assertLess(gaps[0], 2.5, gaps)
        self.assertGreater(gaps[2], 1.8 * gaps[0], gaps)
        records = log_events(gw, "policy_fetch_failed")
        self.assertEqual([r["failures_in_a_row"] for r in records[:4]], [1, 2, 3, 4])
        self.assertTrue(all(r["keeping_previous"] for r in records))

    def test_restart_serves_the_cached_copy_while_the_source_is_down(self):
        gw = self.start_gateway(self.sink.port, config=self.config(), name="first")
        wait_for(lambda: os.path.exists(self.cache + ".etag"), 10, what="the cached copy")
        gw.expect_exit = True
        gw.stop()
        self.server.mode = "500"
        gw2 = self.start_gateway(self.sink.port, config=self.config(), name="second")
        self.assertEqual(len(log_events(gw2, "policy_cache_loading")), 1)
        status, doc = readyz(gw2)
        self.assertEqual(status, 200)
        self.assertEqual(doc["policy_hash"], self.hash_of(policy("demo.example")))
        self.assertEqual(self.mail_from(gw2, "demo.example"), 250)
        self.wait_fetches(gw2, "http")
        gw2.expect_exit = True
        gw2.stop()

        # A copy that does not match its signature is not served.
        with open(self.cache, "ab") as fh:
            fh.write(b" ")
        code, log = self.run_failing()
        self.assertEqual(code, 1, log)
        self.assertIn("policy_cache_rejected", log)
        self.assertIn("startup_failed", log)

    def test_start_without_a_cached_copy_needs_the_source(self):
        self.server.mode = "500"
        code, log = self.run_failing()
        self.assertEqual(code, 1, log)
        self.assertIn("HTTP 500", log)
        self.server.mode = "normal"
        # A wrong token, the wrong CA, the wrong name: no policy, no start.
        with open(self.token_file, "w", encoding="ascii") as fh:
            fh.write("wrong\n")
        self.assertIn("HTTP 401", self.run_failing()[1])
        with open(self.token_file, "w", encoding="ascii") as fh:
            fh.write(TOKEN)
        for fetch in ({"ca_file": self.other_ca}, {"verify_name": "other.test"}):
            code, log = self.run_failing(**fetch)
            self.assertEqual(code, 1, log)
            self.assertIn("TLS handshake", log)
        self.assertFalse(os.path.exists(self.cache))
        code, log = self.run_failing(ca_file=os.path.join(self.workdir, "missing.pem"))
        self.assertEqual(code, 1, log)
        self.assertIn("cannot load CA", log)
        self.assertIn("no such file", log)
        # The certificate's name (not only its IP) verifies; the body is
        # then refused for its size.
        self.server.publish(policy("demo.example") | {"description": "x" * 2000})
        code, log = self.run_failing(verify_name="policy.test", max_bytes=1024)
        self.assertIn('"result":"too_large"', log.replace(" ", ""))


if __name__ == "__main__":
    harness.main()
