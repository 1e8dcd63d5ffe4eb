#!/usr/bin/env bash
# Proves scripts/signer: start a private Postfix + OpenDKIM + sink for
# brand.example, send one message with swaks, wait for it at the sink, verify
# its DKIM signature (d=brand.example) offline, check that a tampered copy and
# a non-signing-domain message do not verify, stop, and check every PID is gone.
# Run as root:  tests/peers/test_signer.sh      (KEEP=1 keeps the temp dir)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIGNER="$ROOT/scripts/signer"
VERIFY="$ROOT/tests/peers/dkim_verify.py"
PY=/usr/bin/python3
WAIT=${SIGNER_TEST_WAIT:-30}

DIR=$(mktemp -d /tmp/relaygate-signer-test.XXXXXX)
started=0
pass=0

step() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    for f in "$DIR/postfix.log" "$DIR/sink.log"; do
        [[ -s "$f" ]] && { printf -- '--- %s (tail) ---\n' "$f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}

cleanup() {
    if ((started)); then "$SIGNER" stop --dir "$DIR" >/dev/null 2>&1 || true; fi
    if ((pass)) && [[ -z "${KEEP:-}" ]]; then
        rm -rf "$DIR"
    else
        printf 'kept %s\n' "$DIR" >&2
    fi
}
trap cleanup EXIT

gone() {  # gone PID -> 0 if not running (zombies awaiting reaping count as gone)
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    st=${st##*) }
    [[ "${st:0:1}" == Z ]]
}

wait_for_messages() {  # wait_for_messages N -> 0 when the sink holds >= N
    local n=$1 deadline=$((SECONDS + WAIT))
    while (($(find "$SINK_DIR" -name '*.json' | wc -l) < n)); do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

[[ $EUID -eq 0 ]] || { echo "SKIP: needs root"; exit 77; }
command -v swaks >/dev/null || { echo "SKIP: swaks not installed"; exit 77; }

step "start signer in $DIR"
t0=$SECONDS
started=1
"$SIGNER" start --dir "$DIR" --domain brand.example || fail "signer start"
echo "start took $((SECONDS - t0))s"
# shellcheck disable=SC1091
. "$DIR/env"
for v in SIGNER_PORT SINK_PORT MILTER_PORT SINK_DIR KEY_DIR POSTFIX_CONFIG_DIR DKIM_TXT_BRAND_EXAMPLE; do
    [[ -n "${!v:-}" ]] || fail "env lacks $v"
done
[[ -s "$DKIM_TXT_BRAND_EXAMPLE" ]] || fail "no TXT record file $DKIM_TXT_BRAND_EXAMPLE"
"$SIGNER" status --dir "$DIR" || fail "status says not running"

step "send a brand.example message to 127.0.0.1:$SIGNER_PORT"
swaks --server "127.0.0.1:$SIGNER_PORT" --helo client.test \
    --from news@brand.example --to customer@example.net \
    --header "From: Brand News <news@brand.example>" \
    --header "Subject: signer test" --body "Hello from brand." \
    >"$DIR/swaks.out" 2>&1 || { cat "$DIR/swaks.out" >&2; fail "swaks"; }
grep -q '^<-  250 2.0.0 Ok: queued as ' "$DIR/swaks.out" || fail "no 250 queued reply"

step "wait (max ${WAIT}s) for it in $SINK_DIR"
wait_for_messages 1 || fail "message did not reach the sink within ${WAIT}s"
msg=$(find "$SINK_DIR" -name '*.eml' | head -n 1)
meta=${msg%.eml}.json
echo "arrived: $msg"
"$PY" - "$meta" <<'EOF' || fail "sidecar envelope wrong"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["mail_from"] == "news@brand.example", m
assert m["rcpt_tos"] == ["customer@example.net"], m
assert m["client"]["addr"] == "127.0.0.1", m
EOF

step "verify the DKIM signature"
out=$("$PY" "$VERIFY" --message "$msg" --key-dir "$KEY_DIR" --domain brand.example) ||
    fail "dkim_verify: $out"
echo "$out"
"$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["signed"] and r["valid"] and r["d"]=="brand.example", r' "$out" ||
    fail "unexpected verify result"

step "a tampered copy must not verify"
sed 's/Hello from brand\./Hello from attacker./' "$msg" >"$DIR/tampered.eml"
if out=$("$PY" "$VERIFY" --message "$DIR/tampered.eml" --key-dir "$KEY_DIR"); then
    fail "tampered message verified: $out"
fi
echo "$out"

step "mail From a domain without a key is relayed unsigned"
swaks --server "127.0.0.1:$SIGNER_PORT" --helo client.test \
    --from someone@other.example --to customer@example.net \
    --header "From: <someone@other.example>" >"$DIR/swaks2.out" 2>&1 ||
    { cat "$DIR/swaks2.out" >&2; fail "swaks (other.example)"; }
wait_for_messages 2 || fail "second message did not reach the sink"
msg2=$(grep -l '"someone@other.example"' "$SINK_DIR"/*.json)
if out=$("$PY" "$VERIFY" --message "${msg2%.json}.eml" --key-dir "$KEY_DIR"); then
    fail "other.example message carries a valid signature: $out"
fi
echo "$out"
"$PY" -c 'import json,sys; assert not json.loads(sys.argv[1])["signed"]' "$out" ||
    fail "other.example message is signed"

queued=$(find "$POSTFIX_QUEUE_DIR"/{incoming,active,deferred,hold,maildrop} -type f | wc -l)
((queued == 0)) || fail "$queued messages left in the Postfix queue"

step "stop and check that every process is gone"
mapfile -t pids < <(
    echo "$POSTFIX_PID"
    echo "$OPENDKIM_PID"
    echo "$SINK_PID"
    grep -lszxF "MAIL_CONFIG=$POSTFIX_CONFIG_DIR" /proc/[0-9]*/environ |
        sed -e 's|^/proc/||' -e 's|/environ$||'
)
echo "pids before stop: ${pids[*]}"
((${#pids[@]} >= 4)) || fail "expected master, opendkim, sink and postfix children"
t0=$SECONDS
"$SIGNER" stop --dir "$DIR" || fail "signer stop"
started=0
echo "stop took $((SECONDS - t0))s"
for p in "${pids[@]}"; do
    gone "$p" || fail "pid $p still running: $(tr '\0' ' ' <"/proc/$p/cmdline")"
done
left=$(grep -lszxF "MAIL_CONFIG=$POSTFIX_CONFIG_DIR" /proc/[0-9]*/environ || true)
for f in $left; do
    p=${f#/proc/}
    p=${p%/environ}
    gone "$p" || fail "postfix process $p of this instance still running"
done
for port in "$SIGNER_PORT" "$SINK_PORT" "$MILTER_PORT"; do
    if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$port" 2>/dev/null; then
        fail "port $port still accepts connections"
    fi
done

pass=1
echo "PASS: signer relayed and signed d=brand.example; all processes stopped"
