#!/usr/bin/python3
"""Shared helpers for relaygate's integration tests.

Every test starts its own upstream sink (tests/peers/sink.py, or Postfix's
smtp-sink for load) and its own `relaygate run` on port 0 with a temporary
config and policy, talks to it over loopback, and stops both by PID.

The test files are run as

    /usr/bin/python3 tests/integration/test_X.py --relaygate PATH [--sanitize ON|OFF] [unittest args]

`--sanitize ON` (the ASan build passes ${RELAYGATE_SANITIZE}) scales load
down; whatever the flag says, a sanitizer report in the gateway's stderr
fails the test at teardown.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
SINK_PY = os.path.join(SOURCE_DIR, "tests", "peers", "sink.py")
PYTHON = "/usr/bin/python3"

# Filled by main() from the command line.
OPTIONS = {"relaygate": None, "sanitize": False}

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                      "runtime error:", "WARNING: ThreadSanitizer",
                      "ERROR: UndefinedBehaviorSanitizer")

DEMO_POLICY = {
    "version": 1,
    "tenants": {
        "demo": {
            "domains": ["demo.example"],
            "allow_null_sender": True,
            "identities": [{"networks": ["127.0.0.1/32", "::1/128"]}],
        },
        "other": {
            "domains": ["other.example"],
            "identities": [{"client_cert_sha256": "0" * 63 + "1"}],
        },
    },
}


def scale(normal, sanitized):
    """Pick the load size for this build."""
    return sanitized if OPTIONS["sanitize"] else normal


def wait_for(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_stopped(pid, timeout=10.0):
    """Waits until every thread of `pid` is stopped (after SIGSTOP, which
    kill() only queues: a thread running on another CPU stops a moment
    later, and may still read and write meanwhile)."""
    def all_stopped():
        tasks = os.listdir(f"/proc/{pid}/task")
        for t in tasks:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state not in ("T", "t"):
                return False
        return True
    wait_for(all_stopped, timeout, interval=0.005, what=f"pid {pid} stopped")


def stop_pid(proc, timeout=10.0):
    """SIGTERM the process we started (by PID), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        return None


# --------------------------------------------------------------------------
# Upstream: tests/peers/sink.py

class Sink:
    """A scripted aiosmtpd upstream with a maildir and a JSONL event log."""

    def __init__(self, workdir, *extra_args, name="sink"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.maildir = os.path.join(self.dir, "mail")
        self.log_path = os.path.join(self.dir, "log.jsonl")
        self.port_file = os.path.join(self.dir, "port")
        self.stderr_path = os.path.join(self.dir, "stderr")
        args = [PYTHON, SINK_PY, "--host", "127.0.0.1", "--port", "0",
                "--port-file", self.port_file, "--maildir", self.maildir,
                "--log", self.log_path, *extra_args]
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)
        wait_for(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                 20, what="sink port file")
        if self.proc.poll() is not None:
            raise AssertionError("sink.py exited: " + self.stderr())
        with open(self.port_file, encoding="ascii") as fh:
            self.port = int(fh.read().strip())

    def stderr(self):
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stop(self):
        stop_pid(self.proc)
        self._stderr.close()

    def events(self, event=None):
        out = []
        if not os.path.exists(self.log_path):
            return out
        with open(self.log_path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if event is None or rec["event"] == event:
                    out.append(rec)
        return out

    def connections(self):
        return len(self.events("connect"))

    def commands(self, verb=None):
        return [e["line"] for e in self.events("command")
                if verb is None or e["verb"] == verb.upper()]

    def stored(self):
        """[(meta dict, eml bytes)] for every complete stored message."""
        out = []
        if not os.path.isdir(self.maildir):
            return out
        for name in sorted(os.listdir(self.maildir)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            with open(os.path.join(self.maildir, name), encoding="utf-8") as fh:
                meta = json.load(fh)
            with open(os.path.join(self.maildir, meta["queue_id"] + ".eml"), "rb") as fh:
                out.append((meta, fh.read()))
        return out

    def wait_events(self, event, count=1, timeout=10):
        return wait_for(lambda: len(self.events(event)) >= count and self.events(event),
                        timeout, what=f"{count} sink '{event}' event(s)")

    def connection_states(self):
        """{conn: {"open", "pending", "transaction"}} from the log: open until
        it disconnected; pending while a command waits for its reply; in a
        transaction from MAIL until the final dot, RSET, XCLIENT or EHLO."""
        states = {}
        for e in self.events():
            ev, conn = e["event"], e.get("conn")
            if ev == "connect":
                states[conn] = {"open": True, "pending": False, "transaction": False}
            st = states.get(conn)
            if st is None:
                continue
            if ev == "disconnect":
                st["open"] = False
            elif ev == "command":
                st["pending"] = True
                if e["verb"] == "MAIL":
                    st["transaction"] = True
                elif e["verb"] in ("RSET", "XCLIENT", "EHLO", "HELO"):
                    st["transaction"] = False
            elif ev == "reply":
                st["pending"] = False
            elif ev == "dot":
                st["transaction"] = False
        return states

    def wait_idle(self, timeout=10):
        """Nothing is in flight upstream: every connection the sink saw has
        disconnected or sits idle (e.g. in the gateway's upstream pool): its
        last command answered and no transaction open on it."""
        def settled():
            return all(not s["open"] or not (s["pending"] or s["transaction"])
                       for s in self.connection_states().values())
        wait_for(settled, timeout, what="sink connections to close or go idle")

    def wait_closed(self, timeout=10):
        """Every connection the sink saw has disconnected."""
        wait_for(lambda: len(self.events("disconnect")) >= self.connections(),
                 timeout, what="sink connections to close")


# --------------------------------------------------------------------------
# The gateway

def _audit_order(rec):
    """`ts` (milliseconds), then the session's number (`PREFIX-N`, in
    accept order): two threads' lines of the same millisecond; stable
    (file order) for one session's lines."""
    _, _, n = str(rec.get("session", "")).rpartition("-")
    return rec.get("ts", ""), int(n) if n.isdigit() else 0


class Gateway:
    """`relaygate run` on port 0 with a temporary config and policy."""

    def __init__(self, workdir, upstream_port, policy=None, config=None,
                 name="gateway", audit_to_file=True, args=()):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.policy_path = os.path.join(self.dir, "policy.json")
        with open(self.policy_path, "w", encoding="utf-8") as fh:
            json.dump(policy if policy is not None else DEMO_POLICY, fh, indent=1)
        self.audit_path = os.path.join(self.dir, "audit.jsonl") if audit_to_file else "-"
        cfg = {
            "listeners": [{"address": "127.0.0.1", "port": 0}],
            "upstream": {"host": "127.0.0.1", "port": upstream_port},
            "policy_file": self.policy_path,
            "admin": {"enabled": True, "address": "127.0.0.1", "port": 0},
            "threads": 2,
            "hostname": "relaygate.test",
            "audit_log": self.audit_path,
            "drain_timeout_seconds": 5,
        }
        for key, value in (config or {}).items():
            if value is None:  # a key the test wants gone (e.g. policy_file)
                cfg.pop(key, None)
            elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        self.config = cfg
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh, indent=1)
        self.stderr_path = os.path.join(self.dir, "stderr")
        self._stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        # Leak checking is on by default for ASan; make reports fail loudly.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([OPTIONS["relaygate"], "run", "--config", self.config_path,
                                      *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=env)
        self.port = None
        self.admin_port = None
        self.expect_exit = False  # set by tests that SIGTERM the gateway themselves

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"relaygate exited with {self.proc.returncode}: "
                                     + self.stderr())
            for rec in self.log_records():
                if rec.get("event") == "listening":
                    if rec.get("kind") == "smtp":
                        self.port = rec["port"]
                    elif rec.get("kind") == "admin":
                        self.admin_port = rec["port"]
            return self.port is not None and (self.admin_port is not None
                                              or not cfg["admin"]["enabled"])
        wait_for(ready, 30, what="relaygate listening")
        self.exit_code = None

    # ---- logs ---------------------------------------------------------
    def stderr(self):
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def log_records(self):
        out = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    # Each I/O thread writes its audit lines 10 ms after the first of a
    # batch (kAuditFlushInterval): a line logged before a reply the test
    # already has may still be on its way, and two threads' lines may reach
    # the file out of order.
    AUDIT_SETTLE_SECONDS = 0.1

    def audit(self, type_=None):
        """The audit records (of one type), in `ts` order, once every line
        logged before this call can have been written."""
        time.sleep(self.AUDIT_SETTLE_SECONDS)
        if self.audit_path == "-":
            recs = self.log_records()
        else:
            recs = []
            if os.path.exists(self.audit_path):
                with open(self.audit_path, encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            recs.append(json.loads(line))
        recs.sort(key=_audit_order)
        return [r for r in recs if r.get("log") == "audit"
                and (type_ is None or r.get("type") == type_)]

    def transactions(self):
        return self.audit("transaction")

    def wait_transactions(self, count, timeout=10):
        return wait_for(lambda: len(self.transactions()) >= count and self.transactions(),
                        timeout, what=f"{count} audit transaction line(s)")

    def wait_connections_logged(self, count, timeout=10):
        return wait_for(lambda: len(self.audit("connection")) >= count and self.audit("connection"),
                        timeout, what=f"{count} audit connection line(s)")

    def sanitizer_report(self):
        text = self.stderr()
        for pat in SANITIZER_PATTERNS:
            idx = text.find(pat)
            if idx >= 0:
                return text[max(0, idx - 200): idx + 4000]
        return None

    # ---- admin --------------------------------------------------------
    def http_get(self, path, timeout=10):
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.exit_code = stop_pid(self.proc, timeout=20)
        self._stderr.close()
        return self.exit_code


# --------------------------------------------------------------------------
# A raw SMTP client with exact byte control

class Reply:
    def __init__(self, lines):
        self.lines = lines                       # raw text lines without CRLF
        self.code = int(lines[-1][:3])
        first = lines[0][4:]
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", first)
        self.enhanced = m.group(1) if m else ""
        self.text = "\n".join(lines)

    def __repr__(self):
        return f"Reply({self.text!r})"

    @property
    def status(self):
        """'550 5.7.1' -- code and enhanced code."""
        return f"{self.code} {self.enhanced}".strip()


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=15.0, greet=True, source=None):
        # `source`: the local address to connect from (any 127/8 address
        # works on loopback), so one test can be many clients.
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.timeout = timeout
        self.greeting = self.read_reply() if greet else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete reply line")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def read_reply(self, timeout=None):
        lines = []
        while True:
            line = self._read_line(timeout)
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return Reply(lines)

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.read_reply(timeout)

    def ehlo(self, name="client.demo.example"):
        return self.cmd("EHLO " + name)

    def is_closed(self, timeout=5.0):
        """True when the server has closed the connection (EOF or reset)."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def data(self, content):
        """DATA, then the dot-stuffed content and the terminator; returns the final reply."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r
        self.send(dot_stuff(content) + b".\r\n")
        return self.read_reply()


def client_from(addr, port, timeout=15.0):
    """A Client connected from the local address `addr`."""
    return Client(port, timeout=timeout, source=addr)


def dot_stuff(content):
    """RFC 5321 4.5.2 transparency; content must end with CRLF."""
    if isinstance(content, str):
        content = content.encode()
    assert content.endswith(b"\r\n"), "content must end with CRLF"
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def message(from_hdr="Alice <alice@demo.example>", extra_headers=(), body=None,
            subject="integration test"):
    hdrs = [f"From: {from_hdr}", "To: Bob <bob@dest.example>", f"Subject: {subject}",
            "Date: Mon, 1 Jan 2024 00:00:00 +0000",
            "Message-ID: <test-%d@demo.example>" % time.monotonic_ns()]
    hdrs.extend(extra_headers)
    if body is None:
        body = "Hello.\r\n.leading dot line\r\n..two dots\r\n\r\nlast line\r\n"
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode()


# --------------------------------------------------------------------------
# Base test case

def free_port():
    """A loopback TCP port nobody listens on now (for servers that cannot
    bind port 0 and report it, like redis-server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server (Debian's package, installed by scripts/setup) on
    a free loopback port, without persistence; stopped by PID. kill() and
    restart() simulate an outage; pause()/resume() (SIGSTOP/SIGCONT) a
    server that accepts connections but never answers."""

    BINARY = "/usr/bin/redis-server"

    def __init__(self, workdir, name="redis", port=None):
        if not os.path.exists(self.BINARY):
            raise AssertionError("redis-server is missing: run scripts/setup")
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [self.BINARY, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited: " + self.log()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    return c.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_for(answers, 20, what="redis-server answering")

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8",
                      errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self):
        self.kill()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        wait_stopped(self.proc.pid)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            stop_pid(self.proc)


class GatewayTestCase(unittest.TestCase):
    """Per test: a temp dir; start_sink()/start_gateway() register cleanups
    that stop the processes by PID and fail the test on a sanitizer report
    or an unclean gateway exit."""

    maxDiff = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="relaygate-it-")
        self._keep = False
        self.addCleanup(self._remove_workdir)

    def _remove_workdir(self):
        if self._keep or os.environ.get("RELAYGATE_KEEP_TMP"):
            sys.stderr.write(f"\n[kept {self.workdir}]\n")
            return
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start_sink(self, *args, name="sink"):
        sink = Sink(self.workdir, *args, name=name)
        self.addCleanup(sink.stop)
        return sink

    def start_gateway(self, upstream_port, policy=None, config=None, name="gateway", args=()):
        gw = Gateway(self.workdir, upstream_port, policy=policy, config=config, name=name,
                     args=args)
        self.addCleanup(self._stop_gateway, gw)
        return gw

    def _stop_gateway(self, gw):
        was_alive = gw.alive() or gw.expect_exit
        code = gw.stop()
        report = gw.sanitizer_report()
        if report or not was_alive or code != 0:
            self._keep = True
        self.assertIsNone(report, "sanitizer report in relaygate stderr:\n" + (report or ""))
        self.assertTrue(was_alive, "relaygate died during the test:\n" + gw.stderr()[-4000:])
        self.assertEqual(code, 0, "relaygate did not exit cleanly on SIGTERM:\n"
                         + gw.stderr()[-4000:])

    def start_redis(self, name="redis"):
        redis = RedisServer(self.workdir, name=name)
        self.addCleanup(redis.stop)
        return redis

    def setup_pair(self, *sink_args, policy=None, config=None):
        sink = self.start_sink(*sink_args)
        gw = self.start_gateway(sink.port, policy=policy, config=config)
        return sink, gw

    # ---- assertions ---------------------------------------------------
    def assertReply(self, reply, status, text_contains=None):
        self.assertEqual(reply.status, status, f"full reply: {reply.text!r}")
        if text_contains is not None:
            self.assertIn(text_contains, reply.text)

    def assertNothingStored(self, sink):
        self.assertEqual(sink.stored(), [], "a message reached the upstream's store")
        self.assertEqual(sink.events("stored"), [])
        self.assertEqual(sink.events("dot"), [], "the upstream saw a final dot")


def swaks(port, *args, timeout=60):
    """Run swaks against the gateway; returns (exit code, transcript)."""
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port),
           "--helo", "client.demo.example", "--timeout", "20", *args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def swaks_server_lines(transcript):
    """The server's reply lines from a swaks transcript ('<-  250 ...')."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*<(?:-|~|\*\*)\s+(.*)$", line)
        if m:
            out.append(m.group(1))
    return out


def main():
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--relaygate":
            OPTIONS["relaygate"] = os.path.abspath(args[i + 1])
            i += 2
        elif a == "--sanitize":
            OPTIONS["sanitize"] = args[i + 1].strip().upper() in ("ON", "1", "TRUE", "YES")
            i += 2
        else:
            argv.append(a)
            i += 1
    if os.environ.get("RELAYGATE_SANITIZE", "").upper() in ("ON", "1", "TRUE", "YES"):
        OPTIONS["sanitize"] = True
    if not OPTIONS["relaygate"]:
        OPTIONS["relaygate"] = os.environ.get(
            "RELAYGATE", os.path.join(SOURCE_DIR, "build", "gateway", "relaygate"))
    if not os.access(OPTIONS["relaygate"], os.X_OK):
        sys.exit(f"relaygate binary not found: {OPTIONS['relaygate']} (use --relaygate PATH)")
    unittest.main(module="__main__", argv=argv, verbosity=2)
