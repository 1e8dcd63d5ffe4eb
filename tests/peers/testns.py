"""A scripted DNS server for tests: ldns-testns (Debian ldnsutils) on a
free loopback port, serving the entries of a data file, stopped by PID.

    ns = TestNs(workdir, "main", entry("a.test.", "A", ["a.test. 300 IN A 192.0.2.1"]))
    ... relaygate resolve a.test --type A --dns-server 127.0.0.1:<ns.port> ...
    ns.stop()

`entry()` writes one ENTRY_BEGIN..ENTRY_END block (see ldns-testns(1)):
the reply copies the query's id and question unless `adjust` says
otherwise; `sleep=N` in `adjust` delays the answer; `flags="TC"` with
`match="UDP"` makes a truncated UDP answer.  Used by
tests/integration/test_dns*.py and tests/e2e/test_echospoofing.py.
"""

import base64
import os
import socket
import subprocess
import time


def entry(qname, qtype, answer=(), authority=(), rcode="NOERROR", flags="",
          match="", adjust="copy_id copy_query"):
    lines = ["ENTRY_BEGIN", f"MATCH opcode qtype qname {match}".strip(),
             f"ADJUST {adjust}", f"REPLY QR RD RA {flags} {rcode}".replace("  ", " "),
             "SECTION QUESTION", f"{qname} IN {qtype}", "SECTION ANSWER", *answer]
    if authority:
        lines += ["SECTION AUTHORITY", *authority]
    lines.append("ENTRY_END")
    return "\n".join(lines) + "\n"


def txt_rr(name, text, ttl=300):
    """A TXT record in zone-file form, split into <=255-byte strings."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return f"{name} {ttl} IN TXT " + " ".join('"' + c.replace('"', '\\"') + '"' for c in chunks)


def txt_entry(name, texts, ttl=300):
    """An entry answering TXT queries for `name` (absolute, with the dot)."""
    return entry(name, "TXT", [txt_rr(name, t, ttl) for t in texts])


class TestNs:
    """ldns-testns on a free loopback port, stopped by PID.

    The port is chosen here (free for UDP and TCP) rather than with
    ldns-testns -r: that mode re-binds an already bound socket when its
    first random port is taken for TCP, and exits with "bind(): Invalid
    argument".  A port taken between the probe and the start is retried."""

    def __init__(self, workdir, name, zone):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "zone.data")
        with open(self.data, "w", encoding="ascii") as fh:
            fh.write(zone)
        self.out_path = os.path.join(self.dir, "out")
        self._out = None
        self.proc = None
        for _attempt in range(5):
            self.port = free_port()
            if self._start():
                self.server = f"127.0.0.1:{self.port}"
                return
        output = self.output()
        self.stop()
        raise AssertionError("ldns-testns did not start: " + output)

    def _start(self):
        if self._out:
            self._out.close()
        self._out = open(self.out_path, "wb")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["ldns-testns", "-p", str(self.port), self.data], stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if f"Listening on port {self.port}" in self.output():
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def output(self):
        with open(self.out_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out:
            self._out.close()
            self._out = None


def free_port():
    """A loopback port free for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


class DkimKey:
    """An RSA (2048) or Ed25519 signing key made with openssl, its DKIM key
    record, and signing with python3-dkim (/usr/bin/python3's dkim)."""

    def __init__(self, workdir, selector, domain, algorithm="rsa"):
        self.selector, self.domain, self.algorithm = selector, domain, algorithm
        pem = os.path.join(workdir, f"{selector}.{domain}.{algorithm}.pem")
        gen = (["openssl", "genpkey", "-algorithm", "ED25519"] if algorithm == "ed25519"
               else ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        subprocess.run(gen + ["-out", pem], check=True, capture_output=True)
        with open(pem, "rb") as fh:
            self.private_pem = fh.read()
        der = subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        if algorithm == "ed25519":
            # RFC 8463 3.2: the raw 32-byte key, not the SPKI.
            self.public = base64.b64encode(der[-32:]).decode()
            # python3-dkim takes the raw 32-byte private key, base64-encoded.
            raw = subprocess.run(["openssl", "pkey", "-in", pem, "-outform", "DER"],
                                 check=True, capture_output=True).stdout
            self.private = base64.b64encode(raw[-32:])
        else:
            self.public = base64.b64encode(der).decode()
            self.private = self.private_pem
        k = "ed25519" if algorithm == "ed25519" else "rsa"
        self.record = f"v=DKIM1; k={k}; p={self.public}"
        self.key_name = f"{selector}._domainkey.{domain}"

    def zone_entry(self):
        return txt_entry(self.key_name + ".", [self.record])

    def sign(self, message, canonicalize=(b"relaxed", b"relaxed"),
             headers=(b"from", b"to", b"subject", b"date", b"message-id")):
        import dkim  # pylint: disable=import-outside-toplevel
        sig = dkim.sign(message, self.selector.encode(), self.domain.encode(), self.private,
                        canonicalize=canonicalize, include_headers=list(headers),
                        signature_algorithm=(b"ed25519-sha256" if self.algorithm == "ed25519"
                                             else b"rsa-sha256"))
        return sig + message
