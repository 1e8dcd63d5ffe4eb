#!/usr/bin/python3
"""Connection identity with real clients: STARTTLS and implicit TLS with
client certificates (made by `openssl req` per test), the STARTTLS
command-injection case, SMTP AUTH PLAIN/LOGIN against `sasl_user` hashes,
PROXY protocol v1/v2 from trusted and untrusted peers (swaks
--proxy-version, HAProxy send-proxy-v2, raw malformed headers)."""

import base64
import os
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import GatewayTestCase, swaks  # noqa: E402
from identity_helpers import (Cert, Certs, HAProxy, ProjectedVolume, TlsClient,  # noqa: E402
                              capabilities, hash_password, log_events, metric, proxy_v2,
                              read_until_closed, smtp_ports, swaks_replies)

RCPT = "bob@dest.example"


def listener(**kw):
    return {"address": "127.0.0.1", "port": 0, **kw}


def tenant(domain, *identities):
    return {"domains": [domain], "identities": list(identities)}


class IdentityTestCase(GatewayTestCase):
    """Adds certificates and a multi-listener gateway."""

    def setUp(self):
        super().setUp()
        self.certs = Certs(os.path.join(self.workdir, "certs"))

    def start(self, tenants, listeners, sink_args=(), **config):
        sink = self.start_sink(*sink_args)
        cfg = {"listeners": listeners, "tls": self.certs.tls_config()}
        cfg.update(config)
        gw = self.start_gateway(sink.port, policy={"version": 1, "tenants": tenants}, config=cfg)
        return sink, gw, smtp_ports(gw)

    def swaks_ok(self, port, *args, sender):
        code, out = swaks(port, "--from", sender, "--to", RCPT, *args)
        self.assertEqual(code, 0, out)
        lines = swaks_replies(out)
        self.assertTrue(any(l.startswith("250 2.0.0") and "queued as" in l for l in lines), out)
        return out

    def swaks_refused(self, port, *args, sender, status):
        code, out = swaks(port, "--from", sender, "--to", RCPT, *args)
        self.assertNotEqual(code, 0, out)
        self.assertTrue(any(l.startswith(status) for l in swaks_replies(out)),
                        f"no {status} reply in:\n{out}")
        return out

    def assert_one_stored(self, sink, sender):
        stored = sink.stored()
        self.assertEqual(len(stored), 1, [m for m, _ in stored])
        self.assertEqual(stored[0][0]["mail_from"], sender)
        return stored[0]

    def transaction(self, c, sender, content=None):
        """EHLO/MAIL/RCPT/DATA on a connected (maybe TLS) client; returns the
        MAIL reply when it is not 250, else the final reply."""
        self.assertReply(c.ehlo(), "250")
        r = c.cmd(f"MAIL FROM:<{sender}>")
        if r.code != 250:
            return r
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), "250 2.1.5")
        return c.data(content or harness.message(from_hdr=f"App <{sender}>"))


# ==========================================================================
# TLS


class TlsTest(IdentityTestCase):

    def tenants(self):
        return {
            "certco": tenant("certco.example", {"client_cert_sha256": self.certs.client.sha256}),
            "spkico": tenant("spkico.example",
                             {"client_spki_sha256": self.certs.spki_client.spki_sha256}),
        }

    def test_starttls_client_certificate_pins_the_tenant(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        c = self.certs.client
        out = self.swaks_ok(port, "-tls", "--tls-cert", c.cert, "--tls-key", c.key,
                            sender="alice@certco.example")
        self.assertIn("220 2.0.0", out)
        meta, eml = self.assert_one_stored(sink, "alice@certco.example")
        self.assertTrue(eml.startswith(b"X-Relaygate-Verdict: tenant=certco; identity=client-cert;"),
                        eml[:200])
        t = gw.wait_transactions(1)[0]
        self.assertEqual((t["tenant"], t["identity"], t["reason"]),
                         ("certco", "client-cert", "accepted"))
        conn = gw.wait_connections_logged(1)[0]
        self.assertIs(conn["tls"], True)
        self.assertEqual(metric(gw, "relaygate_tls_handshakes_total", result="success"), 1)
        self.assertEqual(metric(gw, "relaygate_tls_handshakes_total", result="failure"), 0)

    def test_spki_pin(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        c = self.certs.spki_client
        self.swaks_ok(port, "-tls", "--tls-cert", c.cert, "--tls-key", c.key,
                      sender="alice@spkico.example")
        self.assert_one_stored(sink, "alice@spkico.example")
        # The DER pin of one tenant does not stand in for another's domain.
        c = self.certs.client
        self.swaks_refused(port, "-tls", "--tls-cert", c.cert, "--tls-key", c.key,
                           sender="alice@spkico.example", status="550 5.7.1")
        self.assertEqual(len(sink.stored()), 1)

    def test_without_or_with_an_unpinned_certificate_tenant_unknown(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        out = self.swaks_refused(port, "-tls", sender="alice@certco.example", status="550 5.7.1")
        self.assertIn("not identified as any customer", out)
        s = self.certs.stranger
        self.swaks_refused(port, "-tls", "--tls-cert", s.cert, "--tls-key", s.key,
                           sender="alice@certco.example", status="550 5.7.1")
        self.assertNothingStored(sink)
        self.assertEqual(sink.connections(), 0, "upstream opened for an unknown tenant")
        txns = gw.wait_transactions(2)
        self.assertEqual([t["reason"] for t in txns], ["tenant_unknown"] * 2)
        self.assertEqual(metric(gw, "relaygate_tls_handshakes_total", result="success"), 2)

    def test_no_client_certificate_requested(self):
        sink, gw, (port,) = self.start(
            self.tenants(), [listener(starttls="offered", request_client_certificate=False)])
        c = self.certs.client
        self.swaks_refused(port, "-tls", "--tls-cert", c.cert, "--tls-key", c.key,
                           sender="alice@certco.example", status="550 5.7.1")
        self.assertNothingStored(sink)

    def test_client_gone_before_the_starttls_reply_is_a_write_error(self):
        # The 220 to STARTTLS is flushed before the handshake. A client that
        # reset the connection makes that write fail: the connection's audit
        # line must say write_error (as for any other failed flush), not quit.
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        c = harness.Client(port)
        self.assertReply(c.ehlo(), "250")
        # Stopped, the gateway finds STARTTLS and the reset queued together:
        # Linux still reads the command, and the write of the 220 fails.
        os.kill(gw.proc.pid, signal.SIGSTOP)
        try:
            harness.wait_stopped(gw.proc.pid)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sock.sendall(b"STARTTLS\r\n")
            c.close()
        finally:
            os.kill(gw.proc.pid, signal.SIGCONT)
        conn = gw.wait_connections_logged(1)[0]
        self.assertEqual(conn["close"], "write_error", conn)
        self.assertFalse(conn["tls"], conn)

    def test_starttls_required(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="required")])
        with TlsClient(port) as c:
            ehlo = c.ehlo()
            self.assertIn("STARTTLS", capabilities(ehlo))
            self.assertReply(c.cmd("MAIL FROM:<alice@certco.example>"), "530 5.7.0")
            self.assertReply(c.starttls(self.certs.client), "220 2.0.0")
            ehlo = c.ehlo()
            self.assertNotIn("STARTTLS", capabilities(ehlo), "STARTTLS advertised after TLS")
            self.assertReply(c.cmd("STARTTLS"), "503 5.5.1")
            self.assertReply(c.cmd("MAIL FROM:<alice@certco.example>"), "250 2.1.0")
            self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), "250 2.1.5")
            self.assertReply(c.data(harness.message(from_hdr="alice@certco.example")),
                             "250 2.0.0", "queued as")
            self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        self.assert_one_stored(sink, "alice@certco.example")
        # swaks without -tls: refused before MAIL reaches anything.
        self.swaks_refused(port, sender="alice@certco.example", status="530 5.7.0")
        self.assertEqual(len(sink.stored()), 1)

    def test_starttls_off_listener(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="off")])
        with TlsClient(port) as c:
            self.assertNotIn("STARTTLS", capabilities(c.ehlo()))
            self.assertReply(c.cmd("STARTTLS"), "502 5.5.1")

    def test_implicit_tls_listener(self):
        sink, gw, ports = self.start(self.tenants(), [listener(starttls="offered"),
                                                      listener(implicit_tls=True)])
        port = ports[1]
        c = self.certs.client
        self.swaks_ok(port, "--tlsc", "--tls-cert", c.cert, "--tls-key", c.key,
                      sender="alice@certco.example")
        self.assert_one_stored(sink, "alice@certco.example")
        with TlsClient(port, implicit=True, cert=self.certs.client) as tc:
            self.assertReply(tc.greeting, "220")
            self.assertNotIn("STARTTLS", capabilities(tc.ehlo()))
            self.assertEqual(tc.peer_cert_der(), self.certs.server.der)
        # A clear-text client gets no greeting in clear text: the handshake fails.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"EHLO plain.example\r\n")
            data, closed, _ = read_until_closed(s, 10)
            self.assertTrue(closed)
            self.assertNotIn(b"220 ", data)
        harness.wait_for(lambda: metric(gw, "relaygate_tls_handshakes_total",
                                        result="failure") == 1, 10, what="failure counted")
        self.assertEqual(metric(gw, "relaygate_tls_handshakes_total", result="success"), 2)

    def test_handshake_failure_counted(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        with TlsClient(port) as c:
            c.ehlo()
            self.assertReply(c.cmd("STARTTLS"), "220 2.0.0")
            c.send("EHLO still-plain.example\r\nMAIL FROM:<alice@certco.example>\r\n")
            data, closed, _ = read_until_closed(c.sock, 10)
            self.assertTrue(closed, "connection left open after a failed handshake")
            self.assertNotIn(b"250", data)
        harness.wait_for(lambda: metric(gw, "relaygate_tls_handshakes_total",
                                        result="failure") == 1, 10, what="failure counted")
        self.assertEqual(metric(gw, "relaygate_tls_handshakes_total", result="success"), 0)
        self.assertTrue(log_events(gw, "tls_handshake_failed"))
        self.assertEqual(sink.connections(), 0)

    def test_starttls_command_injection(self):
        # The injected MAIL would be authorized (127.0.0.1 is demo's network),
        # so processing it would show up as a 250 and an upstream MAIL.
        tenants = {**self.tenants(),
                   "demo": tenant("demo.example", {"networks": ["127.0.0.1/32"]})}
        sink, gw, (port,) = self.start(tenants, [listener(starttls="offered")])
        with TlsClient(port) as c:
            self.assertReply(c.ehlo(), "250")
            c.send(b"STARTTLS\r\nMAIL FROM:<alice@demo.example>\r\n")  # one packet
            r = c.read_reply()
            self.assertReply(r, "220 2.0.0")
            # Nothing else may follow the 220 in clear text.
            readable, _, _ = select.select([c.sock], [], [], 0.3)
            self.assertEqual((c.buf, readable), (b"", []), "clear-text bytes after the 220")
            c._wrap(None)
            # The first reply after the handshake answers EHLO.
            ehlo = c.ehlo()
            self.assertEqual(ehlo.code, 250, ehlo)
            self.assertTrue(ehlo.lines[0].startswith("250-relaygate.test"), ehlo)
            # No transaction survived the handshake.
            self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), "503 5.5.1")
            self.assertReply(c.cmd("DATA"), "503 5.5.1")
            self.assertReply(c.cmd("NOOP"), "250 2.0.0")
        self.assertEqual(sink.commands("MAIL"), [])
        self.assertEqual(sink.connections(), 0)
        self.assertEqual(gw.transactions(), [])

    def test_tls_resets_session_state(self):
        tenants = {"demo": tenant("demo.example", {"networks": ["127.0.0.1/32"]})}
        sink, gw, (port,) = self.start(tenants, [listener(starttls="offered")])
        with TlsClient(port) as c:
            c.ehlo()
            self.assertReply(c.starttls(), "220 2.0.0")
            # RFC 3207 4.2: the EHLO before TLS is forgotten.
            self.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "503 5.5.1")
            self.assertReply(self.transaction(c, "alice@demo.example"), "250 2.0.0")
        self.assert_one_stored(sink, "alice@demo.example")

    def test_relative_tls_paths_resolve_against_the_config_file(self):
        # README: tls.cert_file/key_file are relative to the config file
        # (like policy_file), not to the process's working directory.
        tls = {"cert_file": "../certs/server.pem", "key_file": "../certs/server.key"}
        sink, gw, (port,) = self.start(self.tenants(), [listener(implicit_tls=True)], tls=tls)
        self.assertNotEqual(os.getcwd(), gw.dir)
        with TlsClient(port, implicit=True) as c:
            self.assertReply(c.greeting, "220")
            self.assertEqual(c.peer_cert_der(), self.certs.server.der)

    def test_certificate_reload_on_sighup(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            self.assertEqual(c.peer_cert_der(), self.certs.server.der)
        new = Cert(os.path.join(self.workdir, "certs"), "server2", "relaygate.test")
        os.replace(new.cert, self.certs.server.cert)
        os.replace(new.key, self.certs.server.key)
        os.kill(gw.proc.pid, signal.SIGHUP)
        harness.wait_for(lambda: log_events(gw, "tls_reloaded"), 10, what="tls_reloaded")

        def serves(der):
            with TlsClient(port) as c:
                c.ehlo()
                c.starttls()
                return c.peer_cert_der() == der
        self.assertTrue(serves(new.der), "new certificate not served after SIGHUP")
        # A broken certificate file keeps the previous one.
        with open(self.certs.server.cert, "w") as fh:
            fh.write("not a certificate\n")
        os.kill(gw.proc.pid, signal.SIGHUP)
        harness.wait_for(lambda: log_events(gw, "tls_reload_failed"), 10,
                         what="tls_reload_failed")
        self.assertTrue(serves(new.der), "TLS broken after a failed certificate reload")

    def serves(self, port, der):
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            return c.peer_cert_der() == der

    def test_certificate_rotated_in_place_is_picked_up_without_sighup(self):
        # cert-manager renews into the Secret; the kubelet swaps the volume's
        # ..data symlink. The gateway polls (policy_poll_seconds) and reloads.
        first = self.certs.server
        second = Cert(os.path.join(self.workdir, "certs"), "server2", "relaygate.test")

        def pem(cert):
            with open(cert.cert) as c, open(cert.key) as k:
                return {"tls.crt": c.read(), "tls.key": k.read()}
        secret = ProjectedVolume(os.path.join(self.workdir, "secret"), pem(first))
        sink, gw, (port,) = self.start(
            self.tenants(), [listener(starttls="offered")], policy_poll_seconds=1,
            tls={"cert_file": secret.file("tls.crt"), "key_file": secret.file("tls.key")})
        self.assertTrue(self.serves(port, first.der))
        secret.update(pem(second))
        harness.wait_for(lambda: self.serves(port, second.der), 15,
                         what="the rotated certificate to be served")
        self.assertTrue(any(r.get("what") == "tls" for r in log_events(gw, "reload_requested")))
        # Only the certificate was reloaded, not the policy.
        self.assertEqual(metric(gw, "relaygate_policy_reloads_total", result="success"), 1)

    def test_certificate_written_file_by_file_loads_once_complete(self):
        # Written one file at a time (no atomic swap): the key first, which
        # no longer matches the certificate. That load fails and the old
        # pair keeps being served; the certificate's write completes it.
        first = self.certs.server
        second = Cert(os.path.join(self.workdir, "certs"), "server2", "relaygate.test")
        tls_dir = os.path.join(self.workdir, "direct")
        os.makedirs(tls_dir)
        crt, key = os.path.join(tls_dir, "tls.crt"), os.path.join(tls_dir, "tls.key")
        for src, dst in ((first.cert, crt), (first.key, key)):
            with open(src) as fh, open(dst, "w") as out:
                out.write(fh.read())
        sink, gw, (port,) = self.start(
            self.tenants(), [listener(starttls="offered")], policy_poll_seconds=1,
            tls={"cert_file": crt, "key_file": key})
        self.assertTrue(self.serves(port, first.der))
        with open(second.key) as fh, open(key, "w") as out:
            out.write(fh.read())
        harness.wait_for(lambda: log_events(gw, "tls_reload_failed"), 15,
                         what="the mismatched pair to be refused")
        self.assertTrue(self.serves(port, first.der), "TLS broken by a half-written pair")
        with open(second.cert) as fh, open(crt, "w") as out:
            out.write(fh.read())
        harness.wait_for(lambda: self.serves(port, second.der), 15,
                         what="the completed pair to be served")
        self.assertTrue(gw.alive())


# ==========================================================================
# SMTP AUTH


class AuthTest(IdentityTestCase):
    PASSWORD = "correct horse battery staple"

    def tenants(self):
        return {"saslco": tenant("saslco.example",
                                 {"sasl_user": "app", "password_hash": hash_password(self.PASSWORD)})}

    def test_plain_and_login_after_starttls(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        for mech in ("PLAIN", "LOGIN"):
            out = self.swaks_ok(port, "-tls", "--auth", mech, "--auth-user", "app",
                                "--auth-password", self.PASSWORD, sender="alice@saslco.example")
            self.assertIn("235 2.7.0", out)
        stored = sink.stored()
        self.assertEqual(len(stored), 2)
        for meta, eml in stored:
            self.assertTrue(eml.startswith(b"X-Relaygate-Verdict: tenant=saslco; identity=sasl;"),
                            eml[:200])
        txns = gw.wait_transactions(2)
        self.assertEqual({(t["tenant"], t["identity"], t["reason"]) for t in txns},
                         {("saslco", "sasl", "accepted")})
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="success"), 2)
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="failure"), 0)

    def test_failure_535_with_delay_and_counted(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")])
        self.swaks_refused(port, "-tls", "--auth", "PLAIN", "--auth-user", "app",
                                 "--auth-password", "wrong", sender="alice@saslco.example",
                                 status="535 5.7.8")
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            self.assertIn("AUTH PLAIN LOGIN", capabilities(c.ehlo()))
            t0 = time.monotonic()
            bad = base64.b64encode(b"\0app\0nope").decode()
            self.assertReply(c.cmd("AUTH PLAIN " + bad), "535 5.7.8")
            self.assertGreaterEqual(time.monotonic() - t0, 0.9, "no delay after a failure")
            unknown = base64.b64encode(b"\0nobody\0" + self.PASSWORD.encode()).decode()
            self.assertReply(c.cmd("AUTH PLAIN " + unknown), "535 5.7.8")
            self.assertReply(c.cmd("AUTH LOGIN"), "334", "VXNlcm5hbWU6")
            self.assertReply(c.cmd(base64.b64encode(b"app").decode()), "334", "UGFzc3dvcmQ6")
            self.assertReply(c.cmd(base64.b64encode(b"wrong").decode()), "535 5.7.8")
            # Not authenticated: no identity.
            self.assertReply(c.cmd("MAIL FROM:<alice@saslco.example>"), "550 5.7.1")
        self.assertNothingStored(sink)
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="failure"), 4)
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="success"), 0)

    def test_failures_count_towards_max_errors(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered")],
                                       limits={"max_errors": 2})
        bad = base64.b64encode(b"\0app\0guess").decode()
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            self.assertReply(c.cmd("AUTH PLAIN " + bad), "535 5.7.8")
            self.assertReply(c.cmd("AUTH PLAIN " + bad), "535 5.7.8")
            self.assertReply(c.read_reply(), "421 4.7.0")
            self.assertTrue(c.is_closed())
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="failure"), 2)

    def test_tls_only_auth_before_tls(self):
        sink, gw, (port,) = self.start(self.tenants(),
                                       [listener(starttls="offered", auth="tls_only")])
        with TlsClient(port) as c:
            ehlo = c.ehlo()
            self.assertEqual([k for k in capabilities(ehlo) if k.startswith("AUTH")], [],
                             "AUTH offered without TLS")
            good = base64.b64encode(b"\0app\0" + self.PASSWORD.encode()).decode()
            self.assertReply(c.cmd("AUTH PLAIN " + good), "538 5.7.11")
            self.assertReply(c.cmd("AUTH LOGIN"), "538 5.7.11")
        self.assertEqual(metric(gw, "relaygate_auth_attempts_total", result="success"), 0)
        # swaks insisting on AUTH without TLS gets nowhere either.
        code, out = swaks(port, "--from", "alice@saslco.example", "--to", RCPT, "--auth",
                          "PLAIN", "--auth-user", "app", "--auth-password", self.PASSWORD)
        self.assertNotEqual(code, 0, out)
        self.assertNothingStored(sink)

    def test_auth_off_listener(self):
        sink, gw, (port,) = self.start(self.tenants(), [listener(starttls="offered", auth="off")])
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            self.assertNotIn("AUTH PLAIN LOGIN", capabilities(c.ehlo()))
            self.assertReply(c.cmd("AUTH LOGIN"), "502 5.5.1")

    def test_auth_always_on_plain_loopback(self):
        # Documented as for tests only: the password crosses in clear text.
        sink, gw, (port,) = self.start(self.tenants(), [listener(auth="always")])
        with TlsClient(port) as c:
            self.assertIn("AUTH PLAIN LOGIN", capabilities(c.ehlo()))
        out = self.swaks_ok(port, "--auth", "LOGIN", "--auth-user", "app", "--auth-password",
                            self.PASSWORD, sender="alice@saslco.example")
        self.assertIn("235 2.7.0", out)
        self.assert_one_stored(sink, "alice@saslco.example")

    def auth_plain(self, port, user, password):
        """AUTH PLAIN after STARTTLS; the reply."""
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        with TlsClient(port) as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            return c.cmd("AUTH PLAIN " + token)

    def test_credentials_from_a_secret_volume_rotated_without_restart(self):
        # The policy (a ConfigMap) names the user only; the hash lives in a
        # Secret mounted as a directory, one file per user.
        hashes = [hash_password(self.PASSWORD), hash_password("new password")]
        secret = ProjectedVolume(os.path.join(self.workdir, "sasl"), {"app": hashes[0] + "\n"})
        tenants = {"saslco": tenant("saslco.example", {"sasl_user": "app"})}
        sink, gw, (port,) = self.start(tenants, [listener(starttls="offered")],
                                       credentials_file=secret.dir, policy_poll_seconds=1)
        out = self.swaks_ok(port, "-tls", "--auth", "PLAIN", "--auth-user", "app",
                            "--auth-password", self.PASSWORD, sender="alice@saslco.example")
        self.assertIn("235 2.7.0", out)
        self.assertReply(self.auth_plain(port, "app", "new password"), "535 5.7.8")

        # Rotation: the Secret gets the new hash; a reload, same policy hash.
        hash_before = log_events(gw, "policy_loaded")[-1]["hash"]
        secret.update({"app": hashes[1]})
        harness.wait_for(lambda: len(log_events(gw, "policy_loaded")) == 2, 15,
                         what="the reload after the credentials changed")
        self.assertEqual(log_events(gw, "policy_loaded")[-1]["hash"], hash_before)
        self.assertReply(self.auth_plain(port, "app", "new password"), "235 2.7.0")
        self.assertReply(self.auth_plain(port, "app", self.PASSWORD), "535 5.7.8")

        # A broken Secret (bad hash) is refused as a whole; the last good
        # credentials stay in force, and the error names the file.
        secret.update({"app": "hunter2\n"})
        harness.wait_for(lambda: log_events(gw, "policy_reload_failed"), 15,
                         what="the broken credentials to be refused")
        errors = log_events(gw, "policy_error")
        self.assertTrue(any(e["rule"] == "invalid_password_hash" and
                            e["file"] == os.path.join(secret.dir, "app") for e in errors), errors)
        self.assertReply(self.auth_plain(port, "app", "new password"), "235 2.7.0")
        # No hash reaches a log line (nor its salt or key).
        for h in hashes:
            for part in h.split("$")[3:]:
                self.assertNotIn(part, gw.stderr())

    def test_a_user_missing_from_the_credentials_refuses_the_start(self):
        creds = os.path.join(self.workdir, "credentials")
        with open(creds, "w") as fh:
            fh.write("someone-else:" + hash_password("x") + "\n")
        tenants = {"saslco": tenant("saslco.example", {"sasl_user": "app"})}
        with self.assertRaises(AssertionError) as ctx:
            self.start(tenants, [listener(starttls="offered")], credentials_file=creds)
        self.assertIn("missing_password_hash", str(ctx.exception))


# ==========================================================================
# PROXY protocol


class ProxyProtocolTest(IdentityTestCase):

    def tenants(self):
        return {
            "netco": tenant("netco.example", {"networks": ["192.0.2.0/24"]}),
            "lbco": tenant("lbco.example", {"networks": ["127.0.0.5/32"]}),
        }

    def proxied(self, version, mode="any", **kw):
        return listener(proxy_protocol=mode, trusted_proxies=["127.0.0.1/32"],
                        proxy_timeout_seconds=1, **kw)

    def assertRefused421(self, data, closed, what):
        """README: a connection refused at the PROXY stage gets exactly one
        `421 4.7.0` reply (no greeting, nothing else) and is closed."""
        self.assertTrue(closed, f"{what}: connection still open")
        self.assertTrue(data.startswith(b"421 4.7.0 ") and data.endswith(b"\r\n")
                        and data.count(b"\r\n") == 1, f"{what}: got {data!r}")

    def swaks_proxy(self, port, version, src, sender, *extra):
        family = "TCP4" if version == 1 else "AF_INET"
        return swaks(port, "--from", sender, "--to", RCPT, "--proxy-version", str(version),
                     "--proxy-family", family, "--proxy-source", src, "--proxy-source-port",
                     "40000", "--proxy-dest", "127.0.0.1", "--proxy-dest-port", "25", *extra)

    def test_v1_and_v2_from_a_trusted_peer(self):
        sink, gw, ports = self.start(self.tenants(), [self.proxied(1), self.proxied(2, mode="v2")],
                                     sink_args=("--ehlo-extra", "XCLIENT"))
        for n, (version, port, src) in enumerate([(1, ports[0], "192.0.2.10"),
                                                  (2, ports[0], "192.0.2.20"),
                                                  (2, ports[1], "192.0.2.30")]):
            code, out = self.swaks_proxy(port, version, src, "alice@netco.example")
            self.assertEqual(code, 0, out)
            txns = gw.wait_transactions(n + 1)
            self.assertEqual(txns[-1]["client"], src)
            self.assertEqual((txns[-1]["tenant"], txns[-1]["identity"], txns[-1]["reason"]),
                             ("netco", "network", "accepted"))
        stored = sink.stored()
        self.assertEqual(len(stored), 3)
        # XCLIENT tells the signer the PROXY source, not the load balancer.
        self.assertEqual(sorted(m["xclient"]["ADDR"] for m, _ in stored),
                         ["192.0.2.10", "192.0.2.20", "192.0.2.30"])
        conns = gw.wait_connections_logged(3)
        self.assertEqual({(c["client"], c["peer"]) for c in conns},
                         {("192.0.2.10", "127.0.0.1"), ("192.0.2.20", "127.0.0.1"),
                          ("192.0.2.30", "127.0.0.1")})
        # The address outside the tenant's network is refused as usual.
        code, out = self.swaks_proxy(ports[0], 1, "198.51.100.7", "alice@netco.example")
        self.assertIn("550 5.7.1", out)
        self.assertEqual(len(sink.stored()), 3)

    def test_untrusted_peer_dropped(self):
        sink, gw, ports = self.start(self.tenants(), [
            listener(proxy_protocol="any", trusted_proxies=["10.0.0.0/8"])])
        for version in (1, 2):
            code, out = self.swaks_proxy(ports[0], version, "192.0.2.10", "alice@netco.example")
            self.assertNotEqual(code, 0, out)
            replies = swaks_replies(out)
            self.assertEqual(len(replies), 1, out)
            self.assertTrue(replies[0].startswith("421 4.7.0"), out)
        # A plain SMTP client on that listener is refused the same way.
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as s:
            data, closed, _ = read_until_closed(s, 10)
        self.assertRefused421(data, closed, "untrusted plain client")
        self.assertEqual(sink.connections(), 0)
        self.assertEqual(gw.transactions(), [])
        rejected = log_events(gw, "proxy_rejected")
        self.assertEqual(len(rejected), 3)
        self.assertEqual({r["reason"] for r in rejected}, {"untrusted_proxy"})
        self.assertEqual(metric(gw, "relaygate_connections_total", result="rejected_proxy"), 3)
        self.assertEqual(metric(gw, "relaygate_connections_total", result="accepted"), 0)

    def test_malformed_headers_dropped(self):
        sink, gw, ports = self.start(self.tenants(), [self.proxied(1),
                                                      self.proxied(1, mode="v1")])
        tcp4 = proxy_v2("192.0.2.10")
        cases = [
            ("v1 leading zero", ports[0], b"PROXY TCP4 192.0.2.010 127.0.0.1 40000 25\r\n"),
            ("v1 double space", ports[0], b"PROXY TCP4  192.0.2.10 127.0.0.1 40000 25\r\n"),
            ("v1 bare LF", ports[0], b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\n"),
            ("v1 port zero-padded", ports[0], b"PROXY TCP4 192.0.2.10 127.0.0.1 040000 25\r\n"),
            ("v1 port range", ports[0], b"PROXY TCP4 192.0.2.10 127.0.0.1 70000 25\r\n"),
            ("v1 family mismatch", ports[0], b"PROXY TCP6 192.0.2.10 127.0.0.1 40000 25\r\n"),
            ("v1 protocol", ports[0], b"PROXY UDP4 192.0.2.10 127.0.0.1 40000 25\r\n"),
            ("v1 too long", ports[0], b"PROXY UNKNOWN " + b"1" * 100 + b"\r\n"),
            ("v2 wrong version", ports[0], tcp4[:12] + b"\x11" + tcp4[13:]),
            ("v2 bad command", ports[0], tcp4[:12] + b"\x2f" + tcp4[13:]),
            ("v2 length below block", ports[0], proxy_v2("192.0.2.10", length=8)[:16 + 8]),
            ("v2 TLV out of bounds", ports[0], proxy_v2("192.0.2.10", tlvs=b"\x04\x00\x10AB")),
            ("v2 on a v1 listener", ports[1], tcp4),
            ("garbage", ports[0], b"\x00\xff" * 20),
            ("HTTP", ports[0], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("SMTP without header", ports[0], b"EHLO client.example\r\n"),
        ]
        for name, port, header in cases:
            with self.subTest(name):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(header + b"EHLO client.example\r\n")
                    data, closed, took = read_until_closed(s, 10)
                self.assertRefused421(data, closed, name)
                self.assertLess(took, 0.9, f"{name}: dropped only by the header timeout")
        rejected = harness.wait_for(
            lambda: len(log_events(gw, "proxy_rejected")) >= len(cases)
            and log_events(gw, "proxy_rejected"), 10, what="proxy_rejected lines")
        self.assertEqual(len(rejected), len(cases))
        self.assertEqual({r["reason"] for r in rejected}, {"proxy_header_invalid"})
        self.assertEqual(metric(gw, "relaygate_connections_total", result="rejected_proxy"),
                         len(cases))
        self.assertEqual(sink.connections(), 0)

    def test_no_header_times_out(self):
        sink, gw, ports = self.start(self.tenants(), [self.proxied(1)])
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as s:
            s.sendall(b"PROXY TCP4 192.0.2.10")  # incomplete, then silence
            data, closed, took = read_until_closed(s, 10)
        # Same root cause as test_limits.TIMEOUT_BUG: beast::tcp_stream closes
        # the socket when the header read times out, so the 421 is lost.
        self.assertRefused421(data, closed, "incomplete header, then the header timeout")
        self.assertGreaterEqual(took, 0.8)
        self.assertLess(took, 5)
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as s:
            data, closed, took = read_until_closed(s, 10)  # nothing at all
        self.assertRefused421(data, closed, "no header")
        self.assertGreaterEqual(took, 0.8)
        rejected = log_events(gw, "proxy_rejected")
        self.assertEqual([(r["reason"], r.get("detail")) for r in rejected],
                         [("proxy_header_invalid", "timeout")] * 2)

    def test_v1_unknown_and_v2_local_carry_no_network_identity(self):
        tenants = {**self.tenants(),
                   # 127.0.0.1 is the proxy itself: UNKNOWN must not fall back to it.
                   "proxyco": tenant("proxyco.example", {"networks": ["127.0.0.1/32"]})}
        sink, gw, ports = self.start(tenants, [self.proxied(1)])
        for name, header in [("v1 UNKNOWN", b"PROXY UNKNOWN\r\n"),
                             ("v1 UNKNOWN with addresses",
                              b"PROXY UNKNOWN 192.0.2.10 127.0.0.1 40000 25\r\n"),
                             ("v2 LOCAL", proxy_v2("192.0.2.10", command=0x0, family=0x00))]:
            with self.subTest(name):
                with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as s:
                    s.sendall(header)
                    c = harness.Client.__new__(harness.Client)
                    c.sock, c.buf, c.timeout = s, b"", 10
                    self.assertReply(c.read_reply(), "220")
                    self.assertReply(c.ehlo(), "250")
                    for sender in ("alice@netco.example", "alice@proxyco.example"):
                        r = c.cmd(f"MAIL FROM:<{sender}>")
                        self.assertReply(r, "550 5.7.1", "not identified")
                    self.assertReply(c.cmd("QUIT"), "221 2.0.0")
        self.assertNothingStored(sink)
        txns = gw.wait_transactions(6)
        self.assertEqual({t["reason"] for t in txns}, {"tenant_unknown"})
        self.assertEqual(metric(gw, "relaygate_connections_total", result="rejected_proxy"), 0)

    def test_haproxy_send_proxy_v2(self):
        sink, gw, ports = self.start(self.tenants(), [self.proxied(2, mode="v2")])
        hap = HAProxy(self.workdir, ports[0])
        self.addCleanup(hap.stop)
        # The client connects to HAProxy from 127.0.0.5; HAProxy connects to
        # relaygate from 127.0.0.1 and says 127.0.0.5 in its v2 header.
        code, out = swaks(hap.port, "--local-interface", "127.0.0.5", "--from",
                          "alice@lbco.example", "--to", RCPT)
        self.assertEqual(code, 0, out + "\nhaproxy:\n" + hap.output())
        self.assert_one_stored(sink, "alice@lbco.example")
        t = gw.wait_transactions(1)[0]
        self.assertEqual((t["client"], t["tenant"], t["reason"]),
                         ("127.0.0.5", "lbco", "accepted"))
        conn = gw.wait_connections_logged(1)[0]
        self.assertEqual((conn["client"], conn["peer"]), ("127.0.0.5", "127.0.0.1"))
        # Another source address through the same proxy is another client.
        code, out = swaks(hap.port, "--local-interface", "127.0.0.6", "--from",
                          "alice@lbco.example", "--to", RCPT)
        self.assertIn("550 5.7.1", out)
        self.assertEqual(len(sink.stored()), 1)


if __name__ == "__main__":
    harness.main()
