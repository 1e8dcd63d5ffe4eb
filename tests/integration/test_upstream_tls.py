#!/usr/bin/python3
"""STARTTLS towards the upstream relay (upstream.starttls, upstream.ca_file,
upstream.verify_name): opportunistic TLS is used when offered and skipped
when not; required TLS, and a failed certificate check when a CA is
configured, tempfail the client with 451 4.4.1 (upstream_unavailable)
before anything reaches the relay's store.

The sink (tests/peers/sink.py --starttls-cert/--starttls-key) records in each
stored message's sidecar whether it arrived under TLS.  The CA and the
relay's certificate ("relay.test") are made with openssl per test class."""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, message  # noqa: E402
from identity_helpers import make_ca, make_server_cert  # noqa: E402

RELAY_NAME = "relay.test"


class UpstreamTlsTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="relaygate-it-pki-")
        cls.ca = make_ca(cls.pki, "ca", "relaygate test CA")
        cls.other_ca = make_ca(cls.pki, "other-ca", "relaygate other CA")
        cls.cert, cls.key = make_server_cert(cls.pki, "relay", "ca", RELAY_NAME)
        cls.ip_cert, cls.ip_key = make_server_cert(cls.pki, "relay-ip", "ca", RELAY_NAME,
                                                   san=f"DNS:{RELAY_NAME},IP:127.0.0.1")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    # ---- helpers -------------------------------------------------------
    def tls_sink_args(self):
        return ("--starttls-cert", self.cert, "--starttls-key", self.key)

    def pair(self, sink_tls, **upstream):
        sink_args = self.tls_sink_args() if sink_tls else ()
        return self.setup_pair(*sink_args, config={"upstream": upstream})

    def transaction(self, port):
        """One message; returns the first non-2xx/3xx reply or the final reply."""
        with Client(port) as c:
            self.assertReply(c.ehlo(), "250")
            r = c.cmd("MAIL FROM:<alice@demo.example>")
            if r.code != 250:
                c.cmd("QUIT")
                return r
            self.assertReply(c.cmd("RCPT TO:<bob@dest.example>"), "250 2.1.5")
            r = c.data(message())
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        return r

    def assertRelayed(self, sink, gw, tls):
        r = self.transaction(gw.port)
        self.assertReply(r, "250 2.0.0", "queued as")
        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        meta = stored[0][0]
        self.assertIs(meta["tls"], tls, meta)
        self.assertEqual(meta["queue_id"], r.text.rsplit(" ", 1)[1])
        self.assertEqual([e["tls"] for e in sink.events("stored")], [tls])
        self.assertEqual(len(sink.events("tls")), 1 if tls else 0)
        self.assertEqual(len(sink.commands("STARTTLS")), 1 if tls else 0)
        if tls:
            # RFC 3207 4.2: EHLO again after the handshake.
            self.assertEqual(len(sink.commands("EHLO")), 2)
        t = gw.wait_transactions(1)[0]
        self.assertEqual(t["queue_id"], meta["queue_id"])
        return meta

    def assertTempfailed(self, sink, gw):
        r = self.transaction(gw.port)
        self.assertReply(r, "451 4.4.1", "Relay temporarily unavailable")
        t = gw.wait_transactions(1)[0]
        self.assertEqual(t["reason"], "upstream_unavailable")
        self.assertEqual(t["queue_id"], "")
        sink.wait_closed()
        self.assertNothingStored(sink)
        self.assertEqual(sink.commands("MAIL"), [], "MAIL went upstream without TLS")
        self.assertEqual(sink.events("tls"), [])

    # ---- cases ---------------------------------------------------------
    def test_a_opportunistic_with_starttls_offered(self):
        sink, gw = self.pair(True, starttls="opportunistic")
        self.assertRelayed(sink, gw, tls=True)

    def test_b_opportunistic_without_starttls_stays_clear(self):
        sink, gw = self.pair(False, starttls="opportunistic")
        self.assertRelayed(sink, gw, tls=False)

    def test_c_required_without_starttls_tempfails(self):
        sink, gw = self.pair(False, starttls="required")
        self.assertTempfailed(sink, gw)
        self.assertEqual(sink.commands("STARTTLS"), [])

    def test_d_required_verified_ca_and_name(self):
        sink, gw = self.pair(True, starttls="required", ca_file=self.ca,
                             verify_name=RELAY_NAME)
        self.assertRelayed(sink, gw, tls=True)

    def test_e_required_wrong_verify_name_tempfails(self):
        sink, gw = self.pair(True, starttls="required", ca_file=self.ca,
                             verify_name="wrong.example")
        self.assertTempfailed(sink, gw)
        self.assertEqual(len(sink.commands("STARTTLS")), 1)

    def test_f_required_untrusted_ca_tempfails(self):
        sink, gw = self.pair(True, starttls="required", ca_file=self.other_ca,
                             verify_name=RELAY_NAME)
        self.assertTempfailed(sink, gw)
        self.assertEqual(len(sink.commands("STARTTLS")), 1)

    # ---- extra ---------------------------------------------------------
    def test_required_without_ca_file_accepts_any_certificate(self):
        sink, gw = self.pair(True, starttls="required")
        self.assertRelayed(sink, gw, tls=True)

    def test_verify_name_defaults_to_upstream_host(self):
        # upstream.host is 127.0.0.1, which the relay.test certificate
        # does not name: with a CA configured the check must fail.
        sink, gw = self.pair(True, starttls="required", ca_file=self.ca)
        self.assertTempfailed(sink, gw)

    def test_verify_name_defaults_to_upstream_host_ip_san(self):
        # A certificate that names 127.0.0.1 in an IP SAN passes the default.
        sink = self.start_sink("--starttls-cert", self.ip_cert, "--starttls-key", self.ip_key)
        gw = self.start_gateway(sink.port, config={"upstream": {
            "starttls": "required", "ca_file": self.ca}})
        self.assertRelayed(sink, gw, tls=True)


if __name__ == "__main__":
    harness.main()
