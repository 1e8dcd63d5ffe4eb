"""Shared helpers for relaygate's end-to-end tests (tests/e2e/test_*.py).

Real peers only: the private signing relay of scripts/signer (Postfix +
OpenDKIM + tests/peers/sink.py), the relaygate binary under test, a raw SMTP
client (raw so that a test can send exactly the bytes it means, bare LFs
included) and tests/peers/dkim_verify.py for offline DKIM verification.

Everything a test starts is recorded and stopped by PID in Harness.close().
Run with Debian's /usr/bin/python3.
"""

import importlib.util
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
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIGNER = os.path.join(ROOT, "scripts", "signer")
DKIM_VERIFY = os.path.join(ROOT, "tests", "peers", "dkim_verify.py")
PY = "/usr/bin/python3"
SKIP = 77  # ctest SKIP_RETURN_CODE

QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")


class TestFailure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def check(cond, what, detail=None):
    if not cond:
        raise TestFailure(what + (f"\n    detail: {detail}" if detail is not None else ""))
    log(f"  ok: {what}")


def skip(why):
    log(f"SKIP: {why}")
    sys.exit(SKIP)


def require_environment():
    if os.geteuid() != 0:
        skip("needs root (the private Postfix master runs as root)")
    for tool in ("postfix", "postconf", "postqueue", "opendkim", "opendkim-genkey", "ldns-testns",
                 "openssl"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":") + ["/usr/sbin"]):
            skip(f"{tool} not installed (run scripts/setup)")
    for module in ("aiosmtpd", "dkim"):
        if importlib.util.find_spec(module) is None:
            skip(f"python module {module} missing for {sys.executable} (run scripts/setup)")


# ------------------------------------------------------------------ SMTP client
class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return " / ".join(self.lines)

    @property
    def enhanced(self):
        m = re.match(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b", self.lines[0]) if self.lines else None
        return m.group(1) if m else None

    def __repr__(self):
        return f"Reply({self.text!r})"


class SmtpClient:
    """A deliberately literal SMTP client: it sends what it is told."""

    def __init__(self, host, port, source=None, timeout=30):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""
        self.transcript = []
        self.greeting = self.read_reply()

    def read_reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    lines.append("(connection closed)")
                    self.transcript.append("<- (connection closed)")
                    return Reply(0, lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            self.transcript.append("<- " + text)
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                code = int(text[:3]) if text[:3].isdigit() else 0
                return Reply(code, lines)

    def cmd(self, line):
        self.transcript.append("-> " + line)
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_reply()

    def send_raw(self, data):
        self.transcript.append(f"-> ({len(data)} bytes of message data)")
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.sock.settimeout(5)
            self.read_reply()
        except OSError:
            pass
        self.sock.close()


def dot_stuff(message):
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", message)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def send_mail(host, port, mail_from, rcpts, message, source=None, raw_data=None, helo="client.test"):
    """One transaction. Returns dict stage -> Reply, plus 'final' (the last
    reply that decided the transaction) and 'transcript'.  `message` is
    dot-stuffed and terminated here; `raw_data` is sent verbatim instead."""
    c = SmtpClient(host, port, source=source)
    res = {"greeting": c.greeting}
    try:
        res["ehlo"] = c.cmd(f"EHLO {helo}")
        res["mail"] = r = c.cmd(f"MAIL FROM:<{mail_from}>")
        res["final"] = r
        if r.code != 250:
            return res
        ok_rcpt = 0
        for rcpt in rcpts:
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            res.setdefault("rcpt", []).append(r)
            ok_rcpt += r.code in (250, 251)
        if not ok_rcpt:
            res["final"] = r
            return res
        res["data"] = r = c.cmd("DATA")
        res["final"] = r
        if r.code != 354:
            return res
        c.send_raw(raw_data if raw_data is not None else dot_stuff(message))
        res["dot"] = res["final"] = c.read_reply()
        return res
    finally:
        c.close()
        res["transcript"] = c.transcript


def build_message(headers, body="Hello.\r\n"):
    """headers: list of (name, value) or raw header lines; CRLF everywhere."""
    lines = []
    for h in headers:
        lines.append(h if isinstance(h, str) else f"{h[0]}: {h[1]}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def new_token(label):
    return f"{label}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ processes
def wait_for(pred, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Signer:
    """scripts/signer in DIR; `prefix` runs it inside a network namespace."""

    def __init__(self, directory, domains, trust=None, prefix=()):
        self.dir = directory
        self.prefix = list(prefix)
        args = self.prefix + [SIGNER, "start", "--dir", directory]
        for d in domains:
            args += ["--domain", d]
        for t in trust or ():
            args += ["--trust", t]
        log(f"  starting signer: {' '.join(args)}")
        self.started = True
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120, check=False)
        for line in p.stdout.splitlines():
            log("    " + line)
        if p.returncode != 0:
            raise TestFailure(f"scripts/signer start failed (exit {p.returncode})")
        self.env = {}
        with open(os.path.join(directory, "env"), encoding="utf-8") as fh:
            for line in fh:
                if "=" in line and not line.startswith("#"):
                    k, v = line.rstrip("\n").split("=", 1)
                    self.env[k] = v.strip("'")
        self.port = int(self.env["SIGNER_PORT"])
        self.sink_dir = self.env["SINK_DIR"]
        self.key_dir = self.env["KEY_DIR"]
        self.queue_dir = self.env["POSTFIX_QUEUE_DIR"]
        self.config_dir = self.env["POSTFIX_CONFIG_DIR"]
        self.postfix_log = self.env["POSTFIX_LOG"]
        m = re.search(r"id=([0-9a-f]+)", p.stdout)
        self.instance_id = m.group(1) if m else None

    def stop(self):
        if not self.started:
            return
        self.started = False
        subprocess.run(self.prefix + [SIGNER, "stop", "--dir", self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=90, check=False)

    # -- what reached Postfix and the sink
    def sink_messages(self):
        out = []
        for name in sorted(os.listdir(self.sink_dir)):
            if name.endswith(".json"):
                eml = os.path.join(self.sink_dir, name[:-5] + ".eml")
                with open(eml, "rb") as fh:
                    out.append((eml, fh.read()))
        return out

    def sink_find(self, token):
        return [e for e, data in self.sink_messages() if token.encode() in data]

    def wait_sink(self, token, timeout=30):
        found = wait_for(lambda: self.sink_find(token), timeout)
        return found[0] if found else None

    def queue_files(self):
        files = []
        for sub in QUEUE_SUBDIRS:
            for root, _dirs, names in os.walk(os.path.join(self.queue_dir, sub)):
                files += [os.path.join(root, n) for n in names]
        return files

    def postqueue(self):
        p = subprocess.run(self.prefix + ["postqueue", "-c", self.config_dir, "-p"], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, check=False)
        return p.stdout.strip()

    def queue_empty(self, timeout=10):
        """Waits until the queue directories hold no file (an accepted message
        may still be leaving).  Returns (empty, files, postqueue -p output)."""
        wait_for(lambda: not self.queue_files(), timeout)
        files = self.queue_files()
        pq = self.postqueue()
        return (not files and "Mail queue is empty" in pq), files, pq

    def postfix_log_has(self, token):
        try:
            with open(self.postfix_log, encoding="utf-8", errors="replace") as fh:
                return [line.rstrip() for line in fh if token in line]
        except OSError:
            return []

    def dkim(self, eml, domain=None):
        args = [PY, DKIM_VERIFY, "--message", eml, "--key-dir", self.key_dir]
        if domain:
            args += ["--domain", domain]
        p = subprocess.run(args, stdout=subprocess.PIPE, text=True, timeout=60, check=False)
        return json.loads(p.stdout)


class Gateway:
    """relaygate run with a generated config; audit lines go to a file."""

    def __init__(self, binary, directory, policy, upstream_port, listen="127.0.0.1",
                 upstream_host="127.0.0.1", xclient=True, prefix=(), admin_address=None,
                 dns_servers=(), extra_config=None):
        self.dir = directory
        self.audit = os.path.join(directory, "audit.jsonl")
        self.errlog = os.path.join(directory, "relaygate.log")
        cfg = {
            "listeners": [{"address": listen, "port": 0}],
            "upstream": {"host": upstream_host, "port": upstream_port, "xclient": xclient,
                         "connect_timeout_seconds": 10, "reply_timeout_seconds": 60},
            "policy_file": policy,
            "admin": {"address": admin_address or listen, "port": 0},
            "threads": 2,
            "hostname": "relaygate.test",
            "audit_log": self.audit,
            "drain_timeout_seconds": 5,
        }
        if dns_servers:
            cfg["dns"] = {"servers": list(dns_servers), "timeout_ms": 1000}
        cfg.update(extra_config or {})
        self.config = os.path.join(directory, "relaygate.json")
        with open(self.config, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh, indent=2)
        self.err = open(self.errlog, "wb")  # pylint: disable=consider-using-with
        # `ip netns exec` execs the command, so the PID is relaygate's own.
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            list(prefix) + [binary, "run", "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        self.host = listen
        self.smtp_port = self.admin_port = None

        def ports():
            if self.proc.poll() is not None:
                return True
            with open(self.errlog, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        j = json.loads(line)
                    except ValueError:
                        continue
                    if j.get("event") == "listening":
                        if j.get("kind") == "smtp":
                            self.smtp_port = j["port"]
                        elif j.get("kind") == "admin":
                            self.admin_port = j["port"]
            return self.smtp_port is not None and self.admin_port is not None

        wait_for(ports, 20)
        if self.smtp_port is None:
            raise TestFailure(f"relaygate did not start (exit {self.proc.poll()}):\n"
                              + open(self.errlog, encoding="utf-8", errors="replace").read())
        log(f"  relaygate pid {self.proc.pid}: SMTP {listen}:{self.smtp_port}, "
            f"admin {admin_address or listen}:{self.admin_port}, upstream {upstream_host}:{upstream_port} "
            f"(xclient {'on' if xclient else 'off'})")

    # relaygate writes each thread's audit lines 10 ms after the first of a
    # batch: give lines logged before a reply the test has time to land.
    AUDIT_SETTLE_SECONDS = 0.1

    def audit_lines(self):
        time.sleep(self.AUDIT_SETTLE_SECONDS)
        out = []
        try:
            with open(self.audit, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
        return [j for j in out if j.get("type") == "transaction"]

    def audit_events(self, type_):
        time.sleep(self.AUDIT_SETTLE_SECONDS)
        out = []
        try:
            with open(self.audit, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        j = json.loads(line)
                    except ValueError:
                        continue
                    if j.get("type") == type_:
                        out.append(j)
        except OSError:
            pass
        return out

    def metrics(self):
        import urllib.request  # pylint: disable=import-outside-toplevel
        with urllib.request.urlopen(f"http://{self.host}:{self.admin_port}/metrics",
                                    timeout=10) as resp:
            return resp.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.err.close()


def run_scenario(work, scenario, run, logs=("relaygate.log", "signer/postfix.log")):
    """Runs run(); a failure is logged with the tails of `logs` (paths in
    `work`). scenario.close() always runs (False from it fails the test).
    `work` is removed after a pass, kept after a failure or with KEEP=1.
    Returns the exit status: 0 pass, 1 fail."""
    ok = False
    try:
        run()
        ok = True
    except (TestFailure, OSError, socket.timeout, KeyError, ValueError, AssertionError) as e:
        log(f"FAIL: {type(e).__name__}: {e}")
        for f in logs:
            p = os.path.join(work, f)
            if os.path.exists(p):
                log(f"--- tail of {p}")
                with open(p, encoding="utf-8", errors="replace") as fh:
                    log("".join(fh.readlines()[-15:]))
    finally:
        ok = scenario.close() is not False and ok
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    return 0 if ok else 1


def main(argv, doc, workdir_prefix, scenario_class, logs, needs=()):
    """The command line of a scenario test: `test_X.py /path/to/relaygate`.
    Skips (77) without root, the packages or one of `needs` (paths)."""
    if len(argv) != 2:
        print(doc)
        return 2
    binary = os.path.abspath(argv[1])
    require_environment()
    for path in needs:
        if not os.path.exists(path):
            skip(f"{path} not installed (run scripts/setup)")
    work = make_workdir(workdir_prefix)
    s = scenario_class(binary, work)
    return run_scenario(work, s, s.run, logs=logs)


def make_workdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    # Postfix daemons run as 'postfix' and must traverse the path.
    os.chmod(d, 0o755)
    return d


def relaygate_explain_dkim(binary, policy, client_ip, mail_from, eml, dns_server):
    """The DKIM results `relaygate explain --message` reports for a file."""
    p = subprocess.run([binary, "explain", "--policy", policy, "--client-ip", client_ip,
                        "--mail-from", mail_from, "--message", eml, "--dns-server", dns_server,
                        "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60, check=False)
    try:
        return json.loads(p.stdout)["dkim"]
    except (ValueError, KeyError) as e:
        raise TestFailure(f"relaygate explain: {e}: {p.stdout} {p.stderr}") from e


def relaygate_check(binary, policy):
    p = subprocess.run([binary, "check", "--policy", policy], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30, check=False)
    return p.returncode, p.stdout, p.stderr
