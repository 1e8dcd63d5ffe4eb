#!/usr/bin/python3
"""Regenerate the DKIM test vectors in tests/dkim/vectors/ (commit the output).
The RFC 8463 Appendix A files (rfc8463.eml and the football.example.com
records) are copied from the RFC and left alone.

    /usr/bin/python3 tests/dkim/make_vectors.py              # everything
    /usr/bin/python3 tests/dkim/make_vectors.py --only NAME...  # some vectors
    /usr/bin/python3 tests/dkim/make_vectors.py --list

Keys are random, so a full run rewrites every file.  --only writes just the
named vectors and the keys they use, leaving every other file byte-identical;
since a new key invalidates the other vectors signed with it, --only refuses
unless those are named too (adding a vector with a key of its own touches
nothing else).

Needs opendkim-genkey and opendkim (opendkim-tools, opendkim), openssl and
Debian's python3-dkim.  Writes, for every vector, <name>.eml (the signed
message, CRLF lines) and, for every key, dns/<selector>._domainkey.<domain>.txt
(the TXT record text as it would be published, strings concatenated).

Signers: python3-dkim (dkim.sign; one signature built with its gen_header to
get t=/x=) and OpenDKIM itself (the daemon in signing mode, driven over the
milter protocol by the small client below, since opendkim-testmsg only signs
with rsa-sha1).  OpenDKIM signs with Ed25519 (a=ed25519-sha256) from a
PKCS#8 PEM key (openssl genpkey -algorithm ed25519) named in a KeyTable, but
only when SignatureAlgorithm is ed25519-sha256: the algorithm is a global
setting, and with the default rsa-sha256 the Ed25519 key makes dkim_eom()
fail ("EVP_PKEY_get1_RSA() failed", SMTP 451 4.7.0 resource unavailable).
"""

import argparse
import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import dkim
from dkim.canonicalization import CanonicalizationPolicy

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vectors")
DOMAIN = "vectors.example"

HEADERS = (
    b"Received: from client.vectors.example (client [192.0.2.10])\r\n"
    b"\tby mx.vectors.example; Fri, 11 Jul 2003 21:01:00 -0700\r\n"
    b"From: Joe SixPack <joe@vectors.example>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner   ready?\r\n"
    b"  (folded\tsubject)\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@vectors.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
)
BODY = (
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?   \r\n"
    b"\t tabs and  spaces\t\r\n"
    b" \r\n"
    b"Joe.\r\n"
    b"\r\n"
    b"\r\n"
)
MESSAGE = HEADERS + b"\r\n" + BODY
# Signed twice (oversigning From) and once absent (Reply-To): RFC 6376 5.4.2.
SIGN_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                b"content-type", b"from", b"reply-to"]


def run(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def crlf(b):
    return re.sub(rb"\r?\n", b"\r\n", b)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(data)


def write_dns(selector, record):
    os.makedirs(os.path.join(OUT, "dns"), exist_ok=True)
    write(os.path.join("dns", "%s._domainkey.%s.txt" % (selector, DOMAIN)),
          record.encode("ascii") + b"\n")


def zone_txt(path):
    """The concatenated strings of an opendkim-genkey <selector>.txt file."""
    with open(path, encoding="ascii") as fh:
        return "".join(re.findall(r'"([^"]*)"', fh.read()))


def rsa_genkey(tmp, selector, bits):
    run("opendkim-genkey", "-b", str(bits), "-d", DOMAIN, "-s", selector, "-D", tmp)
    write_dns(selector, zone_txt(os.path.join(tmp, selector + ".txt")))
    path = os.path.join(tmp, selector + ".private")
    with open(path, "rb") as fh:
        return fh.read(), path


def rsa_small_key(tmp, selector, bits):
    """opendkim-genkey refuses tiny keys; openssl does not."""
    pem = os.path.join(tmp, selector + ".pem")
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits,
        "-out", pem)
    der = run("openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER",
              capture_output=True).stdout
    write_dns(selector, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
    with open(pem, "rb") as fh:
        return fh.read(), pem


def ed25519_key(tmp, selector):
    """RFC 8463 4: p= is the raw 32-octet public key, not a SubjectPublicKeyInfo."""
    pem = os.path.join(tmp, selector + ".pem")
    run("openssl", "genpkey", "-algorithm", "ed25519", "-out", pem)
    pub = run("openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER",
              capture_output=True).stdout[-32:]
    priv = run("openssl", "pkey", "-in", pem, "-outform", "DER",
               capture_output=True).stdout[-32:]
    write_dns(selector, "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub).decode())
    return base64.b64encode(priv), pem  # dkimpy takes the base64 seed


def dkimpy_sign(name, selector, key, algo, canon, length=False):
    sig = dkim.sign(MESSAGE, selector.encode(), DOMAIN.encode(), key,
                    signature_algorithm=algo, canonicalize=canon,
                    include_headers=SIGN_HEADERS, length=length)
    write(name + ".eml", crlf(sig) + MESSAGE)


def dkimpy_sign_ttl(name, selector, key, t, x):
    """dkim.sign has no x=; build the same tags plus t=/x= and let gen_header sign."""
    d = dkim.DKIM(MESSAGE)
    d.signature_algorithm = b"rsa-sha256"
    pk = dkim.crypto.parse_pem_private_key(key)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body = policy.canonicalize_body(d.body)
    bh = base64.b64encode(dkim.HASH_ALGORITHMS[b"rsa-sha256"](body).digest())
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
              (b"d", DOMAIN.encode()), (b"s", selector.encode()),
              (b"t", str(t).encode()), (b"x", str(x).encode()),
              (b"h", b" : ".join(SIGN_HEADERS)), (b"bh", bh), (b"b", b"0" * 60)]
    d.include_headers = tuple(SIGN_HEADERS)
    d.hasher = dkim.HASH_ALGORITHMS[b"rsa-sha256"]
    res = d.gen_header(fields, tuple(SIGN_HEADERS), policy, b"DKIM-Signature", pk)
    write(name + ".eml", crlf(b"DKIM-Signature: " + res) + MESSAGE)


# --- a minimal milter client (Sendmail milter protocol v6) for OpenDKIM ---

def milter_packet(cmd, data=b""):
    return struct.pack("!I", len(data) + 1) + cmd + data


def milter_read(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("milter closed the connection")
            buf += chunk
        return buf
    (n,) = struct.unpack("!I", exact(4))
    data = exact(n)
    return data[:1], data[1:]


def milter_sign(port, message):
    """Sends `message` through the filter; returns the header fields it inserts."""
    head, _, body = message.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value.lstrip(b" ")))
    added = []
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        def send(cmd, data=b"", reply=True):
            s.sendall(milter_packet(cmd, data))
            while reply:
                code, data = milter_read(s)
                if code in (b"h", b"i"):  # add / insert header
                    if code == b"i":
                        data = data[4:]
                    name, value = data.rstrip(b"\0").split(b"\0", 1)
                    added.append((name, value))
                    continue
                if code in (b"c", b"a", b"O"):
                    return code
                if code in (b"m", b"b", b"e", b"q"):  # modifications we ignore
                    continue
                raise RuntimeError("milter replied %r %r" % (code, data))
        send(b"O", struct.pack("!III", 6, 0x1FF, 0))
        s.sendall(milter_packet(b"D", b"C" + b"j\0mx.vectors.example\0"))
        send(b"C", b"localhost\x004" + struct.pack("!H", 25) + b"127.0.0.1\0")
        send(b"H", b"client.vectors.example\0")
        s.sendall(milter_packet(b"D", b"M" + b"i\0QID0001\0"))
        send(b"M", b"<joe@vectors.example>\0")
        send(b"R", b"<suzie@shopping.example.net>\0")
        send(b"T")
        for name, value in fields:
            send(b"L", name + b"\0" + value + b"\0")
        send(b"N")
        send(b"B", body)
        send(b"E")
        s.sendall(milter_packet(b"Q"))
    return added


def opendkim_sign(tmp, name, selector, keyfile, extra, algorithm="rsa-sha256",
                  keytable=False):
    """keytable: name the key in a KeyTable/SigningTable instead of KeyFile."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = os.path.join(tmp, "opendkim-%s.conf" % name)
    with open(conf, "w") as fh:
        if keytable:
            kt = os.path.join(tmp, "keytable-%s" % name)
            st = os.path.join(tmp, "signingtable-%s" % name)
            with open(kt, "w") as t:
                t.write("%s %s:%s:%s\n" % (selector, DOMAIN, selector, keyfile))
            with open(st, "w") as t:
                t.write("*@%s %s\n" % (DOMAIN, selector))
            fh.write("Mode s\nKeyTable file:%s\nSigningTable refile:%s\n" % (kt, st))
        else:
            fh.write("Mode s\nDomain %s\nSelector %s\nKeyFile %s\n"
                     % (DOMAIN, selector, keyfile))
        fh.write("Socket inet:%d@127.0.0.1\nBackground no\nSyslog no\n" % port)
        fh.write("RequireSafeKeys no\nSignatureAlgorithm %s\n" % algorithm)
        fh.write("PidFile %s\n" % os.path.join(tmp, "opendkim-%s.pid" % name))
        fh.write(extra)
    proc = subprocess.Popen(["opendkim", "-f", "-x", conf])
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("opendkim did not start")
                time.sleep(0.1)
        added = milter_sign(port, MESSAGE)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    sigs = [(n, v) for n, v in added if n.lower() == b"dkim-signature"]
    if len(sigs) != 1:
        raise RuntimeError("opendkim added %r" % added)
    # OpenDKIM folds with LF; on the wire every line ends with CRLF.
    write(name + ".eml", crlf(b"DKIM-Signature: " + sigs[0][1]) + b"\r\n" + MESSAGE)


# Keys by selector: generator(tmp) -> (key for dkimpy, key file for opendkim).
KEYS = {
    "rsa1024": lambda tmp: rsa_genkey(tmp, "rsa1024", 1024),
    "rsa2048": lambda tmp: rsa_genkey(tmp, "rsa2048", 2048),
    "rsa512": lambda tmp: rsa_small_key(tmp, "rsa512", 512),
    "ed25519": lambda tmp: ed25519_key(tmp, "ed25519"),
    # Keys of their own for vectors added later, so adding them (--only) left
    # the earlier vectors and records alone.
    "opendkim-rsa2048": lambda tmp: rsa_genkey(tmp, "opendkim-rsa2048", 2048),
    "opendkim-ed25519": lambda tmp: ed25519_key(tmp, "opendkim-ed25519"),
}


# Vectors the self-check expects python3-dkim to reject (see VECTORS).
BAD_SIGNATURE = {"opendkim_ed25519_simple_simple"}


def dkimpy(algo, canon, **kw):
    return lambda tmp, name, sel, key: dkimpy_sign(name, sel, key[0], algo, canon, **kw)


def opendkim(extra, **kw):
    return lambda tmp, name, sel, key: opendkim_sign(tmp, name, sel, key[1], extra, **kw)


# name -> (selector of the key, signer(tmp, name, selector, key)).
VECTORS = {
    "dkimpy_rsa2048_simple_simple": ("rsa2048", dkimpy(b"rsa-sha256", (b"simple", b"simple"))),
    "dkimpy_rsa2048_relaxed_relaxed": ("rsa2048",
                                       dkimpy(b"rsa-sha256", (b"relaxed", b"relaxed"))),
    "dkimpy_rsa1024_relaxed_simple": ("rsa1024",
                                      dkimpy(b"rsa-sha256", (b"relaxed", b"simple"))),
    "dkimpy_ed25519_simple_simple": ("ed25519",
                                     dkimpy(b"ed25519-sha256", (b"simple", b"simple"))),
    "dkimpy_ed25519_relaxed_relaxed": ("ed25519",
                                       dkimpy(b"ed25519-sha256", (b"relaxed", b"relaxed"))),
    "dkimpy_ed25519_relaxed_simple": ("ed25519",
                                      dkimpy(b"ed25519-sha256", (b"relaxed", b"simple"))),
    "dkimpy_rsa2048_length": ("rsa2048", dkimpy(b"rsa-sha256", (b"relaxed", b"relaxed"),
                                                length=True)),
    "dkimpy_rsa512": ("rsa512", dkimpy(b"rsa-sha256", (b"relaxed", b"relaxed"))),
    # Fixed t=/x=: the test verifies with `now` on both sides of x=.
    "dkimpy_rsa2048_ttl": ("rsa2048", lambda tmp, name, sel, key: dkimpy_sign_ttl(
        name, sel, key[0], 1700000000, 1700003600)),
    "opendkim_rsa2048_relaxed_relaxed": ("rsa2048", opendkim(
        "Canonicalization relaxed/relaxed\nOversignHeaders From\n")),
    "opendkim_rsa2048_simple_simple": ("rsa2048", opendkim("Canonicalization simple/simple\n")),
    "opendkim_rsa2048_ttl": ("rsa2048", opendkim(
        "Canonicalization relaxed/simple\nSignatureTTL 3600\n")),
    "opendkim_rsa2048_relaxed_simple": ("opendkim-rsa2048", opendkim(
        "Canonicalization relaxed/simple\n", keytable=True)),
    # OpenDKIM 2.11.0~beta2 signs an Ed25519 DKIM-Signature folded one way
    # and inserts it folded another: it hashes "...h=From:To:Subject:Date; b="
    # (b= on the h= line, as if the value were short) but emits
    # "...h=From:To:Subject:Date;\n\tb=<88 characters>".  With relaxed header
    # canonicalization that is harmless; with simple it makes the signature
    # bad (dkimpy agrees), so this vector is a real OpenDKIM signature that
    # must fail.  RSA is unaffected (the b= line break is in both).
    "opendkim_ed25519_simple_simple": ("opendkim-ed25519", opendkim(
        "Canonicalization simple/simple\n", algorithm="ed25519-sha256", keytable=True)),
    "opendkim_ed25519_relaxed_simple": ("opendkim-ed25519", opendkim(
        "Canonicalization relaxed/simple\n", algorithm="ed25519-sha256", keytable=True)),
    "opendkim_ed25519_relaxed_relaxed": ("opendkim-ed25519", opendkim(
        "Canonicalization relaxed/relaxed\nOversignHeaders From\n",
        algorithm="ed25519-sha256", keytable=True)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(VECTORS),
                    help="write only these vectors (and their keys)")
    ap.add_argument("--list", action="store_true", help="list the vector names and keys")
    args = ap.parse_args()
    if args.list:
        for name, (sel, _) in VECTORS.items():
            print("%-40s key %s" % (name, sel))
        return 0
    names = list(VECTORS) if args.only is None else [n for n in VECTORS if n in args.only]
    selectors = sorted({VECTORS[n][0] for n in names})
    stale = [n for n, (sel, _) in VECTORS.items() if sel in selectors and n not in names]
    if stale:
        print("a new key for %s would invalidate %s: name them too"
              % (", ".join(selectors), " ".join(stale)), file=sys.stderr)
        return 2

    os.makedirs(os.path.join(OUT, "dns"), exist_ok=True)
    for sel in selectors:
        path = os.path.join(OUT, "dns", "%s._domainkey.%s.txt" % (sel, DOMAIN))
        if os.path.exists(path):
            os.unlink(path)
    for name in names:
        if os.path.exists(os.path.join(OUT, name + ".eml")):
            os.unlink(os.path.join(OUT, name + ".eml"))
    if args.only is None:  # drop leftovers of vectors and keys no longer listed
        for f in os.listdir(os.path.join(OUT, "dns")):
            if f.endswith("." + DOMAIN + ".txt"):
                os.unlink(os.path.join(OUT, "dns", f))
        for f in os.listdir(OUT):
            if f.endswith(".eml") and not f.startswith("rfc8463"):
                os.unlink(os.path.join(OUT, f))
    tmp = tempfile.mkdtemp(prefix="relaygate-dkim-vectors.")
    try:
        keys = {sel: KEYS[sel](tmp) for sel in selectors}
        for name in names:
            sel, signer = VECTORS[name]
            signer(tmp, name, sel, keys[sel])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Self-check with python3-dkim against the records just written.
    def dnsfunc(name, timeout=5):
        path = os.path.join(OUT, "dns", name.decode().rstrip(".") + ".txt")
        return open(path, "rb").read().strip() if os.path.exists(path) else None
    for f in sorted(os.listdir(OUT)):
        if not f.endswith(".eml") or f.startswith("rfc8463"):
            continue
        msg = open(os.path.join(OUT, f), "rb").read()
        ok = dkim.verify(msg, dnsfunc=dnsfunc, minkey=512 if "rsa512" in f else 1024)
        # The ttl vectors pass or fail by the real clock (x=); BAD_SIGNATURE
        # must fail, everything else pass.
        expect = None if "ttl" in f else f[:-len(".eml")] not in BAD_SIGNATURE
        print("%-40s dkimpy verify: %s%s" % (f, "pass" if ok else "fail",
                                             "" if ok == expect or expect is None
                                             else "  UNEXPECTED"))
        if expect is not None and ok != expect:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
