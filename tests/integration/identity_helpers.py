#!/usr/bin/python3
"""Helpers for test_identity.py and test_operations.py, on top of harness.py:
certificates made with `openssl req`, SASL hashes from `relaygate
hash-password`, a raw SMTP client that can switch to TLS, PROXY protocol
headers, an HAProxy in front of the gateway, metrics and /readyz readers,
and a threaded smtplib load that records every transaction."""

import hashlib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import threading
import time

import harness
from harness import Client, stop_pid, wait_for

# --------------------------------------------------------------------------
# Certificates


def _openssl(*args, stdin=None):
    p = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: "
                             + p.stderr.decode("utf-8", "replace"))
    return p.stdout


def make_ca(d, name, cn):
    """A self-signed CA: d/name.pem, d/name.key."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", os.path.join(d, f"{name}.key"),
             "-out", os.path.join(d, f"{name}.pem"), "-days", "3", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return os.path.join(d, f"{name}.pem")


def make_server_cert(d, name, ca, dns_name, san=None):
    """A server certificate for dns_name (CN, and SAN unless san is given)
    signed by the CA d/ca.pem: (certificate path, key path)."""
    path = lambda suffix: os.path.join(d, name + suffix)  # noqa: E731
    with open(path(".ext"), "w", encoding="ascii") as fh:
        fh.write(f"subjectAltName={san or 'DNS:' + dns_name}\n"
                 "basicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\n"
                 "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", path(".key"), "-out", path(".csr"), "-subj", f"/CN={dns_name}")
    _openssl("x509", "-req", "-in", path(".csr"), "-CA", os.path.join(d, f"{ca}.pem"),
             "-CAkey", os.path.join(d, f"{ca}.key"),
             "-set_serial", "0x%x" % int.from_bytes(os.urandom(8), "big"),
             "-days", "2", "-extfile", path(".ext"), "-out", path(".pem"))
    return path(".pem"), path(".key")


class Cert:
    """A self-signed EC certificate + key, with its DER and SPKI digests."""

    def __init__(self, directory, name, cn, san_dns=None, days=2):
        self.cert = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")
        san = san_dns or cn
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.key, "-out", self.cert, "-days", str(days),
                 "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + san)
        der = _openssl("x509", "-in", self.cert, "-outform", "DER")
        # SHA-256 of the DER certificate, lower-case hex (policy/README.md).
        self.sha256 = hashlib.sha256(der).hexdigest()
        pub = _openssl("x509", "-in", self.cert, "-pubkey", "-noout")
        spki = _openssl("pkey", "-pubin", "-outform", "DER", stdin=pub)
        self.spki_sha256 = hashlib.sha256(spki).hexdigest()
        self.der = der


class Certs:
    """Server certificate plus client certificates, in `directory`."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.server = Cert(directory, "server", "relaygate.test")
        self.client = Cert(directory, "client", "mta.certco.example")          # pinned by DER
        self.spki_client = Cert(directory, "spki", "mta.spkico.example")       # pinned by SPKI
        self.stranger = Cert(directory, "stranger", "mta.stranger.example")    # not pinned

    def tls_config(self):
        return {"cert_file": self.server.cert, "key_file": self.server.key}


def hash_password(password, iterations=1000):
    """`relaygate hash-password --iterations N` reading the password on stdin.
    1000 iterations (the minimum; a lint warning) keeps the ASan run fast."""
    p = subprocess.run([harness.OPTIONS["relaygate"], "hash-password", "--iterations",
                        str(iterations)], input=password.encode() + b"\n",
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("hash-password failed: " + p.stderr.decode("utf-8", "replace"))
    h = p.stdout.decode().strip()
    assert h.startswith("$pbkdf2-sha256$"), h
    return h


# --------------------------------------------------------------------------
# The gateway: listeners, metrics, readiness, policy hash


def smtp_ports(gw):
    """Ports of every SMTP listener, in config order (the harness keeps only
    the last one in gw.port)."""
    ports = [r["port"] for r in gw.log_records()
             if r.get("event") == "listening" and r.get("kind") == "smtp"]
    assert len(ports) == len(gw.config["listeners"]), ports
    return ports


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from the text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(gw, name, **labels):
    """The value of one series (0 when absent)."""
    samples = parse_metrics(gw.http_get("/metrics")[2])
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric_series(gw, name):
    samples = parse_metrics(gw.http_get("/metrics")[2])
    return {labels: v for (n, labels), v in samples.items() if n == name}


def readyz(gw, timeout=5):
    status, _, body = gw.http_get("/readyz", timeout=timeout)
    return status, json.loads(body)


def policy_hash_of(path):
    out = subprocess.run([harness.OPTIONS["relaygate"], "check", "--policy", path],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"policy hash: (sha256:[0-9a-f]{64})", out.stdout)
    assert m, out.stdout + out.stderr
    return m.group(1)


def log_events(gw, event):
    return [r for r in gw.log_records() if r.get("event") == event]


def write_atomic(path, data):
    """Write `data` (dict -> JSON, or str/bytes) to `path` by rename."""
    if isinstance(data, dict):
        data = json.dumps(data, indent=1)
    if isinstance(data, str):
        data = data.encode()
    tmp = path + ".tmp-%d" % time.monotonic_ns()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)


class ProjectedVolume:
    """A Kubernetes ConfigMap or Secret volume: DIR/..<ts>/<name>, DIR/..data
    -> ..<ts>, DIR/<name> -> ..data/<name> for every file. update() does what
    the kubelet does: new timestamped dir, ..data_tmp symlink, rename over
    ..data (atomic), remove the old dir. Values: str, bytes or a dict (JSON)."""

    def __init__(self, directory, files):
        self.dir = directory
        os.makedirs(directory)
        self.generation = 0
        self.current = None
        self.names = set()
        self._publish(files)

    def file(self, name):
        return os.path.join(self.dir, name)

    def update(self, files):
        self._publish(files)

    def _publish(self, files):
        self.generation += 1
        name = "..2026_01_01_00_00_%02d.%d" % (self.generation, os.getpid())
        os.makedirs(os.path.join(self.dir, name))
        for fname, content in files.items():
            if isinstance(content, dict):
                content = json.dumps(content, indent=1)
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(os.path.join(self.dir, name, fname), mode) as fh:
                fh.write(content)
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(name, tmp)
        os.rename(tmp, os.path.join(self.dir, "..data"))
        for fname in files:
            if not os.path.lexists(self.file(fname)):
                os.symlink(os.path.join("..data", fname), self.file(fname))
        for fname in self.names - set(files):
            os.remove(self.file(fname))
        self.names = set(files)
        old, self.current = self.current, name
        if old:
            import shutil
            shutil.rmtree(os.path.join(self.dir, old))


class ConfigMapDir(ProjectedVolume):
    """A ConfigMap volume holding policy.json (`path`)."""

    def __init__(self, directory, policy):
        super().__init__(directory, {"policy.json": policy})
        self.path = os.path.join(directory, "policy.json")

    def update(self, policy):  # pylint: disable=arguments-renamed
        self._publish({"policy.json": policy})


def swaks_replies(transcript):
    """The server's reply lines from a swaks transcript. Unlike
    harness.swaks_server_lines this also keeps the lines swaks marks as
    errors inside TLS ('<~* 550 ...') and outside it ('<** 550 ...')."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*<(?:-|~|\*\*|~\*|-\*)\s+(.*)$", line)
        if m:
            out.append(m.group(1))
    return out


def capabilities(ehlo_reply):
    """EHLO keywords (first line is the greeting name)."""
    return [line[4:] for line in ehlo_reply.lines[1:]]


# --------------------------------------------------------------------------
# A raw SMTP client that can switch to TLS


def client_context(cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server certificate is self-signed
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


class TlsClient(Client):
    """harness.Client plus STARTTLS / implicit TLS with Python's ssl."""

    def __init__(self, port, implicit=False, cert=None, timeout=15.0, greet=True):
        super().__init__(port, timeout=timeout, greet=not implicit and greet)
        self.tls = False
        if implicit:
            self._wrap(cert)
            if greet:
                self.greeting = self.read_reply()

    def _wrap(self, cert):
        assert self.buf == b"", f"clear-text bytes pending before the handshake: {self.buf!r}"
        self.sock.settimeout(self.timeout)
        self.sock = client_context(cert).wrap_socket(self.sock, server_hostname="relaygate.test")
        self.tls = True

    def starttls(self, cert=None):
        """STARTTLS; on 220 performs the handshake. Returns the 220 reply."""
        r = self.cmd("STARTTLS")
        if r.code == 220:
            self._wrap(cert)
        return r

    def peer_cert_der(self):
        return self.sock.getpeercert(binary_form=True)

    def is_closed(self, timeout=5.0):
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def read_until_closed(sock, timeout):
    """Everything the server sends until it closes (or `timeout` passes).
    Returns (bytes, closed, seconds)."""
    start = time.monotonic()
    data = b""
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False, time.monotonic() - start
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return data, True, time.monotonic() - start
        except socket.timeout:
            return data, False, time.monotonic() - start
        if not chunk:
            return data, True, time.monotonic() - start
        data += chunk


# --------------------------------------------------------------------------
# PROXY protocol headers (HAProxy proxy-protocol.txt)

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, dst="127.0.0.1", sport=40000, dport=25, family="TCP4"):
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src, dst="127.0.0.1", sport=40000, dport=25, command=0x1, version=0x2,
             family=0x11, tlvs=b"", length=None):
    """v2 header for TCP over IPv4 (family 0x11) unless told otherwise."""
    block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    if command == 0x0:
        block = b""
    body = block + tlvs
    n = len(body) if length is None else length
    return PROXY_V2_SIGNATURE + bytes([(version << 4) | command, family]) + struct.pack("!H", n) + body


# --------------------------------------------------------------------------
# HAProxy in front of the gateway


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HAProxy:
    """haproxy -db (foreground) in tcp mode: frontend on a free loopback
    port, one backend server with `send-proxy-v2`."""

    def __init__(self, workdir, backend_port, server_option="send-proxy-v2"):
        self.dir = os.path.join(workdir, "haproxy")
        os.makedirs(self.dir)
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w", encoding="ascii") as fh:
            fh.write(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp
    bind 127.0.0.1:{self.port}
    default_backend relaygate
backend relaygate
    server rg 127.0.0.1:{backend_port} {server_option} source 127.0.0.1
""")
        self.out_path = os.path.join(self.dir, "output")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(["haproxy", "-f", self.cfg, "-db"], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(self._listening, 15, interval=0.1, what="haproxy listening")

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited: " + self.output())
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        return any(line.split()[3] == f"127.0.0.1:{self.port}" for line in out.splitlines()
                   if len(line.split()) > 3)

    def output(self):
        with open(self.out_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stop(self):
        stop_pid(self.proc)
        self._out.close()


# --------------------------------------------------------------------------
# A bounded load: threads of smtplib clients, every transaction recorded

QUEUED_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


class Txn:
    """One transaction as the client saw it."""

    def __init__(self, token, domain, session):
        self.token = token
        self.domain = domain
        self.session = session      # session start time (monotonic)
        self.started = time.monotonic()
        self.ended = None
        self.stage = None           # mail, rcpt, data, done, or where the connection broke
        self.code = None            # the deciding reply code (None: no reply at all)
        self.text = ""
        self.queue_id = None

    @property
    def accepted(self):
        return self.stage == "done" and self.code is not None and 200 <= self.code < 300

    def __repr__(self):
        return (f"Txn({self.token} {self.domain} stage={self.stage} code={self.code} "
                f"text={self.text!r})")


def load_message(token, domain):
    return (f"From: Load <load@{domain}>\r\nTo: Bob <bob@dest.example>\r\n"
            f"Subject: {token}\r\nMessage-ID: <{token}@{domain}>\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
            f"load message {token}\r\n.dot line\r\n").encode()


class LoadWorker(threading.Thread):
    """Loops until `stop` is set: connect, EHLO, up to `per_session`
    transactions (domain from `pick_domain()`), QUIT. Connection-level
    events that are not transactions (refused connect, 421 greeting) go to
    self.connect_errors."""

    def __init__(self, index, port, stop, pick_domain, per_session=4, pause=0.0):
        super().__init__(daemon=True, name=f"load-{index}")
        self.index = index
        self.port = port
        self.stop_event = stop
        self.pick_domain = pick_domain
        self.per_session = per_session
        self.pause = pause
        self.txns = []
        self.connect_errors = []
        self.exceptions = []
        self.sessions = 0
        self._n = 0

    def run(self):
        try:
            while not self.stop_event.is_set():
                self._session()
                if self.pause:
                    time.sleep(self.pause)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.exceptions.append(repr(e))

    def _session(self):
        session_start = time.monotonic()
        try:
            smtp = smtplib.SMTP("127.0.0.1", self.port, local_hostname="load.demo.example",
                                timeout=30)
        except (ConnectionRefusedError, ConnectionResetError, smtplib.SMTPConnectError,
                smtplib.SMTPServerDisconnected, OSError) as e:
            self.connect_errors.append(repr(e))
            time.sleep(0.05)
            return
        self.sessions += 1
        try:
            code, msg = smtp.ehlo()
            if code != 250:
                self.connect_errors.append(f"EHLO {code} {msg!r}")
                return
            for _ in range(self.per_session):
                if self.stop_event.is_set():
                    break
                if not self._transaction(smtp, session_start):
                    return
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
        finally:
            smtp.close()

    def _transaction(self, smtp, session_start):
        """Returns False when the session is over."""
        self._n += 1
        domain = self.pick_domain()
        t = Txn(f"w{self.index}-m{self._n}-{time.monotonic_ns()}", domain, session_start)
        self.txns.append(t)
        try:
            t.stage = "mail"
            code, msg = smtp.mail(f"load@{domain}")
            if code != 250:
                return self._refused(t, smtp, code, msg)
            t.stage = "rcpt"
            code, msg = smtp.rcpt("bob@dest.example")
            if code != 250:
                return self._refused(t, smtp, code, msg)
            t.stage = "data"
            code, msg = smtp.data(load_message(t.token, domain))
            t.code, t.text = code, msg.decode("utf-8", "replace")
            t.ended = time.monotonic()
            if code == 250:
                t.stage = "done"
                m = QUEUED_RE.search(t.text)
                t.queue_id = m.group(1) if m else None
                return True
            return code < 400 or code >= 500 and code != 421
        except smtplib.SMTPResponseException as e:
            # smtplib raises on a DATA command answered with other than 354.
            t.code, t.text = e.smtp_code, e.smtp_error.decode("utf-8", "replace")
            t.ended = time.monotonic()
            return False
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            t.text = f"connection lost at {t.stage}: {e!r}"
            t.ended = time.monotonic()
            return False

    def _refused(self, t, smtp, code, msg):
        t.code, t.text = code, msg.decode("utf-8", "replace")
        t.ended = time.monotonic()
        if code == 421:
            return False
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            return False
        return True


def run_load(port, threads, pick_domain, per_session=4):
    """Starts the workers; returns (stop event, workers)."""
    stop = threading.Event()
    workers = [LoadWorker(i, port, stop, pick_domain, per_session) for i in range(threads)]
    for w in workers:
        w.start()
    return stop, workers


def stop_load(stop, workers, timeout=60):
    stop.set()
    for w in workers:
        w.join(timeout)
        assert not w.is_alive(), f"{w.name} did not finish"
    return [t for w in workers for t in w.txns]


def stored_tokens(sink):
    """{Subject token: queue id} of every message the sink stored."""
    out = {}
    for meta, eml in sink.stored():
        m = re.search(rb"\r\nSubject: (\S+)\r\n", eml)
        token = m.group(1).decode() if m else None
        assert token not in out, f"message {token} stored twice"
        out[token] = meta["queue_id"]
    return out


def send_sigterm(proc):
    os.kill(proc.pid, signal.SIGTERM)
