#!/usr/bin/python3
"""relaygate test peer: a scriptable SMTP upstream ("sink") built on aiosmtpd.

Run with Debian's /usr/bin/python3 (python3-aiosmtpd).  Loopback use only.

    sink.py --host 127.0.0.1 --port 0 --port-file PORTFILE \
            --maildir DIR [--log LOG.jsonl] [--ehlo-extra XCLIENT ...] \
            [--fail-at STEP --fail-mode MODE [--fail-times N] [--fail-reply TEXT]] \
            [--delay-at STEP --delay-seconds S]
            [--starttls-cert CERT.pem --starttls-key KEY.pem] [--max-sessions N]

Storage (--maildir DIR): every accepted message becomes
    DIR/<QUEUEID>.eml   the DATA bytes exactly as received, after removing the
                        transparency dot of dot-stuffed lines (RFC 5321 4.5.2);
                        line endings are untouched (CRLF stays CRLF, a bare LF
                        inside a line stays a bare LF).  Excludes the final
                        "." line.
    DIR/<QUEUEID>.json  envelope sidecar: queue_id, mail_from, mail_options,
                        rcpt_tos, rcpt_options, client {addr, port}, helo,
                        xclient {ATTR: value} or null, size, sha256,
                        connection, received_at, tls (true when the
                        session had completed STARTTLS when the message
                        arrived).
Both are written atomically (temporary name + rename); the .json appears last,
so "a .json exists" means "the message is complete".

Log (--log FILE): one JSON object per line, flushed at once.  Fields always
present: ts (unix time), conn (connection number, from 1), event.  Events:
    listening   {host, port}
    connect     {peer}
    command     {line, verb}      every command line received (raw, CRLF cut)
    reply       {text}            every reply line sent
    data_start  {}                354 sent, message content follows
    dot         {bytes}           the final "." arrived (bytes = content size)
    stored      {queue_id, bytes, tls}
    tls         {version, cipher}  a STARTTLS handshake completed; the
                                  session starts over (EHLO required again)
    tls_failed  {error}           the STARTTLS handshake failed (the
                                  connection is closed)
    fault       {step, mode}      an injected fault fired
    delay       {step, seconds}
    aborted_mid_data {bytes_received, aborted_mid_data_total}
                                  connection closed by the client after 354
                                  and before the final dot; the partial
                                  message is discarded.  The total is
                                  cumulative for this sink process.
    disconnect  {in_data}
    shutdown    {aborted_mid_data_total, stored_total}

Fault injection (for the gateway's fault tests):
    --fail-at   connect|ehlo|xclient|mail|rcpt|data|dot   (ehlo covers HELO)
    --fail-mode reply4xx  answer the step with a 4xx reply (421 closes the
                          connection afterwards, as Postfix does)
                reply5xx  answer with a 5xx reply (connect: 554 greeting,
                          then 503 to everything but QUIT)
                close     close the connection instead of answering
                          (connect: accept, then close at once; dot: the
                          message is NOT stored)
                hang      never answer (the connection stays open until the
                          client closes it or --timeout expires)
    --fail-times N        fire only for the first N occurrences (0 = always)
    --fail-reply TEXT     use TEXT as the reply instead of the default
    --delay-at STEP --delay-seconds S
                          wait S seconds before answering STEP, then answer
                          normally.  For "dot" the message is stored before
                          the delay (an upstream that committed but answers
                          late).
STARTTLS (RFC 3207; --starttls-cert and --starttls-key, both PEM): STARTTLS
is advertised in EHLO until the handshake is done; it is never required.
Without them STARTTLS is not advertised and is answered with 454.

Final reply to ".": "250 2.0.0 Ok: queued as <QUEUEID>" (unique upper-case hex).

XCLIENT (advertised with --ehlo-extra XCLIENT, which expands to Postfix's
attribute list): attributes NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT
(xtext-decoded) are recorded and the reply is a fresh "220" greeting; the
client must send EHLO again, as with Postfix.  Refused with 550 when not
advertised and with 503 inside a mail transaction.  With --xclient-hosts
CIDR (as Postfix's smtpd_authorized_xclient_hosts) XCLIENT is offered and
allowed only while the client address in force -- the connection's, or the
last XCLIENT ADDR -- is in one of them; Postfix 3.7 behaves so (checked by
hand: after XCLIENT ADDR=<outside address> its EHLO no longer offers XCLIENT
and a second XCLIENT gets "550 5.7.0 Error: insufficient authorization").
"""

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, Envelope

STEPS = ("connect", "ehlo", "xclient", "mail", "rcpt", "data", "dot")
MODES = ("reply4xx", "reply5xx", "close", "hang")
XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN",
                 "DESTADDR", "DESTPORT")

DEFAULT_REPLIES = {
    ("connect", "reply4xx"): "421 4.3.2 Service not available (injected fault)",
    ("connect", "reply5xx"): "554 5.3.2 No SMTP service here (injected fault)",
    ("ehlo", "reply4xx"): "421 4.3.2 Service not available (injected fault)",
    ("ehlo", "reply5xx"): "554 5.7.1 EHLO refused (injected fault)",
    ("xclient", "reply4xx"): "451 4.3.0 XCLIENT temporary failure (injected fault)",
    ("xclient", "reply5xx"): "550 5.7.0 XCLIENT refused (injected fault)",
    ("mail", "reply4xx"): "451 4.3.0 Sender temporarily refused (injected fault)",
    ("mail", "reply5xx"): "550 5.7.1 Sender refused (injected fault)",
    ("rcpt", "reply4xx"): "450 4.2.0 Recipient temporarily refused (injected fault)",
    ("rcpt", "reply5xx"): "550 5.1.1 Recipient refused (injected fault)",
    ("data", "reply4xx"): "451 4.3.0 DATA temporarily refused (injected fault)",
    ("data", "reply5xx"): "554 5.5.1 DATA refused (injected fault)",
    ("dot", "reply4xx"): "451 4.3.0 Error: queue file write error (injected fault)",
    ("dot", "reply5xx"): "554 5.7.1 Message rejected (injected fault)",
}


class Journal:
    """JSON-lines event log plus process-wide counters."""

    def __init__(self, path):
        self._fh = open(path, "a", encoding="utf-8") if path else None
        self.aborted_mid_data = 0
        self.stored = 0
        self.next_conn = 1

    def write(self, conn, event, **fields):
        if self._fh is None:
            return
        rec = {"ts": round(time.time(), 6), "conn": conn, "event": event}
        rec.update(fields)
        self._fh.write(json.dumps(rec, sort_keys=False) + "\n")
        self._fh.flush()


class Config:
    def __init__(self, args):
        self.maildir = args.maildir
        self.hostname = args.hostname
        self.max_size = args.max_size
        self.timeout = args.timeout
        self.smtputf8 = args.smtputf8
        self.fail_at = args.fail_at
        self.fail_mode = args.fail_mode
        self.fail_times = args.fail_times
        self.fail_reply = args.fail_reply
        self.delay_at = args.delay_at
        self.delay_seconds = args.delay_seconds
        self.fail_fired = 0
        # Like Postfix's process limit: beyond it a connection waits in the
        # listen queue, unanswered, until a session ends.
        self.sessions = (asyncio.Semaphore(args.max_sessions)
                         if args.max_sessions else None)
        self.ehlo_extra = []
        for kw in args.ehlo_extra or []:
            if kw.strip().upper() == "XCLIENT":
                kw = "XCLIENT " + " ".join(XCLIENT_ATTRS)
            self.ehlo_extra.append(kw.strip())
        self.xclient_enabled = any(k.upper().split()[0] == "XCLIENT"
                                   for k in self.ehlo_extra)
        self.xclient_hosts = [ipaddress.ip_network(n, strict=False)
                              for n in (args.xclient_hosts or [])]
        self.queue_ids = set()
        self.tls_context = None
        if args.starttls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.starttls_cert, args.starttls_key)
            self.tls_context = ctx

    def new_queue_id(self):
        while True:
            qid = secrets.token_hex(6).upper()
            if qid not in self.queue_ids:
                self.queue_ids.add(qid)
                return qid


def xtext_decode(value):
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def split_path(arg):
    """Split '<path> params' -> (path or None, [params]).  Handles quotes."""
    arg = arg.lstrip()
    if not arg.startswith("<"):
        # RFC 5321 requires angle brackets; accept a bare address leniently.
        parts = arg.split()
        return (parts[0] if parts else None), parts[1:]
    in_quote = False
    i = 1
    while i < len(arg):
        c = arg[i]
        if c == "\\" and in_quote:
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            path = arg[1:i]
            # drop an obsolete source route "@a,@b:"
            if path.startswith("@") and ":" in path:
                path = path.split(":", 1)[1]
            return path, arg[i + 1:].split()
        i += 1
    return None, []


class LoggingReader:
    """Wraps the StreamReader to log every command line read by aiosmtpd."""

    def __init__(self, inner, proto):
        self._inner = inner
        self._proto = proto

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        # aiosmtpd rebinds reader._transport after STARTTLS; that must reach
        # the real StreamReader (flow control pauses/resumes it).
        if name in ("_inner", "_proto"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    async def readuntil(self, separator=b"\n"):
        line = await self._inner.readuntil(separator)
        if not self._proto.in_data:
            self._proto.log_command(line)
        return line


class SinkSMTP(SMTP):
    def __init__(self, cfg, journal, **kw):
        self.cfg = cfg
        self.journal = journal
        self.conn = journal.next_conn
        journal.next_conn += 1
        self.in_data = False
        self.refuse_all = False      # after a 5xx greeting
        self.xclient = None
        self.peer_addr = None
        self.tls_active = False      # STARTTLS handshake completed
        self.disconnected = False
        super().__init__(handler=object(), hostname=cfg.hostname,
                         ident="ESMTP relaygate-sink", decode_data=False,
                         data_size_limit=cfg.max_size,
                         enable_SMTPUTF8=cfg.smtputf8, timeout=cfg.timeout,
                         tls_context=cfg.tls_context, require_starttls=False, **kw)

    # ---- plumbing -------------------------------------------------------
    def log(self, event, **fields):
        self.journal.write(self.conn, event, **fields)

    def log_command(self, raw):
        text = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        verb = text.split(" ", 1)[0].upper()
        self.log("command", line=text, verb=verb)

    def _client_connected_cb(self, reader, writer):
        super()._client_connected_cb(LoggingReader(reader, self), writer)

    def _create_envelope(self):
        env = Envelope()
        env.mail_given = False
        return env

    async def push(self, status):
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if self._suppress_greeting and text.startswith("220 "):
            self._suppress_greeting = False
            return
        self.log("reply", text=text)
        await super().push(status)

    def connection_made(self, transport):
        # aiosmtpd calls this a second time, with the TLS transport, once a
        # STARTTLS handshake has completed (self._original_transport is set).
        after_starttls = self._original_transport is not None
        super().connection_made(transport)
        if after_starttls:
            self.tls_active = True
            cipher = transport.get_extra_info("cipher")
            ssl_obj = transport.get_extra_info("ssl_object")
            self.log("tls", version=ssl_obj.version() if ssl_obj else None,
                     cipher=cipher[0] if cipher else None)
            return
        peer = transport.get_extra_info("peername")
        self.peer_addr = peer
        self.log("connect", peer=list(peer[:2]) if peer else None)

    def connection_lost(self, error):
        # After a failed STARTTLS handshake aiosmtpd calls this itself and
        # the transport may call it again: log one disconnect per connection.
        if not self.disconnected:
            self.disconnected = True
            if self._original_transport is not None and not self.tls_active:
                self.log("tls_failed", error=repr(error.__cause__ or error)
                         if error else None)
            self.log("disconnect", in_data=self.in_data)
        super().connection_lost(error)

    async def _hang(self):
        # Never answer; the coroutine is cancelled when the connection goes.
        await asyncio.get_running_loop().create_future()

    async def fault(self, step, delay=True):
        """Apply a delay and/or an injected fault for STEP.

        Returns True when the fault answered (or suppressed the answer to)
        the command, so the caller must not process it further.
        """
        cfg = self.cfg
        if delay and cfg.delay_at == step and cfg.delay_seconds > 0:
            self.log("delay", step=step, seconds=cfg.delay_seconds)
            await asyncio.sleep(cfg.delay_seconds)
        if cfg.fail_at != step:
            return False
        if cfg.fail_times and cfg.fail_fired >= cfg.fail_times:
            return False
        cfg.fail_fired += 1
        mode = cfg.fail_mode
        self.log("fault", step=step, mode=mode)
        if mode == "close":
            self.transport.close()
            return True
        if mode == "hang":
            await self._hang()
            return True
        reply = cfg.fail_reply or DEFAULT_REPLIES[(step, mode)]
        await self.push(reply)
        if reply.startswith("421"):
            self.transport.close()
        elif step == "connect" and mode == "reply5xx":
            self.refuse_all = True
        return True

    async def _refused(self, verb):
        if self.refuse_all and verb != "QUIT":
            await self.push("503 5.5.1 Error: no SMTP service here")
            return True
        return False

    # ---- connection start ----------------------------------------------
    async def _handle_client(self):
        if self.cfg.sessions is None:
            return await self._serve_client()
        async with self.cfg.sessions:
            self.log("session_slot")
            return await self._serve_client()

    async def _serve_client(self):
        if self.cfg.delay_at == "connect" or self.cfg.fail_at == "connect":
            if await self.fault("connect"):
                if not self.refuse_all:
                    return
                # 554 greeting was sent: run the command loop without a
                # second greeting; every command but QUIT gets 503.
                self._suppress_greeting = True
        await super()._handle_client()

    # aiosmtpd pushes its own 220 greeting first thing in _handle_client;
    # push() swallows it after an injected 5xx greeting was already sent.
    _suppress_greeting = False

    # ---- commands ---------------------------------------------------------
    async def smtp_EHLO(self, hostname):
        if await self._refused("EHLO") or await self.fault("ehlo"):
            return
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        lines.append("8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        lines.extend(k for k in self.cfg.ehlo_extra
                     if k.upper().split()[0] != "XCLIENT" or self._xclient_authorized())
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            await self.push(f"250{sep}{text}")

    async def smtp_HELO(self, hostname):
        if await self._refused("HELO") or await self.fault("ehlo"):
            return
        await super().smtp_HELO(hostname)

    async def smtp_NOOP(self, arg):
        if await self._refused("NOOP"):
            return
        await super().smtp_NOOP(arg)

    async def smtp_RSET(self, arg):
        if await self._refused("RSET"):
            return
        await super().smtp_RSET(arg)

    async def smtp_VRFY(self, arg):
        if await self._refused("VRFY"):
            return
        await super().smtp_VRFY(arg)

    async def smtp_HELP(self, arg):
        if await self._refused("HELP"):
            return
        await super().smtp_HELP(arg)

    def _xclient_authorized(self):
        """As Postfix's smtpd_authorized_xclient_hosts: checked against the
        client address in force, which a previous XCLIENT ADDR replaced
        (so XCLIENT is withdrawn from EHLO once it named an outside address)."""
        if not self.cfg.xclient_hosts:
            return True
        addr = (self.xclient or {}).get("ADDR") or self.peer_addr[0]
        if addr.upper().startswith("IPV6:"):
            addr = addr[5:]
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.cfg.xclient_hosts)

    async def smtp_XCLIENT(self, arg):
        if await self._refused("XCLIENT"):
            return
        if not self.cfg.xclient_enabled or not self._xclient_authorized():
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        if self.envelope.mail_given:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        if await self.fault("xclient"):
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: XCLIENT attribute=value...")
            return
        attrs = {}
        for item in arg.split():
            name, eq, value = item.partition("=")
            if not eq or name.upper() not in XCLIENT_ATTRS:
                await self.push(f"501 5.5.4 Bad XCLIENT attribute name: {name}")
                return
            attrs[name.upper()] = xtext_decode(value)
        merged = dict(self.xclient or {})
        merged.update(attrs)
        self.xclient = merged
        # As Postfix: a fresh session, greeting again, EHLO required again.
        self._set_rset_state()
        self.session.host_name = None
        self.session.extended_smtp = False
        await self.push(f"220 {self.hostname} ESMTP relaygate-sink")

    async def smtp_MAIL(self, arg):
        if await self._refused("MAIL"):
            return
        if not self.session.host_name:
            await self.push("503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.envelope.mail_given:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        if await self.fault("mail"):
            return
        if not arg or not arg[:5].upper() == "FROM:":
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        path, params = split_path(arg[5:])
        if path is None:
            await self.push("501 5.1.7 Bad sender address syntax")
            return
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and v.isdigit() and self.data_size_limit \
                    and int(v) > self.data_size_limit:
                await self.push("552 5.3.4 Message size exceeds fixed limit")
                return
        self.envelope.mail_from = path
        self.envelope.mail_options = params
        self.envelope.mail_given = True
        await self.push("250 2.1.0 Ok")

    async def smtp_RCPT(self, arg):
        if await self._refused("RCPT"):
            return
        if not self.envelope.mail_given:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        if await self.fault("rcpt"):
            return
        if not arg or not arg[:3].upper() == "TO:":
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        path, params = split_path(arg[3:])
        if not path:
            await self.push("501 5.1.3 Bad recipient address syntax")
            return
        self.envelope.rcpt_tos.append(path)
        self.envelope.rcpt_options.append(params)
        await self.push("250 2.1.5 Ok")

    async def smtp_DATA(self, arg):
        if await self._refused("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        if await self.fault("data"):
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.log("data_start")
        self.in_data = True
        chunks = []
        received = 0
        too_long = too_big = False
        limit = self.data_size_limit
        try:
            while self.transport is not None:
                try:
                    line = await self._reader.readuntil(b"\r\n")
                except asyncio.LimitOverrunError as e:
                    too_long = True
                    line = await self._reader.read(e.consumed)
                    received += len(line)
                    continue
                except asyncio.IncompleteReadError as e:
                    received += len(e.partial)
                    raise asyncio.CancelledError() from e
                self._reset_timeout()
                if line == b".\r\n":
                    break
                received += len(line)
                if limit and received > limit:
                    too_big = True
                if too_long or too_big:
                    chunks.clear()
                    continue
                chunks.append(line[1:] if line.startswith(b".") else line)
            else:
                raise asyncio.CancelledError()
        except asyncio.CancelledError:
            if self.in_data:
                self.in_data = False
                self.journal.aborted_mid_data += 1
                self.log("aborted_mid_data", bytes_received=received,
                         aborted_mid_data_total=self.journal.aborted_mid_data)
            raise
        self.in_data = False
        content = b"".join(chunks)
        self.log("dot", bytes=len(content))
        if too_long:
            self._set_post_data_state()
            await self.push("500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)")
            return
        if too_big:
            self._set_post_data_state()
            await self.push("552 5.3.4 Error: message too big")
            return
        cfg = self.cfg
        # Fault at "dot" (except a pure delay) happens before storing.
        fail_now = (cfg.fail_at == "dot"
                    and not (cfg.fail_times and cfg.fail_fired >= cfg.fail_times))
        if fail_now:
            if await self.fault("dot", delay=False):
                self._set_post_data_state()
                return
        qid = self.store(content)
        self._set_post_data_state()
        if cfg.delay_at == "dot" and cfg.delay_seconds > 0:
            self.log("delay", step="dot", seconds=cfg.delay_seconds)
            await asyncio.sleep(cfg.delay_seconds)
        await self.push(f"250 2.0.0 Ok: queued as {qid}")

    def store(self, content):
        qid = self.cfg.new_queue_id()
        env = self.envelope
        peer = self.peer_addr or ("", 0)
        meta = {
            "queue_id": qid,
            "mail_from": env.mail_from,
            "mail_options": env.mail_options,
            "rcpt_tos": env.rcpt_tos,
            "rcpt_options": env.rcpt_options,
            "client": {"addr": peer[0], "port": peer[1]},
            "helo": self.session.host_name,
            "xclient": self.xclient,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "connection": self.conn,
            "received_at": time.time(),
            "tls": self.tls_active,
        }
        d = self.cfg.maildir
        if d:
            for suffix, data in ((".eml", content),
                                 (".json", (json.dumps(meta, indent=1) + "\n").encode())):
                tmp = os.path.join(d, f".tmp-{qid}{suffix}")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.rename(tmp, os.path.join(d, qid + suffix))
        self.journal.stored += 1
        self.log("stored", queue_id=qid, bytes=len(content), tls=self.tls_active)
        return qid


def parse_args(argv):
    p = argparse.ArgumentParser(description="relaygate scriptable SMTP sink")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--maildir", help="store accepted messages here")
    p.add_argument("--log", help="JSON-lines event log")
    p.add_argument("--hostname", default="sink.relaygate.test")
    p.add_argument("--ehlo-extra", action="append", metavar="KEYWORD",
                   help="extra EHLO keyword line (repeatable); XCLIENT expands "
                        "to Postfix's attribute list")
    p.add_argument("--xclient-hosts", action="append", metavar="CIDR",
                   help="as Postfix's smtpd_authorized_xclient_hosts (repeatable): "
                        "XCLIENT is offered and allowed only while the client "
                        "address in force (the last XCLIENT ADDR) is in one")
    p.add_argument("--max-size", type=int, default=33554432)
    p.add_argument("--max-sessions", type=int, default=0, metavar="N",
                   help="serve at most N sessions at once (like Postfix's "
                        "process limit); others wait for their greeting")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="idle seconds before the sink closes a connection")
    p.add_argument("--smtputf8", action="store_true", help="advertise SMTPUTF8")
    p.add_argument("--fail-at", choices=STEPS)
    p.add_argument("--fail-mode", choices=MODES, default="reply4xx")
    p.add_argument("--fail-times", type=int, default=0,
                   help="fire the fault only N times (0 = always)")
    p.add_argument("--fail-reply", help="reply text for reply4xx/reply5xx")
    p.add_argument("--delay-at", choices=STEPS)
    p.add_argument("--delay-seconds", type=float, default=0.0)
    p.add_argument("--starttls-cert", metavar="FILE",
                   help="PEM certificate (chain): offer STARTTLS with it")
    p.add_argument("--starttls-key", metavar="FILE",
                   help="PEM private key for --starttls-cert")
    args = p.parse_args(argv)
    if bool(args.starttls_cert) != bool(args.starttls_key):
        p.error("--starttls-cert and --starttls-key go together")
    if args.fail_reply and not re.match(r"^[45]\d\d[ -]", args.fail_reply):
        p.error("--fail-reply must start with a 4xx or 5xx code")
    return args


async def main_async(args):
    if args.maildir:
        os.makedirs(args.maildir, exist_ok=True)
    cfg = Config(args)
    journal = Journal(args.log)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkSMTP(cfg, journal, loop=loop),
                                      host=args.host, port=args.port)
    port = server.sockets[0].getsockname()[1]
    journal.write(0, "listening", host=args.host, port=port)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{port}\n")
        os.rename(tmp, args.port_file)
    print(f"sink: listening on {args.host}:{port} pid {os.getpid()}",
          file=sys.stderr, flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()
    journal.write(0, "shutdown", aborted_mid_data_total=journal.aborted_mid_data,
                  stored_total=journal.stored)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
