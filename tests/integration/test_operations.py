#!/usr/bin/python3
"""Operations under traffic: policy hot reload (file replaced by rename,
Kubernetes ConfigMap symlink swap, SIGHUP; valid and invalid files) while a
bounded smtplib load runs, and the SIGTERM drain during a stream of
transactions. Every transaction must end as a 2xx with exactly one stored
message, or as a refusal with nothing stored."""

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, GatewayTestCase, scale, wait_for  # noqa: E402
from identity_helpers import (ConfigMapDir, ProjectedVolume, QUEUED_RE, Txn, load_message,  # noqa: E402
                              log_events, metric, policy_hash_of, readyz, run_load,
                              stop_load, stored_tokens, write_atomic)

RCPT = "bob@dest.example"


def demo_policy(*extra_domains):
    return {"version": 1, "tenants": {"demo": {
        "domains": ["demo.example", *extra_domains],
        "identities": [{"networks": ["127.0.0.1/32"]}]}}}


# Refused by the linter (host bits set: network_host_bits), valid JSON.
INVALID_LINT = {"version": 1, "tenants": {"demo": {
    "domains": ["demo.example"], "identities": [{"networks": ["127.0.0.1/24"]}]}}}
INVALID_JSON = '{"version": 1, "tenants": {"demo": '

P_OLD = demo_policy("old.example")                    # initial
P_NEW = demo_policy("new.example")                    # old.example removed, new.example granted
P_THIRD = demo_policy("old.example", "third.example")  # old back, new removed, third granted
FLAPPING = ("old.example", "new.example", "third.example")


def policy_file_hash(workdir, policy, name):
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(policy, fh)
    return policy_hash_of(path)


class ReloadTest(GatewayTestCase):

    def setUp(self):
        super().setUp()
        self.probes = []   # Txn of every probe transaction
        self.hashes = {name: policy_file_hash(self.workdir, p, name + ".json")
                       for name, p in (("old", P_OLD), ("new", P_NEW), ("third", P_THIRD))}

    # ---- probes: fresh sessions, so they see the current policy ---------
    def probe(self, port, domain):
        t = Txn(f"probe-{domain}-{time.monotonic_ns()}", domain, time.monotonic())
        self.probes.append(t)
        with Client(port) as c:
            self.assertReply(c.ehlo(), "250")
            r = c.cmd(f"MAIL FROM:<probe@{domain}>")
            t.stage, t.code, t.text = "mail", r.code, r.text
            if r.code == 250:
                self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), "250 2.1.5")
                r = c.data(load_message(t.token, domain))
                t.stage, t.code, t.text = "data", r.code, r.text
                if r.code == 250:
                    t.stage = "done"
                    m = QUEUED_RE.search(r.text)
                    t.queue_id = m.group(1) if m else None
            c.cmd("QUIT")
        return t

    def assert_decisions(self, port, allowed, refused):
        for d in allowed:
            t = self.probe(port, d)
            self.assertTrue(t.accepted, f"{d} should be accepted now: {t}")
        for d in refused:
            t = self.probe(port, d)
            self.assertEqual((t.stage, t.code), ("mail", 550), f"{d} should be refused now: {t}")
            self.assertIn("5.7.1", t.text)

    def wait_hash(self, gw, name):
        return wait_for(lambda: readyz(gw)[1]["policy_hash"] == self.hashes[name], 15,
                        interval=0.1, what=f"/readyz policy_hash of the '{name}' policy")

    def wait_failures(self, gw, count):
        wait_for(lambda: metric(gw, "relaygate_policy_reloads_total", result="failure") >= count,
                 15, interval=0.1, what=f"{count} failed reload(s) counted")

    def policy_info_hashes(self, gw):
        samples = harness.urllib.request.urlopen(
            f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=10).read().decode()
        return [line.split('hash="', 1)[1].split('"', 1)[0] for line in samples.splitlines()
                if line.startswith("relaygate_policy_info{")]

    # ---- the scenario ---------------------------------------------------
    def run_scenario(self, replace, policy_file=None):
        sink = self.start_sink()
        config = {"policy_poll_seconds": 1,
                  "limits": {"max_connections_per_client": 200}}
        if policy_file:
            config["policy_file"] = policy_file
        gw = self.start_gateway(sink.port, policy=P_OLD, config=config)
        port = gw.port
        self.wait_hash(gw, "old")
        self.assertEqual(self.policy_info_hashes(gw), [self.hashes["old"]])

        rng = random.Random(6)
        lock = threading.Lock()

        def pick():
            with lock:
                return rng.choice(FLAPPING) if rng.random() < 0.25 else "demo.example"

        duration = scale(10.0, 6.0)
        t_start = time.monotonic()
        stop, workers = run_load(port, scale(8, 4), pick)
        try:
            time.sleep(1.0)
            # A session opened under the old policy: each of its
            # transactions takes the policy in force at MAIL FROM, so a
            # revoked grant stops there (issue 13, point 6).
            old_session = Client(port)
            self.addCleanup(old_session.close)
            self.assertReply(old_session.ehlo(), "250")

            # 1. valid: old.example removed, new.example granted.
            replace(gw, P_NEW)
            self.wait_hash(gw, "new")
            self.assertEqual(self.policy_info_hashes(gw), [self.hashes["new"]])
            self.assert_decisions(port, allowed=["new.example", "demo.example"],
                                  refused=["old.example", "third.example"])
            self.assertReply(old_session.cmd("MAIL FROM:<snap@old.example>"), "550 5.7.1")
            self.assertReply(old_session.cmd("MAIL FROM:<snap@new.example>"), "250 2.1.0")
            self.assertReply(old_session.cmd("RSET"), "250 2.0.0")
            old_session.cmd("QUIT")
            old_session.close()

            # 2. invalid (linter error), then 3. invalid (not JSON): old kept.
            replace(gw, INVALID_LINT)
            self.wait_failures(gw, 1)
            replace(gw, INVALID_JSON)
            self.wait_failures(gw, 2)
            status, doc = readyz(gw)
            self.assertEqual((status, doc["policy_hash"]), (200, self.hashes["new"]))
            self.assertEqual(self.policy_info_hashes(gw), [self.hashes["new"]])
            self.assert_decisions(port, allowed=["new.example"], refused=["old.example"])
            failed = log_events(gw, "policy_reload_failed")
            self.assertEqual(len(failed), 2, failed)
            self.assertTrue(all(f["keeping_previous"] is True for f in failed), failed)

            # 4. valid again.
            replace(gw, P_THIRD)
            self.wait_hash(gw, "third")
            t_last = time.monotonic()
            self.assert_decisions(port, allowed=["old.example", "third.example"],
                                  refused=["new.example"])
            time.sleep(max(1.0, duration - (time.monotonic() - t_start)))
        finally:
            txns = stop_load(stop, workers)

        self.assertEqual(metric(gw, "relaygate_policy_reloads_total", result="failure"), 2)
        self.assertEqual(metric(gw, "relaygate_policy_reloads_total", result="success"), 3)
        self.assertEqual(len(log_events(gw, "policy_loaded")), 3)
        self.check_accounting(gw, sink, workers, txns)
        self.assertTrue([t for t in txns if t.accepted and t.started > t_last],
                        "the load did not run past the last reload")

    def check_accounting(self, gw, sink, workers, txns):
        for w in workers:
            self.assertEqual(w.exceptions, [], w.name)
            self.assertEqual(w.connect_errors, [], w.name)
        self.assertGreater(len(txns), 20, "the load hardly ran")
        bad = []
        for t in txns:
            if t.domain == "demo.example":
                ok = t.accepted  # always granted: any failure is a lost message
            else:  # granted or not, depending on the session's snapshot
                ok = t.accepted or (t.stage == "mail" and t.code == 550 and "5.7.1" in t.text)
            if not ok:
                bad.append(t)
        self.assertEqual(bad, [], "transactions that failed during the reloads")
        accepted = [t for t in txns + self.probes if t.accepted]
        queue_ids = [t.queue_id for t in accepted]
        self.assertNotIn(None, queue_ids)
        self.assertEqual(len(set(queue_ids)), len(queue_ids), "a queue id answered twice")
        sink.wait_idle(15)
        stored = stored_tokens(sink)  # fails on a message stored twice
        self.assertEqual(stored, {t.token: t.queue_id for t in accepted},
                         "the upstream's store differs from the 250s the clients saw")
        refused = [t for t in txns if not t.accepted]
        sys.stderr.write(f"\n  [{len(accepted)} accepted, {len(refused)} refused by policy, "
                         f"{sum(w.sessions for w in workers)} sessions] ")

    def test_reload_by_rename_under_load(self):
        self.run_scenario(lambda gw, policy: write_atomic(gw.policy_path, policy))

    def test_reload_by_configmap_symlink_swap_under_load(self):
        cm = ConfigMapDir(os.path.join(self.workdir, "configmap"), P_OLD)
        self.run_scenario(lambda gw, policy: cm.update(policy), policy_file=cm.path)
        self.assertTrue(os.path.islink(cm.path))

    def test_sighup_reload_without_polling(self):
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, policy=P_OLD, config={"policy_poll_seconds": 0})
        # Polling off: a changed file is not picked up on its own...
        write_atomic(gw.policy_path, P_NEW)
        time.sleep(1.5)
        self.assertEqual(readyz(gw)[1]["policy_hash"], self.hashes["old"])
        self.assert_decisions(gw.port, allowed=["old.example"], refused=["new.example"])
        # ...but on SIGHUP.
        os.kill(gw.proc.pid, signal.SIGHUP)
        self.wait_hash(gw, "new")
        self.assert_decisions(gw.port, allowed=["new.example"], refused=["old.example"])
        # An invalid file on SIGHUP keeps the old policy (written in place:
        # without polling nothing can read it half-written).
        with open(gw.policy_path, "w", encoding="utf-8") as fh:
            json.dump(INVALID_LINT, fh)
        os.kill(gw.proc.pid, signal.SIGHUP)
        self.wait_failures(gw, 1)
        self.assertEqual(readyz(gw)[1]["policy_hash"], self.hashes["new"])
        self.assert_decisions(gw.port, allowed=["new.example"], refused=["old.example"])
        self.assertTrue([r for r in log_events(gw, "policy_error")
                         if r.get("rule") == "network_host_bits"])

    def test_policy_dir_of_several_files_reloads_as_one(self):
        # Two teams' files (e.g. two ConfigMaps projected into one volume)
        # form one policy; a change to either reloads the whole, atomically.
        lab = {"version": 1, "tenants": {"lab": {
            "domains": ["lab.example"], "identities": [{"networks": ["192.0.2.0/24"]}]}}}
        vol = ProjectedVolume(os.path.join(self.workdir, "policy.d"),
                              {"00-demo.json": P_OLD, "10-lab.json": lab})
        merged = {"version": 1, "tenants": {**P_NEW["tenants"], **lab["tenants"]}}
        self.hashes["merged-new"] = policy_file_hash(self.workdir, merged, "merged-new.json")
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, config={
            "policy_file": None, "policy_dir": vol.dir, "policy_poll_seconds": 1})
        self.assertEqual(readyz(gw)[1]["policy_hash"], policy_file_hash(
            self.workdir, {"version": 1, "tenants": {**P_OLD["tenants"], **lab["tenants"]}},
            "merged-old.json"))
        self.assert_decisions(gw.port, allowed=["old.example"], refused=["new.example"])
        self.assertEqual(metric(gw, "relaygate_policy_tenants"), 2)

        vol.update({"00-demo.json": P_NEW, "10-lab.json": lab})
        self.wait_hash(gw, "merged-new")
        self.assert_decisions(gw.port, allowed=["new.example"], refused=["old.example"])

        # One team's file claims the other's tenant: the whole reload is
        # refused, naming both files; the last good policy stays.
        clash = {"version": 1, "tenants": {**lab["tenants"], "demo": P_OLD["tenants"]["demo"]}}
        vol.update({"00-demo.json": P_NEW, "10-lab.json": clash})
        self.wait_failures(gw, 1)
        errors = [r for r in log_events(gw, "policy_error") if r.get("rule") == "duplicate_tenant"]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual(errors[0]["file"], vol.file("10-lab.json"))
        self.assertIn(vol.file("00-demo.json"), errors[0]["message"])
        self.assertEqual(readyz(gw)[1]["policy_hash"], self.hashes["merged-new"])
        self.assert_decisions(gw.port, allowed=["new.example"], refused=["old.example"])


# ==========================================================================
# Drain


class SlowSender(threading.Thread):
    """A transaction that is mid-DATA when SIGTERM arrives: sends the body in
    `chunks` pieces, one every `interval` seconds."""

    def __init__(self, index, port, chunks=12, interval=0.25):
        super().__init__(daemon=True, name=f"slow-{index}")
        self.port = port
        self.token = f"slow{index}-{time.monotonic_ns()}"
        self.chunks = chunks
        self.interval = interval
        self.in_data = threading.Event()
        self.final = None
        self.after = None       # reply to the next command, after the message
        self.closed = None
        self.error = None

    def run(self):
        try:
            with Client(self.port, timeout=30) as c:
                c.ehlo()
                assert c.cmd("MAIL FROM:<slow@demo.example>").code == 250
                assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
                assert c.cmd("DATA").code == 354
                content = load_message(self.token, "demo.example")
                cut = content.index(b"\r\n\r\n") + 4
                head, body = content[:cut], content[cut:]
                c.send(head)
                self.in_data.set()
                for i in range(self.chunks):
                    time.sleep(self.interval)
                    c.send(f"slow line {i} {'x' * 60}\r\n".encode())
                c.send(body + b".\r\n")
                self.final = c.read_reply()
                self.after = c.cmd("MAIL FROM:<slow@demo.example>")
                self.closed = c.is_closed()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
            self.in_data.set()


class IdleSession(threading.Thread):
    """EHLO, then idle: after SIGTERM it must get 421 4.3.2 (pushed when the
    drain wakes it, or at its next command)."""

    def __init__(self, index, port, sigterm_sent):
        super().__init__(daemon=True, name=f"idle-{index}")
        self.port = port
        self.sigterm_sent = sigterm_sent
        self.ready = threading.Event()
        self.reply = None
        self.closed = None
        self.error = None

    def run(self):
        try:
            with Client(self.port, timeout=30) as c:
                c.ehlo()
                self.ready.set()
                self.sigterm_sent.wait(60)
                readable, _, _ = select.select([c.sock], [], [], 1.0)
                self.reply = c.read_reply() if readable else c.cmd("NOOP")
                self.closed = c.is_closed()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
            self.ready.set()


class DrainTest(GatewayTestCase):

    def test_sigterm_during_a_stream_of_transactions(self):
        drain_timeout = 10
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, policy=demo_policy(), config={
            "drain_timeout_seconds": drain_timeout,
            "limits": {"max_connections_per_client": 200}})
        port = gw.port
        sigterm_sent = threading.Event()
        stop, workers = run_load(port, scale(4, 3), lambda: "demo.example", per_session=3)
        slow = [SlowSender(i, port) for i in range(3)]
        idle = [IdleSession(i, port, sigterm_sent) for i in range(2)]
        for t in slow + idle:
            t.start()
        try:
            for t in slow:
                self.assertTrue(t.in_data.wait(20), "slow sender never reached DATA")
            for t in idle:
                self.assertTrue(t.ready.wait(20), "idle session never got its EHLO reply")
            wait_for(lambda: sum(t.accepted for w in workers for t in w.txns) >= 5, 30,
                     interval=0.05, what="some load accepted before SIGTERM")
            time.sleep(0.5)  # the slow senders are now well inside their DATA
            self.assertIsNone(next((t.error for t in slow + idle if t.error), None))

            gw.expect_exit = True
            t0 = time.monotonic()
            os.kill(gw.proc.pid, signal.SIGTERM)
            sigterm_sent.set()

            def not_ready():
                try:
                    status, doc = readyz(gw, timeout=2)
                except OSError:
                    return None
                return (status, doc) if status == 503 else None
            status, doc = wait_for(not_ready, 5, interval=0.05, what="/readyz 503 while draining")
            self.assertIs(doc["draining"], True)
            self.assertIs(doc["ready"], False)
            self.assertIsNone(gw.proc.poll(), "exited before the slow senders finished")

            # New connections are refused (listeners closed) or, at worst,
            # told 421 instead of a greeting.
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.settimeout(5)
                    first = s.recv(100)
                self.assertTrue(first == b"" or first.startswith(b"421 4.3.2"), first)
            except (ConnectionRefusedError, ConnectionResetError):
                pass

            code = gw.proc.wait(timeout=drain_timeout + 10)
            elapsed = time.monotonic() - t0
        finally:
            txns = stop_load(stop, workers)
            for t in slow + idle:
                t.join(30)
        self.assertEqual(code, 0)
        self.assertLess(elapsed, drain_timeout + 2, "exit later than the drain deadline")
        finished = log_events(gw, "drain_finished")
        self.assertEqual([f["sessions_left"] for f in finished], [0])

        # Slow senders: their message was completed and relayed, then 421.
        for t in slow:
            self.assertIsNone(t.error, t.name)
            self.assertReply(t.final, "250 2.0.0", "queued as")
            self.assertReply(t.after, "421 4.3.2")
            self.assertTrue(t.closed)
        for t in idle:
            self.assertIsNone(t.error, t.name)
            self.assertReply(t.reply, "421 4.3.2", "shutting down")
            self.assertTrue(t.closed)

        # The stream: each transaction a 2xx (stored) or a 4xx (not stored).
        for w in workers:
            self.assertEqual(w.exceptions, [], w.name)
        lost = [t for t in txns if not t.accepted and not (t.code and 400 <= t.code < 500)]
        self.assertEqual(lost, [], "transactions neither completed nor refused with a 4xx")
        refused = [t for t in txns if not t.accepted]
        self.assertTrue(all(t.code == 421 and "4.3.2" in t.text for t in refused), refused)
        accepted = [t for t in txns if t.accepted]
        expected = {t.token: t.queue_id for t in accepted}
        for t in slow:
            expected[t.token] = QUEUED_RE.search(t.final.text).group(1)
        sink.wait_idle(15)
        self.assertEqual(stored_tokens(sink), expected,
                         "stored messages differ from the 250s the clients saw")
        sys.stderr.write(f"\n  [{len(accepted)} accepted, {len(refused)} refused with 421, "
                         f"drain took {elapsed:.1f}s] ")

    def test_drain_deadline(self):
        # A client stalled mid-DATA cannot hold the process past the deadline;
        # its message is not committed upstream and it never sees a 2xx.
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, policy=demo_policy(),
                                config={"drain_timeout_seconds": 2})
        with Client(gw.port, timeout=30) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<stall@demo.example>"), "250 2.1.0")
            self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), "250 2.1.5")
            self.assertReply(c.cmd("DATA"), "354")
            content = load_message("stalled", "demo.example")
            c.send(content)  # header and body, but no final dot
            sink.wait_events("data_start", 1)
            gw.expect_exit = True
            t0 = time.monotonic()
            os.kill(gw.proc.pid, signal.SIGTERM)
            try:
                code = gw.proc.wait(timeout=2 + 5)
            except harness.subprocess.TimeoutExpired:
                stopped = bool(log_events(gw, "stopped"))
                gw.proc.kill()  # ours, by PID: SIGTERM is already spent
                gw.proc.wait(5)
                self.fail(f"relaygate still running 7 s after SIGTERM with "
                          f"drain_timeout_seconds=2 and a session left in DATA "
                          f"(logged 'stopped': {stopped}); killed")
            elapsed = time.monotonic() - t0
            data = b""
            try:
                c.sock.settimeout(5)
                while True:
                    chunk = c.sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        self.assertEqual(code, 0)
        self.assertGreaterEqual(elapsed, 1.8)
        self.assertLess(elapsed, 2 + 2)
        self.assertNotIn(b"250", data)
        self.assertEqual([f["sessions_left"] for f in log_events(gw, "drain_finished")], [1])
        sink.wait_events("aborted_mid_data", 1)
        self.assertNothingStored(sink)


def relay(test, gw):
    """One message through `gw` on a connection of its own, accepted."""
    with Client(gw.port) as c:
        c.ehlo()
        test.assertReply(c.cmd("MAIL FROM:<alice@demo.example>"), "250 2.1.0")
        test.assertEqual(c.cmd("RCPT TO:<bob@dest.example>").code, 250)
        test.assertEqual(c.data(harness.message()).code, 250)
        c.cmd("QUIT")


class LogLevelTest(GatewayTestCase):
    """`run --log-level debug` logs each session state change (the machine's
    enter()); the default level (info) logs none of them."""

    def relay_one(self, gw):
        relay(self, gw)
        gw.wait_connections_logged(1)

    def test_debug_logs_the_session_state_changes(self):
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, args=("--log-level", "debug"))
        self.relay_one(gw)
        states = [r for r in gw.log_records() if r.get("event") == "session_state"]
        links = [(r["from"], r["to"]) for r in states if r["what"] == "link"]
        self.assertEqual(links, [("closed", "idle"), ("idle", "in_transaction"),
                                 ("in_transaction", "in_data"), ("in_data", "idle"),
                                 ("idle", "closed")])
        self.assertEqual(len({r["session"] for r in states}), 1)
        self.assertEqual(states[0]["level"], "debug")

    def test_info_logs_no_state_changes(self):
        sink = self.start_sink()
        gw = self.start_gateway(sink.port)
        self.relay_one(gw)
        self.assertEqual([r for r in gw.log_records() if r.get("event") == "session_state"], [])


def listening_sockets(port):
    """Listening TCP sockets on 127.0.0.1:port, from /proc/net/tcp."""
    with open("/proc/net/tcp", encoding="ascii") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return sum(1 for r in rows if r[1] == f"0100007F:{port:04X}" and r[3] == "0A")


class ReusePortTest(GatewayTestCase):
    """listeners[].reuse_port: one listening socket per thread on the same
    port (SO_REUSEPORT), each serving the connections the kernel gives it;
    off: one socket, thread 0 hands connections out. Mail flows either way."""

    def relay_many(self, gw, n):
        for _ in range(n):
            relay(self, gw)
        gw.wait_transactions(n)
        self.assertEqual([t["reason"] for t in gw.transactions()], ["accepted"] * n)

    def test_one_socket_per_thread(self):
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, config={"threads": 2})
        listening = [r for r in gw.log_records()
                     if r.get("event") == "listening" and r.get("kind") == "smtp"]
        self.assertEqual([r["sockets"] for r in listening], [2])
        self.assertEqual(listening_sockets(gw.port), 2)
        self.relay_many(gw, 12)  # from 12 source ports: the kernel spreads them

    def test_off_one_socket(self):
        sink = self.start_sink()
        gw = self.start_gateway(sink.port, config={
            "threads": 2, "listeners": [{"address": "127.0.0.1", "port": 0, "reuse_port": False}]})
        self.assertEqual(listening_sockets(gw.port), 1)
        self.relay_many(gw, 6)


class AuditLogTest(GatewayTestCase):
    """An audit log that cannot be opened stops `run` at start and makes
    `check --config` fail; relaygate never falls back to stderr silently."""

    def test_unopenable_audit_log_is_reported(self):
        sink, gw = self.setup_pair()
        base = dict(gw.config)
        for name, target in [("missing_dir", os.path.join(self.workdir, "no-such-dir", "a.jsonl")),
                             ("directory", self.workdir)]:
            with self.subTest(name):
                path = os.path.join(self.workdir, f"config-{name}.json")
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump({**base, "audit_log": target}, fh)
                check = subprocess.run([harness.OPTIONS["relaygate"], "check", "--config", path],
                                       capture_output=True, text=True, timeout=60)
                self.assertEqual(check.returncode, 1, check.stdout + check.stderr)
                self.assertIn("audit log", check.stderr)
                self.assertIn("config INVALID", check.stderr)
                run = subprocess.run([harness.OPTIONS["relaygate"], "run", "--config", path],
                                     capture_output=True, text=True, timeout=60)
                self.assertEqual(run.returncode, 1, run.stderr)
                failed = [json.loads(line) for line in run.stderr.splitlines()
                          if '"startup_failed"' in line]
                self.assertTrue(failed, run.stderr)
                self.assertIn("cannot open audit log", failed[0]["reason"])
                self.assertNotIn('"listening"', run.stderr)
        # The running gateway's own, writable audit log passes the check.
        ok = subprocess.run([harness.OPTIONS["relaygate"], "check", "--config", gw.config_path],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)


if __name__ == "__main__":
    harness.main()
