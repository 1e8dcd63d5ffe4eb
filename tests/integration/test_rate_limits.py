#!/usr/bin/python3
"""Volume control (issue 15): per-tenant rate limits and anomaly signals
against the real `relaygate run`, with the embedded memory store and with a
real redis-server shared by two gateway replicas.

What must hold: a limit refuses the excess with 450/452 (never 5xx) and a
text naming the limit; nothing over a limit reaches the upstream; report
mode refuses nothing but logs and counts; a volume spike is an audit event
and a metric, and with "on_spike": "hold" a 450 until an operator clears
it; two replicas on one Redis share one limit; Redis going away behaves as
rate_limit.on_error says (fail_open: per-process limits divided by the
replica count; fail_closed: 451 4.3.0), without a crash or a hang; with
recipient leases (the default) two replicas never accept more recipients
than the limit, and a lease given back reaches Redis; with process blocks
(rate_limit.batch_ms, the default with Redis) most decisions are made in the
process, two replicas still never accept more than the limit, the volume
counts all reach Redis, a spike holds the tenant on both replicas, and a
replica that stops gives its block back."""

import os
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import GatewayTestCase, client_from, message  # noqa: E402
from identity_helpers import metric, readyz  # noqa: E402


def policy_with(limits=None, tenant_limits=None, other_limits=None):
    """demo (127.0.0.1) and legit (127.0.0.2), each with its own limits."""
    p = {
        "version": 1,
        "tenants": {
            "demo": {"domains": ["demo.example"],
                     "identities": [{"networks": ["127.0.0.1/32"]}]},
            "legit": {"domains": ["legit.example"],
                      "identities": [{"networks": ["127.0.0.2/32"]}]},
        },
    }
    if limits is not None:
        p["limits"] = limits
    if tenant_limits is not None:
        p["tenants"]["demo"]["limits"] = tenant_limits
    if other_limits is not None:
        p["tenants"]["legit"]["limits"] = other_limits
    return p




def send(port, sender="alice@demo.example", rcpts=("bob@example.org",), source="127.0.0.1",
         size=None, body=None):
    """One transaction; returns the reply that ended it (MAIL, a RCPT, or
    the final one after DATA) and the RCPT replies."""
    c = client_from(source, port)
    try:
        c.ehlo()
        mail = f"MAIL FROM:<{sender}>" + (f" SIZE={size}" if size else "")
        r = c.cmd(mail)
        if r.code != 250:
            return r, []
        rr = [c.cmd(f"RCPT TO:<{x}>") for x in rcpts]
        if not any(x.code == 250 for x in rr):
            return rr[-1], rr
        domain = sender.split("@")[1]
        return c.data(message(from_hdr=f"Alice <alice@{domain}>", body=body)), rr
    finally:
        c.close()


def redis_command(redis, *args):
    """One command on a fresh connection; the reply's first line."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as c:
        c.sendall(("*%d\r\n" % len(args) + "".join(
            "$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)).encode())
        return c.recv(4096).split(b"\r\n")[0].decode()


def redis_value(redis, *args):
    """A command whose reply is a bulk string: its value (None for nil)."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as c:
        c.sendall(("*%d\r\n" % len(args) + "".join(
            "$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)).encode())
        lines = c.recv(4096).split(b"\r\n")
        return None if lines[0] == b"$-1" else lines[1].decode()


def clear_hold(gw, tenant):
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}/limits/clear-hold?tenant={tenant}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.code, resp.read().decode()


NO_ANOMALIES = {"anomalies": {"enabled": False}}


class MemoryStoreTest(GatewayTestCase):
    def test_messages_limit_refuses_the_excess_with_450_and_nothing_reaches_the_relay(self):
        sink, gw = self.setup_pair(policy=policy_with(
            tenant_limits={"messages": [{"count": 3, "per": "1h"}]}), config=NO_ANOMALIES)
        replies = [send(gw.port)[0] for _ in range(5)]
        self.assertEqual([r.code for r in replies], [250, 250, 250, 450, 450])
        for r in replies[3:]:
            self.assertIn("4.7.1", r.text)
            self.assertIn("messages 3 per 1h (tenant demo)", r.text)
            self.assertIn("retry in", r.text)
        gw.wait_transactions(5)
        self.assertEqual(len(sink.stored()), 3)
        refused = [t for t in gw.transactions() if t["reason"] == "rate_limited_messages"]
        self.assertEqual(len(refused), 2)
        self.assertEqual(refused[0]["stage"], "mail_from")
        self.assertEqual(refused[0]["limit"], "messages 3 per 1h (tenant demo)")
        events = gw.audit("rate_limit")
        self.assertEqual(len(events), 2)
        self.assertEqual(events[0]["action"], "refused")
        self.assertEqual(metric(gw, "relaygate_rate_limited_total", limit="messages",
                                action="refused"), 2)
        self.assertEqual(metric(gw, "relaygate_rate_limit_decisions_total", result="limited"), 2)
        self.assertEqual(metric(gw, "relaygate_rate_limit_decisions_total", result="allowed"), 3)
        # Another tenant is not affected.
        r, _ = send(gw.port, sender="ann@legit.example", source="127.0.0.2")
        self.assertEqual(r.code, 250)

    def test_recipients_limit_refuses_the_rcpt_with_452_and_keeps_the_others(self):
        sink, gw = self.setup_pair(policy=policy_with(
            limits={"recipients": [{"count": 2, "per": "1h"}]}), config=NO_ANOMALIES)
        r, rr = send(gw.port, rcpts=("a@example.org", "b@example.org", "c@example.org"))
        self.assertEqual([x.code for x in rr], [250, 250, 452])
        self.assertIn("4.5.3", rr[2].text)
        self.assertIn("recipients 2 per 1h (tenant demo)", rr[2].text)
        self.assertEqual(r.code, 250)
        sink.wait_events("stored")
        meta, _ = sink.stored()[0]
        self.assertEqual(sorted(meta["rcpt_tos"]), ["a@example.org", "b@example.org"])

    def test_bytes_limit_at_mail_from_with_size_and_at_end_of_data(self):
        sink, gw = self.setup_pair(policy=policy_with(
            tenant_limits={"bytes": [{"count": "4KiB", "per": "1h"}]}), config=NO_ANOMALIES)
        # SIZE= that can never fit: refused before any data is sent.
        r, _ = send(gw.port, size=10000)
        self.assertEqual(r.code, 450)
        self.assertIn("bytes 4KiB per 1h (tenant demo)", r.text)
        # Without SIZE= the real size is counted at end of data, before the
        # commit point: the relay never queues it.
        r, _ = send(gw.port, body=("x" * 70 + "\r\n") * 90)
        self.assertEqual(r.code, 450)
        self.assertIn("4.7.1", r.text)
        gw.wait_transactions(2)
        self.assertEqual([t["stage"] for t in gw.transactions()], ["mail_from", "end_of_data"])
        self.assertNothingStored(sink)
        # A small one still fits.
        r, _ = send(gw.port, body="small\r\n")
        self.assertEqual(r.code, 250)

    def test_report_mode_refuses_nothing_and_logs_every_excess(self):
        sink, gw = self.setup_pair(policy=policy_with(
            tenant_limits={"messages": [{"count": 2, "per": "1h"}], "mode": "report"}),
            config=NO_ANOMALIES)
        replies = [send(gw.port)[0] for _ in range(4)]
        self.assertEqual([r.code for r in replies], [250] * 4)
        gw.wait_transactions(4)
        self.assertEqual(len(sink.stored()), 4)
        events = gw.audit("rate_limit")
        self.assertEqual([e["action"] for e in events], ["reported", "reported"])
        self.assertEqual(metric(gw, "relaygate_rate_limited_total", limit="messages",
                                action="reported"), 2)
        self.assertEqual(metric(gw, "relaygate_rate_limited_total", limit="messages",
                                action="refused"), 0)

    def test_volume_spike_holds_the_tenant_until_an_operator_clears_it(self):
        sink, gw = self.setup_pair(
            policy=policy_with(tenant_limits={"on_spike": "hold"}),
            config={"anomalies": {"spike_multiple": 2, "spike_min_messages": 4}})
        replies = [send(gw.port)[0] for _ in range(5)]
        # No history: the 4th message in the hour crosses min_messages and
        # 2 x max(baseline, 1); from it on the tenant is held.
        self.assertEqual([r.code for r in replies], [250, 250, 250, 450, 450])
        self.assertIn("held for review", replies[3].text)
        spikes = [e for e in gw.audit("anomaly") if e["kind"] == "volume_spike"]
        self.assertEqual(len(spikes), 1)
        self.assertEqual(spikes[0]["tenant"], "demo")
        self.assertEqual(metric(gw, "relaygate_anomalies_total", kind="volume_spike"), 1)
        # The other tenant sends on.
        r, _ = send(gw.port, sender="ann@legit.example", source="127.0.0.2")
        self.assertEqual(r.code, 250)
        # Only from loopback; cleared, the tenant sends again.
        self.assertEqual(clear_hold(gw, "demo"), (200, "cleared\n"))
        r, _ = send(gw.port)
        self.assertEqual(r.code, 250)
        self.assertEqual(clear_hold(gw, "demo"), (200, "no hold\n"))
        gw.wait_transactions(7)
        self.assertEqual(len(sink.stored()), 5)

    def test_first_seen_network_and_from_domain_are_signalled_once(self):
        policy = policy_with()
        policy["tenants"]["demo"]["domains"].append("news.demo.example")
        sink, gw = self.setup_pair(policy=policy)
        for sender in ("a@demo.example", "b@demo.example", "c@news.demo.example"):
            r, _ = send(gw.port, sender=sender)
            self.assertEqual(r.code, 250)
        gw.wait_transactions(3)
        kinds = sorted(e["kind"] for e in gw.audit("anomaly"))
        self.assertEqual(kinds, ["first_seen_domain", "first_seen_domain", "first_seen_network"])
        details = sorted(e["detail"] for e in gw.audit("anomaly"))
        self.assertIn("127.0.0.0/24", details)
        self.assertEqual(metric(gw, "relaygate_anomalies_total", kind="first_seen_domain"), 2)


class RedisStoreTest(GatewayTestCase):
    def redis_config(self, redis, **extra):
        cfg = {"store": "redis", "address": redis.address, "timeout_ms": 300,
               "connect_timeout_ms": 300}
        cfg.update(extra)
        return {"rate_limit": cfg, "anomalies": {"enabled": False}}

    def two_replicas(self, sink, policy, config):
        a = self.start_gateway(sink.port, policy=policy, config=config, name="replica-a")
        b = self.start_gateway(sink.port, policy=policy, config=config, name="replica-b")
        return a, b

    def test_two_replicas_share_one_limit(self):
        redis = self.start_redis()
        sink = self.start_sink()
        a, b = self.two_replicas(sink, policy_with(
            tenant_limits={"messages": [{"count": 10, "per": "1h"}]}), self.redis_config(redis))
        statuses = []
        lock = threading.Lock()

        def worker(gw, n):
            for _ in range(n):
                r, _ = send(gw.port)
                with lock:
                    statuses.append(r.code)
        threads = [threading.Thread(target=worker, args=(gw, 8)) for gw in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(statuses.count(250), 10, statuses)
        self.assertEqual(statuses.count(450), 22, statuses)
        a.wait_transactions(16)
        b.wait_transactions(16)
        self.assertEqual(len(sink.stored()), 10)
        self.assertEqual(metric(a, "relaygate_rate_limit_store_up"), 1)
        self.assertEqual(readyz(a)[1]["rate_limit_store_up"], True)

    def test_two_replicas_with_recipient_leases_never_exceed_the_recipients_limit(self):
        redis = self.start_redis()
        sink = self.start_sink()
        # The messages limit never binds; it makes the MAIL FROM request on
        # which each transaction's lease of one recipient rides.
        a, b = self.two_replicas(sink, policy_with(tenant_limits={
            "messages": [{"count": 1000, "per": "1h"}],
            "recipients": [{"count": 12, "per": "1h"}]}), self.redis_config(redis))
        accepted = []
        lock = threading.Lock()

        def worker(gw, n, offset):
            for i in range(n):
                k = 1 + (i + offset) % 3
                _, rr = send(gw.port, rcpts=[f"r{i}-{j}@example.org" for j in range(k)])
                with lock:
                    accepted.extend(x.code for x in rr)
        threads = [threading.Thread(target=worker, args=(gw, 6, i))
                   for i, gw in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Every lease was used by its transaction's first RCPT: exactly the
        # limit, never more, however the replicas interleaved.
        self.assertEqual(accepted.count(250), 12, accepted)
        self.assertEqual(accepted.count(250) + accepted.count(452), len(accepted), accepted)
        a.wait_transactions(12)
        b.wait_transactions(12)
        self.assertEqual(sum(len(meta["rcpt_tos"]) for meta, _ in sink.stored()), 12)
        for gw in (a, b):
            self.assertGreater(metric(gw, "relaygate_rate_limit_lease_units_total",
                                      result="granted"), 0)
            self.assertEqual(metric(gw, "relaygate_rate_limit_lease_units_total",
                                    result="granted"),
                             metric(gw, "relaygate_rate_limit_lease_units_total", result="used"))
            self.assertEqual(metric(gw, "relaygate_rate_limit_lease_units_total",
                                    result="lost"), 0)

    def test_a_lease_given_back_reaches_redis(self):
        redis = self.start_redis()
        sink = self.start_sink()
        a, b = self.two_replicas(sink, policy_with(tenant_limits={
            "messages": [{"count": 1000, "per": "1h"}],
            "recipients": [{"count": 2, "per": "1h"}]}), self.redis_config(redis))
        # Five transactions on replica a that end without a RCPT: each takes
        # a lease of one recipient at MAIL FROM and gives it back.
        c = client_from("127.0.0.1", a.port)
        try:
            c.ehlo()
            for ending in ("RSET", "RSET", "RSET", "RSET"):
                self.assertEqual(c.cmd("MAIL FROM:<alice@demo.example>").code, 250)
                self.assertEqual(c.cmd(ending).code, 250)
            self.assertEqual(c.cmd("MAIL FROM:<alice@demo.example>").code, 250)
            self.assertEqual(c.cmd("QUIT").code, 221)
        finally:
            c.close()
        harness.wait_for(lambda: metric(a, "relaygate_rate_limit_lease_units_total",
                                        result="refunded") == 5, 10,
                         what="five refunds answered by Redis")
        self.assertEqual(metric(a, "relaygate_rate_limit_lease_units_total", result="granted"), 5)
        self.assertEqual(metric(a, "relaygate_rate_limit_lease_units_total", result="lost"), 0)
        # The refunds wait in the replica's block for rate_limit.batch_ms
        # and then reach Redis: it holds no debt on the recipients limit.
        harness.wait_for(lambda: redis_command(
            redis, "EXISTS", "relaygate:rl:{demo}:tenant:demo:recipients:3600") == ":0", 10,
            what="the returned block reaching Redis")
        self.assertGreaterEqual(metric(a, "relaygate_rate_limit_block_units_total",
                                       result="returned"), 5)
        # The other replica gets the whole budget, and no more.
        r, rr = send(b.port, rcpts=("x@example.org", "y@example.org", "z@example.org"))
        self.assertEqual([x.code for x in rr], [250, 250, 452])
        self.assertIn("recipients 2 per 1h (tenant demo)", rr[2].text)
        self.assertEqual(r.code, 250)

    def test_batched_replicas_decide_most_messages_in_process_and_never_exceed_the_limit(self):
        redis = self.start_redis()
        sink = self.start_sink()
        # Blocks of 4 messages (10% of 40); anomalies on, so that volume
        # counts and first-seen marks are batched too.
        config = self.redis_config(redis, block_percent=10)
        config["anomalies"] = {"enabled": True}
        a, b = self.two_replicas(sink, policy_with(
            tenant_limits={"messages": [{"count": 40, "per": "1h"}]}), config)
        codes = [send((a, b)[i % 2].port)[0].code for i in range(60)]
        self.assertEqual(codes.count(250), 40, codes)
        self.assertEqual(codes.count(450), 20, codes)
        a.wait_transactions(30)
        b.wait_transactions(30)
        self.assertEqual(len(sink.stored()), 40)
        for gw in (a, b):
            in_process = metric(gw, "relaygate_rate_limit_batch_decisions_total",
                                where="process")
            in_store = metric(gw, "relaygate_rate_limit_batch_decisions_total", where="store")
            self.assertGreater(in_process, in_store)
            self.assertGreater(metric(gw, "relaygate_rate_limit_block_units_total",
                                      result="taken"), 0)
        # Both replicas count into one volume state in Redis (a single
        # bucket: 60 attempts), once their waiting counts are sent.
        harness.wait_for(lambda: redis_value(redis, "HGET", "relaygate:vol:{demo}", "c") == "60",
                         10, what="all 60 counts in Redis")

    def test_a_replica_that_stops_gives_its_block_back(self):
        redis = self.start_redis()
        sink = self.start_sink()
        a, b = self.two_replicas(sink, policy_with(
            tenant_limits={"messages": [{"count": 40, "per": "1h"}]}),
            self.redis_config(redis, block_percent=10, batch_ms=60000))
        # a takes one message and a block of 4 it keeps (batch_ms 60 s) ...
        self.assertEqual(send(a.port)[0].code, 250)
        a.wait_transactions(1)
        self.assertEqual(metric(a, "relaygate_rate_limit_block_units_total", result="taken"), 4)
        # ... until it drains on SIGTERM: the block goes back to Redis.
        a.expect_exit = True
        self.assertEqual(a.stop(), 0)
        codes = [send(b.port)[0].code for _ in range(42)]
        self.assertEqual(codes, [250] * 39 + [450] * 3)

    def test_batched_volume_spike_holds_the_tenant_on_every_replica(self):
        redis = self.start_redis()
        sink = self.start_sink()
        config = self.redis_config(redis)
        config["anomalies"] = {"enabled": True, "spike_multiple": 2, "spike_min_messages": 4}
        a, b = self.two_replicas(sink, policy_with(tenant_limits={"on_spike": "hold"}), config)
        # Counts reach Redis at most rate_limit.batch_ms late: the spike is
        # seen and the hold applies within about a second, on both replicas.
        codes = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and codes[-2:] != [450, 450]:
            codes.append(send((a, b)[len(codes) % 2].port)[0].code)
            time.sleep(0.05)
        self.assertEqual(codes[-2:], [450, 450], codes)
        self.assertEqual(set(codes), {250, 450})
        spikes = [e for gw in (a, b) for e in gw.audit("anomaly") if e["kind"] == "volume_spike"]
        self.assertEqual(len(spikes), 1, spikes)
        self.assertEqual(spikes[0]["tenant"], "demo")
        # Cleared on one replica: both send again once they next ask Redis.
        self.assertEqual(clear_hold(a, "demo"), (200, "cleared\n"))
        harness.wait_for(lambda: send(b.port)[0].code == 250, 10, what="b sending again")
        self.assertEqual(send(a.port)[0].code, 250)

    def test_redis_down_fail_open_divides_the_limit_by_the_replica_count(self):
        redis = self.start_redis()
        sink = self.start_sink()
        a, b = self.two_replicas(sink, policy_with(
            tenant_limits={"messages": [{"count": 10, "per": "1h"}]}),
            self.redis_config(redis, on_error="fail_open", replicas=2))
        self.assertEqual(send(a.port)[0].code, 250)
        redis.kill()
        statuses = []
        for gw in (a, b):
            for _ in range(7):
                t0 = time.monotonic()
                statuses.append(send(gw.port)[0].code)
                self.assertLess(time.monotonic() - t0, 5, "a reply waited on a dead Redis")
        # Each replica's fallback allows 10 / 2 = 5 per hour.
        self.assertEqual(statuses, [250] * 5 + [450] * 2 + [250] * 5 + [450] * 2)
        self.assertGreater(metric(a, "relaygate_rate_limit_fallback_total"), 0)
        errors = sum(metric(a, "relaygate_rate_limit_store_errors_total", kind=k)
                     for k in ("connect", "timeout", "reply", "protocol"))
        self.assertGreater(errors, 0)
        self.assertEqual(metric(a, "relaygate_rate_limit_store_up"), 0)
        # Readiness does not depend on the store: fail_open still serves.
        status, body = readyz(a)
        self.assertEqual(status, 200)
        self.assertEqual((body["rate_limit_store"], body["rate_limit_store_up"]), ("redis", False))
        # Redis back: the shared counters decide again.
        redis.start()
        harness.wait_for(lambda: send(a.port)[0].code == 250
                         and metric(a, "relaygate_rate_limit_store_up") == 1, 20,
                         what="the replica deciding on Redis again")

    def test_redis_down_fail_closed_tempfails_with_451_and_recovers(self):
        redis = self.start_redis()
        sink, gw = self.setup_pair(policy=policy_with(
            tenant_limits={"messages": [{"count": 100, "per": "1h"}]}),
            config=self.redis_config(redis, on_error="fail_closed"))
        self.assertEqual(send(gw.port)[0].code, 250)
        redis.kill()
        r, _ = send(gw.port)
        self.assertEqual(r.code, 451)
        self.assertIn("4.3.0", r.text)
        # A Redis that accepts but never answers: the timeout decides.
        redis.start()
        harness.wait_for(lambda: send(gw.port)[0].code == 250, 20, what="recovered")
        redis.pause()
        t0 = time.monotonic()
        r, _ = send(gw.port)
        self.assertEqual(r.code, 451)
        self.assertLess(time.monotonic() - t0, 5)
        redis.resume()
        harness.wait_for(lambda: send(gw.port)[0].code == 250, 20, what="recovered again")
        self.assertTrue(gw.alive())
        unavailable = [t for t in gw.transactions() if t["reason"] == "rate_limit_unavailable"]
        self.assertGreaterEqual(len(unavailable), 2)


if __name__ == "__main__":
    harness.main()
