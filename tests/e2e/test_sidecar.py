#!/usr/bin/python3
"""The Kubernetes sidecar shape, locally: the signer is reachable ONLY
through relaygate.

    tests/e2e/test_sidecar.py /path/to/relaygate          (as root)
    RELAYGATE_SIDECAR_MODE=trust ...   force the fallback described below
    KEEP=1 ...                         keep the work directory

Mode "netns" (used whenever `ip netns add` works -- it does as root on a
normal Debian 12 host or VM; it may not inside an unprivileged container):
  * a network namespace stands in for the pod.  Inside it: loopback, and
    one end of a veth pair (198.18.N.2/30, the "pod IP"); the other end
    (198.18.N.1) stays in the host namespace and plays the outside world;
  * the signer (Postfix + OpenDKIM + sink, scripts/signer) runs inside the
    namespace and listens on the namespace's 127.0.0.1 only; relaygate runs
    inside too, listening on the pod IP, relaying to 127.0.0.1:SIGNER_PORT
    with XCLIENT, so the signer sees (and trusts, like a sidecar signer
    must) the real client address: --trust 127.0.0.1/32 --trust 198.18.N.0/30;
  * the test's SMTP client runs in the host namespace, like a remote MTA.
  Asserts: the signer's port is bound to 127.0.0.1 only (ss inside the
  namespace) and refuses connections from outside (pod IP, host loopback);
  brand's mail through relaygate is signed d=brand.example and verifies, and
  Postfix recorded the real client (XCLIENT); the attacker's header From
  spoof and full spoof are refused (550 5.7.1, audit reason) and nothing
  reaches Postfix's queue or the sink; after stopping, no process is left in
  the namespace.

Mode "trust" (fallback when namespaces are not permitted; it says so in the
output): everything in the host namespace; the signer trusts only
127.0.0.1/32 (mynetworks, XCLIENT and OpenDKIM InternalHosts) and relaygate
relays WITHOUT XCLIENT, so its own source address 127.0.0.1 is what Postfix
authorizes; the clients use 127.0.0.10 and 127.0.0.66.  Asserts the same
brand / attacker outcomes, plus: a direct send to the signer from 127.0.0.2
is refused by Postfix (relay access denied) and not queued.  This is
weaker than a namespace -- any local process on 127.0.0.1 could still reach
the signer -- which is exactly why the sidecar puts the signer in the pod's
own network namespace.

Exit 0 pass, 1 fail, 77 skip (not root / packages missing).
"""

import json
import os
import random
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_lib as E  # noqa: E402  pylint: disable=wrong-import-position
import test_echospoofing as ES  # noqa: E402  pylint: disable=wrong-import-position


def run(args, check=True):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60, check=False)
    if check and p.returncode != 0:
        raise E.TestFailure(f"{' '.join(args)} failed: {p.stdout.strip()}")
    return p


class Namespace:
    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.name = f"relaygate-sc-{tag}"
        self.host_if = f"rgsc{tag}h"
        self.ns_if = f"rgsc{tag}n"
        used = run(["ip", "-4", "-o", "addr"], check=False).stdout
        routes = run(["ip", "-4", "route"], check=False).stdout
        for _ in range(50):
            n = random.randint(1, 254)
            if f"198.18.{n}." not in used and f"198.18.{n}." not in routes:
                break
        self.net = f"198.18.{n}.0/30"
        self.host_ip = f"198.18.{n}.1"
        self.pod_ip = f"198.18.{n}.2"
        self.created = False
        self.link = False

    def create(self):
        p = run(["ip", "netns", "add", self.name], check=False)
        if p.returncode != 0:
            return p.stdout.strip() or f"exit {p.returncode}"
        self.created = True
        try:
            self.exec(["ip", "link", "set", "lo", "up"])
            run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
                 "netns", self.name])
            self.link = True
            run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
            run(["ip", "link", "set", self.host_if, "up"])
            self.exec(["ip", "addr", "add", f"{self.pod_ip}/30", "dev", self.ns_if])
            self.exec(["ip", "link", "set", self.ns_if, "up"])
        except E.TestFailure as e:
            self.delete()
            return str(e)
        return None

    @property
    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def exec(self, args, check=True):
        return run(self.prefix + args, check=check)

    def pids(self):
        return run(["ip", "netns", "pids", self.name], check=False).stdout.split()

    def delete(self):
        if self.link:
            run(["ip", "link", "del", self.host_if], check=False)
            self.link = False
        if self.created:
            run(["ip", "netns", "del", self.name], check=False)
            self.created = False


def connect_refused(host, port, source=None):
    s = socket.socket()
    s.settimeout(3)
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, port))
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"unreachable ({e})"
    try:
        banner = s.recv(200).decode("ascii", "replace").strip()
    except OSError:
        banner = ""
    s.close()
    return f"connected: {banner!r}"


class Sidecar:
    def __init__(self, binary, work, mode):
        self.binary = binary
        self.work = work
        self.mode = mode
        self.ns = None
        self.signer = None
        self.gw = None

    def setup(self):
        prefix = ()
        if self.mode == "netns":
            try:
                self.ns = Namespace()
                err = self.ns.create()
            except OSError as e:  # no `ip` binary
                err = str(e)
            if err:
                E.log(f"  network namespaces unavailable ({err}); falling back to mode 'trust'")
                self.ns = None
                self.mode = "trust"
        if self.mode == "netns":
            E.log(f"== MODE netns: pod namespace {self.ns.name}, pod IP {self.ns.pod_ip}, "
                  f"outside client {self.ns.host_ip}")
            prefix = self.ns.prefix
            trust = ["127.0.0.1/32", self.ns.net]
            networks = ["127.0.0.0/8", self.ns.net]
            self.client_host, self.brand_src, self.attacker_src = self.ns.pod_ip, None, None
            self.client_ip = self.ns.host_ip
        else:
            E.log("== MODE trust: signer trusts only 127.0.0.1/32, relaygate relays without "
                  "XCLIENT (no namespace isolation; see the docstring)")
            trust = ["127.0.0.1/32"]
            networks = ["127.0.0.0/8"]
            self.client_host, self.brand_src, self.attacker_src = (
                "127.0.0.1", ES.BRAND_IP, ES.ATTACKER_IP)
        self.prefix = prefix
        self.signer = E.Signer(os.path.join(self.work, "signer"),
                               ["brand.example", "attacker.example"], trust=trust, prefix=prefix)
        policy = json.loads(json.dumps(ES.POLICY))
        policy["providers"]["m365sim"]["networks"] = networks
        # This test is about network isolation; DKIM corroboration (which
        # needs the DNS server) is covered by test_echospoofing.py.
        for identity in policy["tenants"]["brand"]["identities"]:
            identity.pop("require", None)
            identity.pop("dkim_domains", None)
        self.policy = os.path.join(self.work, "policy.json")
        with open(self.policy, "w", encoding="utf-8") as fh:
            json.dump(policy, fh, indent=2)
        if self.mode == "netns":
            self.gw = E.Gateway(self.binary, self.work, self.policy, self.signer.port,
                                listen=self.ns.pod_ip, admin_address="127.0.0.1", prefix=prefix)
        else:
            self.gw = E.Gateway(self.binary, self.work, self.policy, self.signer.port,
                                xclient=False)

    def isolation(self):
        E.log("== the signer is reachable only through relaygate")
        port = self.signer.port
        if self.mode == "netns":
            ss = self.ns.exec(["ss", "-ltnH"]).stdout
            binds = [line.split()[3] for line in ss.splitlines()
                     if line.split()[3].endswith(f":{port}")]
            E.check(binds == [f"127.0.0.1:{port}"],
                    f"signer port {port} is bound to the pod's 127.0.0.1 only", ss)
            r = connect_refused(self.ns.pod_ip, port)
            E.check(r == "refused", f"outside -> pod IP {self.ns.pod_ip}:{port} (signer port) "
                    "is refused", r)
            r = connect_refused("127.0.0.1", port)
            E.check(r == "refused" or (self.signer.instance_id or "?") not in r,
                    f"outside -> host 127.0.0.1:{port} does not reach this signer", r)
        else:
            token = E.new_token("direct-from-127.0.0.2")
            res = E.send_mail("127.0.0.1", port, "ceo@brand.example", [ES.RCPT],
                              ES.message(token, "<ceo@brand.example>"), source="127.0.0.2")
            for line in res["transcript"]:
                E.log("      " + line)
            rc = res.get("rcpt", [E.Reply(0, [])])[0]
            E.check(rc.code == 554 and "Relay access denied" in rc.text,
                    "direct send to the signer from 127.0.0.2 is refused by Postfix "
                    "(554 Relay access denied at RCPT)", rc)
            empty, files, pq = self.signer.queue_empty()
            E.check(empty and not self.signer.sink_find(token),
                    "... and nothing was queued or delivered", (files, pq))

    def traffic(self):
        E.log("== brand through relaygate")
        token = E.new_token("brand")
        res = E.send_mail(self.client_host, self.gw.smtp_port, "news@brand.example", [ES.RCPT],
                          ES.message(token, "<news@brand.example>", (ES.BRAND_ID,)),
                          source=self.brand_src)
        E.check(res["final"].code == 250, "brand: 250 after the final dot", res["final"])
        eml = self.signer.wait_sink(token)
        E.check(eml is not None, "brand: reached the sink")
        v = self.signer.dkim(eml, "brand.example")
        E.check(v["valid"], "brand: DKIM-Signature d=brand.example verifies", v)
        if self.mode == "netns":
            with open(eml, "rb") as fh:
                data = fh.read()
            E.check(f"[{self.ns.host_ip}]".encode() in data,
                    f"brand: the signer recorded the real client {self.ns.host_ip} (XCLIENT)")

        for label, mail_from, expected in (
                ("header From spoof", "news@attacker.example", "from_domain_unauthorized"),
                ("full spoof", "ceo@brand.example", "envelope_domain_unauthorized")):
            E.log(f"== ATTACK through relaygate: {label}")
            before = len(self.gw.audit_lines())
            token = E.new_token("attack")
            res = E.send_mail(self.client_host, self.gw.smtp_port, mail_from, [ES.RCPT],
                              ES.message(token, "<ceo@brand.example>", (ES.ATTACKER_ID,)),
                              source=self.attacker_src)
            final = res["final"]
            E.check(final.code == 550 and final.enhanced == "5.7.1",
                    f"{label}: refused 550 5.7.1", final)
            lines = E.wait_for(lambda: self.gw.audit_lines()[before:], 5)
            reason = lines[-1].get("reason") if lines else None
            E.check(reason == expected, f"{label}: audit reason {expected}", lines)
            empty, files, pq = self.signer.queue_empty()
            E.check(empty, f"{label}: Postfix queue empty", (files, pq))
            E.check(not self.signer.postfix_log_has(token) and not self.signer.sink_find(token),
                    f"{label}: neither Postfix nor the sink saw it")

    def close(self):
        if self.gw:
            self.gw.stop()
        if self.signer:
            self.signer.stop()
        ok = True
        if self.ns:
            left = E.wait_for(lambda: not self.ns.pids(), 10) or self.ns.pids()
            if left is not True and left:
                E.log(f"FAIL: processes left in namespace {self.ns.name}: {left}")
                ok = False
            else:
                E.log(f"  ok: no process left in namespace {self.ns.name}")
            self.ns.delete()
        return ok


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(argv[1])
    E.require_environment()
    mode = os.environ.get("RELAYGATE_SIDECAR_MODE", "netns")
    if mode not in ("netns", "trust"):
        print("RELAYGATE_SIDECAR_MODE must be netns or trust")
        return 2
    work = E.make_workdir("relaygate-e2e-sidecar.")
    sc = Sidecar(binary, work, mode)

    def run():
        sc.setup()
        sc.isolation()
        sc.traffic()
    ok = E.run_scenario(work, sc, run) == 0
    if ok:
        E.log(f"PASS: sidecar shape (mode {sc.mode}): brand signed, attacker refused, "
              "signer unreachable except through relaygate")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
