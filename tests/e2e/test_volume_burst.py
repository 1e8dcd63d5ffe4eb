#!/usr/bin/python3
"""The EchoSpoofing volume pattern, replayed end to end against real software.

    tests/e2e/test_volume_burst.py /path/to/relaygate      (as root)
    KEEP=1 ... keeps the work directory

In 2024 the abused relay signed about 3 million spoofed mails a day, 14
million at the peak, and nobody noticed. Here the sender is a PROVEN tenant
(brand, its dedicated network 127.0.0.1/32): its account is compromised, so
identity and domain checks pass and only volume control can notice.

Setup: scripts/signer (Postfix + OpenDKIM + sink) signing for brand.example
and legit.example; a real redis-server; TWO relaygate replicas sharing it
(rate_limit.store = redis), with a short volume bucket (3 s, one seasonal
slot) so that a history fits in a test.

 1. history: brand sends 2 messages per bucket for 3 buckets (its baseline);
 2. burst: brand sends 60 messages as fast as 4 connections allow, spread
    over both replicas, while legit (127.0.0.2) sends 10;
Asserts:
 - brand's messages limit (30 per 1h, shared by both replicas) refuses the
   excess with 450 4.7.1 naming the limit; accepted = 30 (+ what the
   limit refilled during the run, count/per x elapsed: the documented
   tolerance); never a 5xx;
 - the spike signal fires for brand: an audit event type "anomaly" kind
   "volume_spike" and relaygate_anomalies_total{kind="volume_spike"}; and
   the shipped alert RelaygateVolumeSpike fires on those scraped values
   (promtool test rules with the real numbers);
 - legit is unaffected: all 10 accepted, signed d=legit.example, no spike;
 - nothing refused reached Postfix: the sink holds exactly the accepted
   messages (by token), each DKIM-signed by the signer.
Exit 0 pass, 1 fail, 77 skip (not root / packages missing).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_lib as E  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402  pylint: disable=wrong-import-position

BRAND_IP, LEGIT_IP = "127.0.0.1", "127.0.0.2"
LIMIT, PER = 30, 3600
BUCKET = 3
RULES = os.path.join(E.ROOT, "deploy", "prometheus", "relaygate.rules.yml")


def policy():
    return {
        "version": 1,
        "tenants": {
            "brand": {"domains": ["brand.example"],
                      "identities": [{"networks": [f"{BRAND_IP}/32"]}],
                      "limits": {"messages": [{"count": LIMIT, "per": "1h"}]}},
            "legit": {"domains": ["legit.example"],
                      "identities": [{"networks": [f"{LEGIT_IP}/32"]}]},
        },
    }


def metric_value(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Scenario:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.signer = self.redis = None
        self.gws = []

    def send(self, gw, source, sender, token):
        msg = E.build_message([("From", f"Sender <{sender}>"), ("To", "rcpt@example.org"),
                               ("Subject", token), ("Message-ID", f"<{token}@test>")])
        return E.send_mail(gw.host, gw.smtp_port, sender, ["rcpt@example.org"], msg,
                           source=source)["final"]

    def run(self):
        t0 = time.monotonic()
        E.log("== setup: signer (Postfix + OpenDKIM + sink), redis-server, two relaygate replicas")
        self.signer = E.Signer(os.path.join(self.work, "signer"),
                               ["brand.example", "legit.example"], trust=["127.0.0.0/8"])
        self.redis = harness.RedisServer(self.work)
        pol = os.path.join(self.work, "policy.json")
        with open(pol, "w", encoding="utf-8") as fh:
            json.dump(policy(), fh)
        extra = {"rate_limit": {"store": "redis", "address": self.redis.address, "replicas": 2},
                 "anomalies": {"bucket_seconds": BUCKET, "seasonal_slots": 1,
                               "alpha_percent": 50, "spike_multiple": 5,
                               "spike_min_messages": 12}}
        for name in ("replica-a", "replica-b"):
            d = os.path.join(self.work, name)
            os.makedirs(d)
            self.gws.append(E.Gateway(self.binary, d, pol, self.signer.port, extra_config=extra))
        started = time.monotonic()

        E.log("== 1. history: brand sends 2 messages per bucket for 3 buckets")
        accepted, refused, other = [], [], []
        # Start at a bucket boundary so that every history bucket holds 2.
        time.sleep(BUCKET - time.time() % BUCKET + 0.2)
        for bucket in range(3):
            for i in range(2):
                token = E.new_token(f"history{bucket}{i}")
                r = self.send(self.gws[i % 2], BRAND_IP, "news@brand.example", token)
                E.check(r.code == 250, f"history message {bucket}.{i} accepted", r.lines)
                accepted.append(token)
            time.sleep(BUCKET - time.time() % BUCKET + 0.2)

        E.log("== 2. burst: brand sends 60 messages on 4 connections; legit sends 10 meanwhile")
        lock = threading.Lock()

        def brand_worker(k):
            for i in range(15):
                token = E.new_token(f"burst{k}-{i}")
                r = self.send(self.gws[(k + i) % 2], BRAND_IP, "news@brand.example", token)
                with lock:
                    (accepted if r.code == 250 else refused if r.code == 450 else other).append(
                        (token, r) if r.code != 250 else token)

        legit = []

        def legit_worker():
            for i in range(10):
                token = E.new_token(f"legit{i}")
                r = self.send(self.gws[i % 2], LEGIT_IP, "info@legit.example", token)
                legit.append((token, r.code))

        threads = [threading.Thread(target=brand_worker, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=legit_worker))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

        E.log("== checks")
        E.check(not other, "every refusal is a 450, never a 5xx", [(t, r.lines) for t, r in other])
        tolerance = int(elapsed * LIMIT / PER) + 1
        E.check(LIMIT <= len(accepted) <= LIMIT + tolerance,
                f"brand: {len(accepted)} accepted in all, within the shared limit {LIMIT} "
                f"(+{tolerance} refilled in {elapsed:.0f}s)", len(accepted))
        E.check(len(refused) == 66 - len(accepted), f"brand: the other {len(refused)} got 450")
        text = refused[0][1].lines[-1]
        E.check("4.7.1" in text and f"messages {LIMIT} per 1h (tenant brand)" in text,
                "the 450 names the limit", text)
        E.check(all(code == 250 for _, code in legit), "legit: all 10 accepted", legit)

        spikes = [e for gw in self.gws for e in gw.audit_events("anomaly")
                  if e["kind"] == "volume_spike"]
        E.check(spikes and all(e["tenant"] == "brand" for e in spikes),
                f"the spike signal fired for brand ({len(spikes)} audit events), never for legit",
                spikes)
        scraped = [gw.metrics() for gw in self.gws]
        spike_total = sum(metric_value(m, "relaygate_anomalies_total", kind="volume_spike")
                          for m in scraped)
        E.check(spike_total == len(spikes), f"relaygate_anomalies_total{{kind=volume_spike}} = "
                f"{spike_total:.0f} across the replicas, one per audit event")
        limited = sum(metric_value(m, "relaygate_rate_limited_total", limit="messages",
                                   action="refused") for m in scraped)
        E.check(limited == len(refused), f"relaygate_rate_limited_total = {limited:.0f}")
        self.alert_fires(spike_total)

        E.log("== nothing refused reached Postfix; every accepted message is signed")
        for token in accepted[-3:] + [t for t, _ in legit[-2:]]:
            E.check(self.signer.wait_sink(token), f"{token} reached the sink")
        E.wait_for(lambda: len(self.signer.sink_messages()) >= len(accepted) + 10, 60)
        sink = self.signer.sink_messages()
        E.check(len(sink) == len(accepted) + 10,
                f"the sink holds exactly the {len(accepted) + 10} accepted messages", len(sink))
        for token, _ in refused[:3]:  # spot checks by name; the count above covers the rest
            E.check(not self.signer.sink_find(token), f"refused {token} never reached the sink")
        for token in accepted[-2:]:
            eml = self.signer.sink_find(token)[0]
            E.check(self.signer.dkim(eml, "brand.example").get("valid"),
                    f"{token} signed d=brand.example and valid")
        E.log(f"PASS: burst refused above the shared limit, spike signalled, legit unaffected "
              f"({time.monotonic() - t0:.1f}s)")

    def alert_fires(self, spike_total):
        """The shipped alert RelaygateVolumeSpike's expression, evaluated by
        promtool over the numbers the replicas exported."""
        if not shutil.which("promtool"):
            raise E.TestFailure("promtool missing (run scripts/setup)")
        with open(RULES, encoding="utf-8") as fh:
            m = re.search(r"- alert: RelaygateVolumeSpike\n\s+expr: >-\n(.*?)\n\s+labels:",
                          fh.read(), re.S)
        E.check(m is not None, "RelaygateVolumeSpike is in the shipped rules")
        expr = " ".join(line.strip() for line in m.group(1).splitlines())
        series = 'relaygate_anomalies_total{kind="volume_spike",job="relaygate"}'
        test = {
            "rule_files": [],
            "tests": [{
                "interval": "1m",
                "input_series": [{"series": series,
                                  "values": f"0 0 {spike_total:.0f} {spike_total:.0f}"}],
                "promql_expr_test": [{"expr": f"count({expr})", "eval_time": "3m",
                                      "exp_samples": [{"labels": "{}", "value": 1}]}],
            }],
        }
        path = os.path.join(self.work, "alert-test.yml")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(test, fh)  # JSON is YAML
        p = subprocess.run(["promtool", "test", "rules", path], capture_output=True, text=True,
                           timeout=60, check=False)
        E.check(p.returncode == 0, "promtool: RelaygateVolumeSpike fires on the exported values",
                p.stdout + p.stderr)

    def close(self):
        for gw in self.gws:
            gw.stop()
        if self.redis:
            self.redis.stop()
        if self.signer:
            self.signer.stop()


if __name__ == "__main__":
    sys.exit(E.main(sys.argv, __doc__, "relaygate-e2e-burst.", Scenario,
                    logs=("replica-a/relaygate.log", "replica-b/relaygate.log",
                          "signer/postfix.log"),
                    needs=("/usr/bin/redis-server",)))
