#!/usr/bin/python3
"""The upstream connection pool against a real Postfix + OpenDKIM signer.

    tests/e2e/test_upstream_pool.py /path/to/relaygate      (as root)
    KEEP=1 ... keeps the work directory

Setup: scripts/signer signing for brand.example and trusting 127.0.0.0/8
(mynetworks, smtpd_authorized_xclient_hosts, OpenDKIM InternalHosts), so
Postfix keeps offering XCLIENT after an XCLIENT ADDR=127.0.0.x; relaygate
with one I/O thread (one pool) and XCLIENT on. Two clients, 127.0.0.2
naming itself a.example and 127.0.0.3 naming itself b.example, send one
message per session, alternating: A B A B A.

Asserts:
 - every message is accepted, DKIM-signed by the signer and verifies;
 - the Received header Postfix added names the message's own client (its
   HELO name and [address]): Postfix took every re-announcement, and no
   message carries the other client's attributes;
 - relaygate took the pooled connection over for sessions 2-5
   (relaygate_upstream_pool_checkouts_total{result="reused"} = 4) and opened
   one connection to Postfix in all;
 - Postfix offers CHUNKING, so each message went as one BDAT LAST (RFC
   3030): Postfix's disconnect line counts bdat=5 and no DATA, and a body
   line that starts with a dot arrives as the client meant it (BDAT is not
   dot-stuffed).
Exit 0 pass, 1 fail, 77 skip (not root / packages missing).
"""

import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_lib as E  # noqa: E402  pylint: disable=wrong-import-position

CLIENTS = {"A": ("127.0.0.2", "a.example"), "B": ("127.0.0.3", "b.example")}
SEQUENCE = "ABABA"
DOT_LINE = ".a line that starts with a dot"


def metric_value(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Scenario:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.signer = self.gw = None

    def run(self):
        E.log("== setup: signer (Postfix + OpenDKIM + sink), relaygate with one I/O thread")
        self.signer = E.Signer(os.path.join(self.work, "signer"), ["brand.example"],
                               trust=["127.0.0.0/8"])
        pol = os.path.join(self.work, "policy.json")
        with open(pol, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "tenants": {"brand": {
                "domains": ["brand.example"],
                "identities": [{"networks": ["127.0.0.0/8"]}]}}}, fh)
        d = os.path.join(self.work, "gateway")
        os.makedirs(d)
        self.gw = E.Gateway(self.binary, d, pol, self.signer.port, extra_config={"threads": 1})

        E.log(f"== sessions {' '.join(SEQUENCE)}, one message each")
        sent = []
        for n, who in enumerate(SEQUENCE):
            addr, helo = CLIENTS[who]
            token = E.new_token(f"pool{n}{who}")
            msg = E.build_message([("From", "News <news@brand.example>"),
                                   ("To", "rcpt@example.org"), ("Subject", token),
                                   ("Message-ID", f"<{token}@brand.example>")],
                                  body=f"Hello.\r\n{DOT_LINE}\r\n")
            r = E.send_mail(self.gw.host, self.gw.smtp_port, "news@brand.example",
                            ["rcpt@example.org"], msg, source=addr, helo=helo)["final"]
            E.check(r.code == 250, f"session {n + 1} ({who}) accepted", r.lines)
            # The session ends (client closed); its relay connection goes
            # back to the pool before the next one starts.
            E.wait_for(lambda: metric_value(self.gw.metrics(),
                                            "relaygate_upstream_pool_idle_connections") == 1, 10)
            sent.append((token, addr, helo))

        E.log("== checks")
        for token, addr, helo in sent:
            eml = self.signer.wait_sink(token)
            E.check(eml is not None, f"{token} reached the sink")
            with open(eml, "rb") as fh:
                data = fh.read().decode("utf-8", "replace")
            # The Received header the signer's Postfix added (the first one).
            received = re.search(r"^Received: (.*?)\r\n(?![ \t])", data, re.M | re.S)
            E.check(received is not None, f"{token}: Postfix added a Received header")
            text = " ".join(received.group(1).split())
            E.check(text.startswith(f"from {helo} (") and f"[{addr}]" in text,
                    f"{token}: Received names its own client {helo} [{addr}]", text)
            E.check(self.signer.dkim(eml, "brand.example").get("valid"),
                    f"{token}: DKIM-signed d=brand.example and valid")
            E.check(f"\n{DOT_LINE}\r\n" in data or f"\n{DOT_LINE}\n" in data,
                    f"{token}: the line that starts with a dot arrived as sent")
        m = self.gw.metrics()
        E.check(metric_value(m, "relaygate_upstream_pool_checkouts_total", result="reused")
                == len(SEQUENCE) - 1, "relaygate reused the pooled connection for sessions 2-5",
                metric_value(m, "relaygate_upstream_pool_checkouts_total", result="reused"))
        E.check(metric_value(m, "relaygate_upstream_errors_total", kind="refused") == 0,
                "Postfix refused no XCLIENT")
        E.check(metric_value(m, "relaygate_upstream_chunked_total") == len(SEQUENCE),
                "relaygate counted five messages sent as BDAT LAST",
                metric_value(m, "relaygate_upstream_chunked_total"))
        E.check(metric_value(m, "relaygate_upstream_connect_duration_seconds_count") == 1,
                "relaygate opened one connection to Postfix for the five sessions")
        # Postfix logs its per-command counts when the connection ends.
        self.gw.stop()
        self.gw = None
        E.wait_for(lambda: any("bdat=" in l for l in self.signer.postfix_log_has("disconnect from")),
                   10)
        ends = [l for l in self.signer.postfix_log_has("disconnect from") if " mail=5 " in l]
        E.check(len(ends) == 1 and " bdat=5 " in ends[0] and " data=" not in ends[0],
                "Postfix got the five messages as BDAT LAST, no DATA", ends)

    def close(self):
        if self.gw:
            self.gw.stop()
        if self.signer:
            self.signer.stop()


if __name__ == "__main__":
    sys.exit(E.main(sys.argv, __doc__, "relaygate-e2e-pool.", Scenario,
                    logs=("gateway/relaygate.log", "signer/postfix.log")))
