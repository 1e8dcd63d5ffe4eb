#!/usr/bin/python3
"""EchoSpoofing (2024), replayed end to end against real software.

    tests/e2e/test_echospoofing.py /path/to/relaygate      (as root)
    KEEP=1 ... keeps the work directory

Setup: scripts/signer (Postfix + OpenDKIM + sink) signing for brand.example
and attacker.example, trusting 127.0.0.0/8 -- i.e. the signer trusts the
whole "provider range", exactly like the vendor relay in 2024.  relaygate
runs in front of it with a policy where provider "m365sim" is shared and
covers 127.0.0.0/8, and both tenants are identified through it by their
tenant-id header (X-MS-Exchange-CrossTenant-Id):
    brand     brand.example     11111111-1111-4111-8111-111111111111, sends from 127.0.0.10
    attacker  attacker.example  66666666-6666-4666-8666-666666666666, sends from 127.0.0.66
The provider signs every message with its tenant's own DKIM domain, as
Exchange Online does (d=<tenant>.onmicrosoft.com); brand's identity requires
that signature ("require": ["header", "dkim"]). The keys are published by a
real DNS server (ldns-testns) that relaygate queries.

Asserts:
 0. the attack is real in this setup: the attacker's spoofed mail sent
    DIRECTLY to the signer (bypassing relaygate) is signed d=brand.example
    and verifies; so is a message smuggled with bare LFs ("\\n.\\n");
 1. `relaygate check` accepts the scenario policy, and refuses (exit 1) a
    policy granting `networks` on the shared range, naming EchoSpoofing;
 2. brand's mail through relaygate is relayed, reaches the sink with a
    valid DKIM-Signature d=brand.example and relaygate's verdict header;
    relaygate's own verifier (`explain --message`, keys from the DNS server)
    passes both OpenDKIM's signature and the provider's one on that copy;
 3. every attacker variant through relaygate (full spoof, envelope only,
    header only, second From, display-name spoof, bare-LF smuggling, two
    tenant-id headers, the brand's tenant id twice, no tenant id) is refused
    with the expected SMTP code + enhanced code, the audit log records the
    expected reason with the same reply, and NOTHING reaches Postfix: the
    queue directories are empty, `postqueue -p` says the queue is empty,
    Postfix's log never saw the message (no cleanup message-id line), and
    the sink has no copy -- re-checked at the end, after later mail has
    drained through the signer;
 4. the attacker's message carrying the brand's tenant id but signed by the
    provider as the attacker's tenant (d=attacker.onmicrosoft.com), and the
    same without any signature, are refused 550 5.7.20 at the end of data:
    the signer got the data but never the final dot, so nothing is queued,
    signed or delivered;
 5. the attacker's own domain still works (relayed, signed d=attacker.example).
Exit 0 pass, 1 fail, 77 skip (not root / packages missing).
"""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_lib as E  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
import testns  # noqa: E402  pylint: disable=wrong-import-position

BRAND_ID = "11111111-1111-4111-8111-111111111111"
ATTACKER_ID = "66666666-6666-4666-8666-666666666666"
TENANT_HEADER = "X-MS-Exchange-CrossTenant-Id"
BRAND_IP = "127.0.0.10"
ATTACKER_IP = "127.0.0.66"
RCPT = "victim@example.net"

POLICY = {
    "version": 1,
    "description": "e2e EchoSpoofing scenario: two tenants of one shared provider",
    "providers": {
        "m365sim": {"shared": True, "networks": ["127.0.0.0/8"], "tenant_header": TENANT_HEADER,
                    "dkim_domain_suffix": ".onmicrosoft.com"}
    },
    "tenants": {
        "brand": {"domains": ["brand.example"],
                  "identities": [{"provider": "m365sim", "tenant_id": BRAND_ID,
                                  "require": ["header", "dkim"],
                                  "dkim_domains": ["brand.onmicrosoft.com"]}]},
        "attacker": {"domains": ["attacker.example"],
                     "identities": [{"provider": "m365sim", "tenant_id": ATTACKER_ID}]},
    },
}

# The 2024 mistake: brand identified by the shared range itself.
MISCONFIG = json.loads(json.dumps(POLICY))
MISCONFIG["tenants"]["brand"]["identities"] = [{"networks": ["127.0.0.0/24"]}]


# The provider's per-tenant DKIM keys (made in Scenario.start).
PROVIDER_KEYS = {}


def message(token, from_value, tenant_ids=(ATTACKER_ID,), extra=(), body=None,
            signed_by=None):
    """A message as the provider relays it: signed with the sending tenant's
    provider domain (None: unsigned)."""
    headers = ([("From", from_value)] if from_value else []) + list(extra)
    headers += [("To", f"<{RCPT}>"), ("Subject", f"e2e {token}"),
                ("Message-ID", f"<{token}@client.test>"),
                ("Date", "Thu, 1 Aug 2024 10:00:00 +0000")]
    headers += [(TENANT_HEADER, t) for t in tenant_ids]
    data = E.build_message(headers, body or f"Hello from the e2e test, {token}.\r\n")
    if signed_by and from_value:
        data = PROVIDER_KEYS[signed_by].sign(data)
    return data


def smuggling_payload(outer_token, inner_token):
    """An authorized attacker.example message whose body hides a second
    transaction for ceo@brand.example behind "\\n.\\n" (SMTP smuggling, 2023)."""
    outer = message(outer_token, "<news@attacker.example>")
    inner = (b"\n.\nMAIL FROM:<ceo@brand.example>\r\nRCPT TO:<" + RCPT.encode() + b">\r\nDATA\r\n"
             b"From: <ceo@brand.example>\r\nTo: <" + RCPT.encode() + b">\r\n"
             b"Subject: e2e " + inner_token.encode() + b"\r\n"
             b"Message-ID: <" + inner_token.encode() + b"@client.test>\r\n"
             b"\r\nPlease wire the money.\r\n")
    return outer + inner + b"\r\n.\r\n"


def show(res):
    for line in res["transcript"]:
        if "EHLO" in line or line.startswith("<- 250-"):
            continue
        E.log("      " + line)


class Scenario:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.signer = None
        self.gw = None
        self.refused_tokens = []
        self.partial_tokens = []  # refused at end of data: the signer saw data, no dot
        self.dns = None

    # ------------------------------------------------------------ helpers
    def expect_signed(self, token, domain, label, via_gateway=True):
        eml = self.signer.wait_sink(token)
        E.check(eml is not None, f"{label}: message reached the sink")
        v = self.signer.dkim(eml, domain)
        E.check(v["valid"] and v["d"] == domain,
                f"{label}: DKIM-Signature d={domain} verifies", v)
        if via_gateway:
            with open(eml, "rb") as fh:
                data = fh.read()
            E.check(b"X-Relaygate-Verdict: tenant=" in data,
                    f"{label}: carries relaygate's verdict header")
        return eml

    def expect_nothing_reached_postfix(self, label, tokens):
        empty, files, pq = self.signer.queue_empty()
        E.check(empty, f"{label}: Postfix queue empty (queue dirs + postqueue -p)",
                {"files": files, "postqueue": pq})
        for t in tokens:
            E.check(not self.signer.postfix_log_has(t),
                    f"{label}: Postfix never saw message {t}", self.signer.postfix_log_has(t))
            E.check(not self.signer.sink_find(t), f"{label}: sink has no copy of {t}")

    def expect_partial_discarded(self, label, token):
        """Refused at the commit point: the signer received the data, then
        lost the connection before the final dot, and must have discarded
        the partial message."""
        empty, files, pq = self.signer.queue_empty()
        E.check(empty, f"{label}: Postfix queue empty (queue dirs + postqueue -p)",
                {"files": files, "postqueue": pq})
        E.check(not self.signer.sink_find(token), f"{label}: sink has no copy of {token}")
        # cleanup may have logged the partial message's id; the queue
        # manager logs "<id>: from=<...>" only for committed messages.
        ids = [m.group(1) for line in self.signer.postfix_log_has(token)
               for m in [re.search(r"\b([0-9A-F]{6,}): message-id=", line)] if m]
        queued = [line for i in ids for line in self.signer.postfix_log_has(i + ": from=<")]
        E.check(not queued, f"{label}: Postfix never queued {token} (ids {ids})", queued)

    # ------------------------------------------------------------ steps
    def start(self):
        E.log("== start the signing relay (signs brand.example and attacker.example, "
              "trusts 127.0.0.0/8 like the 2024 vendor relay trusted M365)")
        self.signer = E.Signer(os.path.join(self.work, "signer"),
                               ["brand.example", "attacker.example"])
        self.policy = os.path.join(self.work, "policy.json")
        with open(self.policy, "w", encoding="utf-8") as fh:
            json.dump(POLICY, fh, indent=2)
        E.log("== start a DNS server (ldns-testns) publishing the provider's per-tenant "
              "DKIM keys (selector1._domainkey.<tenant>.onmicrosoft.com)")
        keys_dir = os.path.join(self.work, "keys")
        os.makedirs(keys_dir)
        for domain in ("brand.onmicrosoft.com", "attacker.onmicrosoft.com"):
            PROVIDER_KEYS[domain] = testns.DkimKey(keys_dir, "selector1", domain)
        zone = "".join(k.zone_entry() for k in PROVIDER_KEYS.values())
        # The signer's own keys too (opendkim-genkey zone files), so that
        # relaygate can verify what OpenDKIM signed (see accepted()).
        selector = self.signer.env["DKIM_SELECTOR"]
        for domain in ("brand.example", "attacker.example"):
            with open(os.path.join(self.signer.key_dir, domain, selector + ".txt"),
                      encoding="ascii") as fh:
                record = "".join(re.findall(r'"([^"]*)"', fh.read()))
            zone += testns.txt_entry(f"{selector}._domainkey.{domain}.", [record])
        self.dns = testns.TestNs(self.work, "dns", zone)

    def before_picture(self):
        E.log("== BEFORE: the attacker's spoof sent DIRECTLY to the signer (no relaygate)")
        token = E.new_token("direct-spoof")
        res = E.send_mail("127.0.0.1", self.signer.port, "ceo@brand.example", [RCPT],
                          message(token, '"Brand CEO" <ceo@brand.example>'), source=ATTACKER_IP)
        show(res)
        E.check(res["final"].code == 250, "signer accepted the attacker's spoof", res["final"])
        self.expect_signed(token, "brand.example", "direct spoof", via_gateway=False)
        E.log("  >>> THE ATTACK IS REAL: without relaygate, tenant 'attacker' got mail "
              "From ceo@brand.example signed with brand.example's DKIM key.")

        E.log("== BEFORE: bare-LF smuggling sent DIRECTLY to the signer")
        outer, inner = E.new_token("direct-outer"), E.new_token("direct-smuggled")
        c = E.SmtpClient("127.0.0.1", self.signer.port, source=ATTACKER_IP)
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<news@attacker.example>")
        c.cmd(f"RCPT TO:<{RCPT}>")
        c.cmd("DATA")
        c.send_raw(smuggling_payload(outer, inner))
        c.sock.settimeout(3)
        replies = []
        try:
            while True:
                r = c.read_reply()
                replies.append(r.text)
                if r.code == 0:
                    break
        except OSError:
            pass
        c.close()
        E.log(f"      replies after the data: {replies}")
        eml = self.signer.wait_sink(inner, timeout=20)
        if eml:
            v = self.signer.dkim(eml, "brand.example")
            E.check(v["valid"], "smuggled message got signed d=brand.example", v)
            E.log("  >>> SMUGGLING IS REAL too: Postfix (smtpd_forbid_bare_newline=no) ended "
                  "DATA at \\n.\\n and signed the hidden message as brand.example.")
        else:
            E.log("  (this Postfix did not accept the smuggled message directly)")
        empty, files, _pq = self.signer.queue_empty(timeout=30)
        E.check(empty, "signer queue drained after the BEFORE picture", files)

    def policy_checks(self):
        E.log("== relaygate check")
        rc, out, err = E.relaygate_check(self.binary, self.policy)
        E.check(rc == 0, "scenario policy is valid", err)
        bad = os.path.join(self.work, "misconfig.json")
        with open(bad, "w", encoding="utf-8") as fh:
            json.dump(MISCONFIG, fh, indent=2)
        rc, out, err = E.relaygate_check(self.binary, bad)
        E.log("      " + err.strip().replace("\n", "\n      "))
        E.check(rc == 1, "policy granting `networks` on the shared range is refused (exit 1)",
                (rc, out, err))
        E.check("EchoSpoofing" in err and "shared_network_overlap" in err,
                "the refusal names the EchoSpoofing risk (rule shared_network_overlap)", err)

    def start_gateway(self):
        E.log("== start relaygate in front of the signer")
        self.gw = E.Gateway(self.binary, self.work, self.policy, self.signer.port,
                            dns_servers=[self.dns.server])

    def accepted(self, label, source, mail_from, from_value, tenant_ids, domain, signed_by):
        E.log(f"== {label}")
        before = len(self.gw.audit_lines())
        token = E.new_token(label.split()[0])
        res = E.send_mail("127.0.0.1", self.gw.smtp_port, mail_from, [RCPT],
                          message(token, from_value, tenant_ids, signed_by=signed_by),
                          source=source)
        show(res)
        E.check(res["final"].code == 250, f"{label}: 250 after the final dot", res["final"])
        eml = self.expect_signed(token, domain, label)
        # relaygate's own DKIM verifier, fetching keys from the DNS server,
        # on what reached the sink: OpenDKIM's signature and the provider's
        # (relaygate forwarded the message as received, plus one header).
        out = E.relaygate_explain_dkim(self.binary, self.policy, source, mail_from, eml,
                                       self.dns.server)
        got = sorted((s["status"], s["domain"]) for s in out)
        E.check(got == sorted([("pass", domain), ("pass", signed_by)]),
                f"{label}: relaygate verifies OpenDKIM's d={domain} and the provider's "
                f"d={signed_by} signatures", out)
        # Positive control for the "Postfix never saw message X" checks below.
        E.check(any("message-id=<" + token in line for line in self.signer.postfix_log_has(token)),
                f"{label}: Postfix's log shows its message-id (the log check sees messages)")
        lines = E.wait_for(lambda: self.gw.audit_lines()[before:], 5)
        last = lines[-1] if lines else {}
        E.check(last.get("reason") == "accepted" and last.get("queue_id"),
                f"{label}: audit line reason=accepted with the signer's queue id", last)

    def refused(self, label, code, enhanced, reason, mail_from="ceo@brand.example",
                from_value="<ceo@brand.example>", tenant_ids=(ATTACKER_ID,), extra=(),
                smuggle=False, signed_by="attacker.onmicrosoft.com", at_end_of_data=False):
        E.log(f"== ATTACK via relaygate: {label}")
        before = len(self.gw.audit_lines())
        token = E.new_token("attack")
        tokens = [token]
        if smuggle:
            inner = E.new_token("smuggled")
            tokens.append(inner)
            res = E.send_mail("127.0.0.1", self.gw.smtp_port, mail_from, [RCPT], None,
                              source=ATTACKER_IP, raw_data=smuggling_payload(token, inner))
        else:
            res = E.send_mail("127.0.0.1", self.gw.smtp_port, mail_from, [RCPT],
                              message(token, from_value, tenant_ids, extra, signed_by=signed_by),
                              source=ATTACKER_IP)
        show(res)
        final = res["final"]
        E.check(final.code == code and final.enhanced == enhanced,
                f"{label}: refused {code} {enhanced}", final)
        lines = E.wait_for(lambda: self.gw.audit_lines()[before:], 5)
        tx = lines[-1] if lines else {}
        E.check(tx.get("reason") == reason and tx.get("reply") == final.lines[-1]
                and tx.get("client") == ATTACKER_IP,
                f"{label}: audit line reason={reason}, same reply", tx)
        if at_end_of_data:
            E.check(tx.get("stage") == "end_of_data", f"{label}: decided at the commit point", tx)
            self.expect_partial_discarded(label, token)
            self.partial_tokens.append(token)
            return
        self.expect_nothing_reached_postfix(label, tokens)
        self.refused_tokens += tokens

    def run(self):
        t0 = time.monotonic()
        self.start()
        self.before_picture()
        self.policy_checks()
        self.start_gateway()

        self.accepted("brand sends as brand.example", BRAND_IP, "news@brand.example",
                      '"Brand News" <news@brand.example>', (BRAND_ID,), "brand.example",
                      signed_by="brand.onmicrosoft.com")

        self.refused("full spoof (envelope + From brand.example)", 550, "5.7.1",
                     "envelope_domain_unauthorized")
        self.refused("envelope spoof only", 550, "5.7.1", "envelope_domain_unauthorized",
                     from_value="<news@attacker.example>")
        self.refused("header From spoof only", 550, "5.7.1", "from_domain_unauthorized",
                     mail_from="news@attacker.example")
        self.refused("second From header", 550, "5.6.0", "from_multiple_fields",
                     mail_from="news@attacker.example", from_value="<news@attacker.example>",
                     extra=[("From", "<ceo@brand.example>")])
        self.refused("display-name spoof", 550, "5.7.1", "display_name_address",
                     mail_from="x@attacker.example",
                     from_value='"ceo@brand.example" <x@attacker.example>')
        self.refused("bare-LF smuggled second message", 554, "5.6.0", "data_bare_line_ending",
                     mail_from="news@attacker.example", smuggle=True)
        self.refused("tenant header: attacker's id plus brand's id", 550, "5.7.1",
                     "provider_attestation_failed", tenant_ids=(ATTACKER_ID, BRAND_ID))
        self.refused("tenant header: brand's id twice", 550, "5.7.1",
                     "provider_attestation_failed", tenant_ids=(BRAND_ID, BRAND_ID))
        self.refused("no tenant header", 550, "5.7.1", "provider_attestation_failed",
                     tenant_ids=())
        self.refused("brand's tenant id copied into the header, but the provider signed "
                     "it as the attacker's tenant (d=attacker.onmicrosoft.com)", 550, "5.7.20",
                     "provider_dkim_unverified", tenant_ids=(BRAND_ID,), at_end_of_data=True)
        self.refused("brand's tenant id copied into the header, no DKIM signature", 550,
                     "5.7.20", "provider_dkim_unverified", tenant_ids=(BRAND_ID,),
                     signed_by=None, at_end_of_data=True)

        self.accepted("attacker sends as its own attacker.example", ATTACKER_IP,
                      "news@attacker.example", "<news@attacker.example>", (ATTACKER_ID,),
                      "attacker.example", signed_by="attacker.onmicrosoft.com")

        E.log("== final sweep: later mail has drained through the signer; "
              "still no trace of any refused message")
        self.expect_nothing_reached_postfix("final sweep", self.refused_tokens)
        for t in self.partial_tokens:
            self.expect_partial_discarded("final sweep", t)
        E.log(f"PASS: EchoSpoofing blocked by relaygate ({len(self.refused_tokens)} refused "
              f"messages never reached Postfix); brand and attacker's own mail signed and "
              f"valid ({time.monotonic() - t0:.1f}s)")

    def close(self):
        if self.gw:
            self.gw.stop()
        if self.dns:
            self.dns.stop()
        if self.signer:
            self.signer.stop()


if __name__ == "__main__":
    sys.exit(E.main(sys.argv, __doc__, "relaygate-e2e-echospoofing.", Scenario,
                    logs=("relaygate.log", "signer/postfix.log", "signer/sink.log")))
