#!/usr/bin/env bash
# The Debian package, installed on this machine (ctest: package.deb).
#
#   tests/package/test_deb.sh BUILD_DIR
#
# 1. cpack builds relaygate_<version>_<arch>.deb from BUILD_DIR; lintian
#    reports no error or warning; Depends (dpkg-shlibdeps) names the
#    libraries the binary links.
# 2. `apt-get install ./relaygate_*.deb`: files, the relaygate system user,
#    its state and log directories, the conffiles (dpkg-query ${Conffiles}),
#    the man pages (man --warnings, lexgrog), `systemd-analyze verify` and
#    `systemd-analyze security --offline=yes` (exposure <= 2.0) on the
#    installed unit, TimeoutStopSec against the packaged drain timeout and
#    LimitNOFILE against max_connections.
# 3. The unit's ExecStart command line, run as the relaygate user with the
#    unit's capabilities (setpriv; no systemd as PID 1 here), a NOTIFY_SOCKET
#    bound by the test and the packaged config (ports changed in the
#    conffile, the listener on a privileged port) in front of the quickstart
#    signer (scripts/signer: Postfix + OpenDKIM): READY=1, one accepted and
#    DKIM-signed and one refused message (swaks), both in /var/log/relaygate/audit.log, which the packaged
#    logrotate snippet rotates under the running gateway; log lines carry
#    their journal priority; SIGHUP gives RELOADING=1 then READY=1; SIGTERM
#    gives STOPPING=1 and a clean exit.
# 4. Upgrade to the same build with a higher version: the edited conffile
#    is kept. Then remove (conffiles stay) and purge (conffiles, state, logs
#    and the user gone).
#
# Needs root (exits 77, skipped, otherwise, or when a relaygate package is
# already installed: this test would replace it). Purges the package on
# exit, also on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:?usage: test_deb.sh BUILD_DIR}" && pwd)"
SECURITY_MAX="${RELAYGATE_SECURITY_MAX:-2.0}"   # exposure threshold ("OK" is below 2.0)

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (installs a package)"
for tool in cpack lintian dpkg-deb dpkg-query apt-get systemd-analyze swaks setpriv man lexgrog \
    curl logrotate prlimit /usr/bin/python3 /usr/sbin/postfix /usr/sbin/opendkim; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool missing (scripts/setup installs it)"
done
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || skip "python3-aiosmtpd missing"
if dpkg-query -W -f='${Status}' relaygate 2>/dev/null | grep -q 'installed\|config-files'; then
  skip "a relaygate package is already installed here; this test would replace and purge it"
fi

WORK="$(mktemp -d /tmp/relaygate-deb.XXXXXX)"
chmod 0755 "$WORK"   # the relaygate user reaches the notify socket in it
PIDS=()
PASSED=0
SIGNER_STARTED=0
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ "$SIGNER_STARTED" -eq 0 ] || "$ROOT/scripts/signer" stop --dir "$WORK/signer" >/dev/null 2>&1 || true
  if dpkg-query -W -f='${Status}' relaygate 2>/dev/null | grep -q 'installed\|config-files'; then
    echo "cleanup: purging relaygate"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq relaygate >/dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/relaygate.log "$WORK"/notify.log "$WORK"/signer.log "$WORK"/signer/postfix.log; do
      [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

ok() { echo "ok $*"; PASSED=$((PASSED + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
# wait_for <seconds> <command...>: polls every 0.1 s.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
    >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; die "apt-get install $*"; }
}

# ---- 1. build and lint ------------------------------------------------------
cmake --build "$BUILD" --target relaygate relaygate_package_files >/dev/null
(cd "$BUILD" && cpack -G DEB -B "$WORK/v1" >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log"; die cpack; }
DEB="$(ls "$WORK"/v1/relaygate_*.deb)"
VERSION="$(dpkg-deb -f "$DEB" Version)"
ok "cpack built $(basename "$DEB")"

lintian --info --display-info --show-overrides "$DEB" >"$WORK/lintian.log" 2>&1 || true
grep -v '^N:' "$WORK/lintian.log" | sed 's/^/    lintian: /' | grep -v 'root privileges' || true
if grep -E '^[EW]: ' "$WORK/lintian.log"; then die "lintian reports errors or warnings"; fi
ok "lintian: no errors or warnings"

DEPENDS="$(dpkg-deb -f "$DEB" Depends)"
for dep in adduser libc6 libssl3 libsystemd0 libldns3 libidn2-0 libprometheus-cpp-core1.0; do
  [[ ", $DEPENDS," == *", $dep"[\ ,]* ]] || die "Depends lacks $dep: $DEPENDS"
done
ok "Depends from dpkg-shlibdeps: $DEPENDS"

# ---- 2. install -------------------------------------------------------------
apt_install "$DEB"
[ "$(dpkg-query -W -f='${Version}' relaygate)" = "$VERSION" ] || die "not installed"
ok "apt-get install $(basename "$DEB")"

for f in /usr/bin/relaygate /lib/systemd/system/relaygate.service /etc/relaygate/config.json \
    /etc/relaygate/policy.json /etc/logrotate.d/relaygate /usr/share/doc/relaygate/copyright \
    /usr/share/doc/relaygate/changelog.gz /usr/share/man/man8/relaygate.8.gz \
    /usr/share/man/man5/relaygate.json.5.gz /usr/share/man/man5/relaygate-policy.5.gz \
    /usr/share/relaygate/schema/policy.schema.json \
    /usr/share/doc/relaygate/examples/quickstart.json; do
  [ -f "$f" ] || die "missing $f"
done
relaygate --version | grep -q "^relaygate " || die "relaygate --version"
ok "files installed; $(relaygate --version)"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd relaygate) || die "no relaygate user"
[ "$uid" -lt 1000 ] || die "relaygate is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || die "relaygate's shell is $shell"
[ "$home" = /var/lib/relaygate ] || die "relaygate's home is $home"
getent group relaygate >/dev/null || die "no relaygate group"
for d in /var/lib/relaygate /var/log/relaygate; do
  [ "$(stat -c '%U:%G %a' "$d")" = "relaygate:relaygate 750" ] || die "$d is $(stat -c '%U:%G %a' "$d")"
done
ok "system user relaygate (uid $uid), /var/lib/relaygate and /var/log/relaygate are its own"

conffiles="$(dpkg-query -W -f='${Conffiles}\n' relaygate | awk 'NF {print $1}' | sort | tr '\n' ' ')"
[ "$conffiles" = "/etc/logrotate.d/relaygate /etc/relaygate/config.json /etc/relaygate/policy.json " ] \
  || die "conffiles: $conffiles"
ok "conffiles: $conffiles"

for page in relaygate.8 relaygate.json.5 relaygate-policy.5; do
  f="$(man -w "${page%.*}" "${page##*.}" 2>/dev/null || true)"
  [ -n "$f" ] || f="$(man -w "${page##*.}" "${page%.*}")"
  warnings="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$f" 2>&1 >/dev/null)"
  [ -z "$warnings" ] || die "man --warnings $f: $warnings"
  lexgrog "$f" >/dev/null || die "lexgrog $f"
done
ok "man pages: man --warnings and lexgrog clean"

UNIT=/lib/systemd/system/relaygate.service
systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log"; die "systemd-analyze verify"; }
if [ -s "$WORK/verify.log" ]; then cat "$WORK/verify.log"; die "systemd-analyze verify has complaints"; fi
ok "systemd-analyze verify $UNIT"
systemd-analyze security --offline=yes --no-pager "$UNIT" >"$WORK/security.log" 2>&1 || true
score="$(sed -n 's/.*Overall exposure level for relaygate.service: \([0-9.]*\) .*/\1/p' "$WORK/security.log")"
[ -n "$score" ] || { cat "$WORK/security.log"; die "no exposure score"; }
awk -v s="$score" -v m="$SECURITY_MAX" 'BEGIN {exit !(s <= m)}' \
  || { grep '✗' "$WORK/security.log"; die "exposure $score > $SECURITY_MAX"; }
ok "systemd-analyze security: exposure $score (<= $SECURITY_MAX)"

unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -1; }
# shellcheck disable=SC2016 # $MAINPID is systemd's, literally in the unit
for kv in Type=notify User=relaygate KillSignal=SIGTERM NoNewPrivileges=yes ProtectSystem=strict \
    ProtectHome=yes PrivateTmp=yes CapabilityBoundingSet=CAP_NET_BIND_SERVICE \
    AmbientCapabilities=CAP_NET_BIND_SERVICE StateDirectory=relaygate LogsDirectory=relaygate \
    ConfigurationDirectory=relaygate 'ExecReload=/bin/kill -HUP $MAINPID' \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' SystemCallFilter=@system-service; do
  grep -qxF "$kv" "$UNIT" || die "$UNIT lacks $kv"
done
# SIGTERM starts the drain: it must end (drain_timeout_seconds, then the
# relay QUITs, upstream.quit_seconds) before systemd's SIGKILL.
read -r drain quit < <(/usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(c.get("drain_timeout_seconds", 30), c.get("upstream", {}).get("quit_seconds", 5))' \
  /etc/relaygate/config.json)
stop="$(unit_value TimeoutStopSec)"
[ "${stop%s}" -gt $((drain + quit)) ] || die "TimeoutStopSec=$stop <= drain $drain + quit $quit"
# LimitNOFILE holds the packaged max_connections: the gateway's own check
# under that limit has no RLIMIT_NOFILE warning.
nofile="$(unit_value LimitNOFILE)"
prlimit --nofile="$nofile:$nofile" relaygate check --config /etc/relaygate/config.json >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log"; die "relaygate check --config (packaged)"; }
if grep -q RLIMIT_NOFILE "$WORK/check.log"; then cat "$WORK/check.log"; die "LimitNOFILE=$nofile too low"; fi
ok "unit: Type=notify, hardening, TimeoutStopSec=$stop > $drain+$quit s drain, LimitNOFILE=$nofile enough"

# ---- 3. run the packaged command line ---------------------------------------
free_port() {
  /usr/bin/python3 -c 'import socket,sys
lo, hi = (int(a) for a in sys.argv[1:3])
for p in range(lo, hi):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()' "$1" "$2"
}
SMTP_PORT="$(free_port 900 1000)"     # privileged: only CAP_NET_BIND_SERVICE lets it bind
ADMIN_PORT="$(free_port 20000 40000)"
if [ -z "$SMTP_PORT" ] || [ -z "$ADMIN_PORT" ]; then die "no free port"; fi

# The quickstart signer (scripts/signer: Postfix + OpenDKIM signing for
# example.com, delivering to a sink): what the package sits in front of.
"$ROOT/scripts/signer" start --dir "$WORK/signer" --domain example.com >"$WORK/signer.log" 2>&1 \
  || { cat "$WORK/signer.log"; die "scripts/signer start"; }
SIGNER_STARTED=1
# shellcheck disable=SC1091
. "$WORK/signer/env"
MAIL="$SINK_DIR"

# The operator's edit of the conffile (kept across the upgrade below).
/usr/bin/python3 - "$SMTP_PORT" "$SIGNER_PORT" "$ADMIN_PORT" <<'EOF'
import json, sys
path = "/etc/relaygate/config.json"
c = json.load(open(path))
c["listeners"][0].update(address="127.0.0.1", port=int(sys.argv[1]))
c["upstream"]["port"] = int(sys.argv[2])
c["admin"]["port"] = int(sys.argv[3])
open(path, "w").write(json.dumps(c, indent=2) + "\n")
EOF

# systemd's side of sd_notify: a datagram socket, every message one line.
/usr/bin/python3 - "$WORK/notify" "$WORK/notify.log" <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode().replace("\n", " ") + "\n")
EOF
PIDS+=($!)
wait_for 10 test -S "$WORK/notify" || die "notify socket"

# As systemd would: stderr is "the journal" (JOURNAL_STREAM names its
# device and inode), so each log line carries its syslog priority.
: >"$WORK/relaygate.log"
JOURNAL_STREAM="$(stat -c '%d:%i' "$WORK/relaygate.log")"
read -r -a EXEC_START <<<"$(unit_value ExecStart)"
setpriv --reuid=relaygate --regid=relaygate --init-groups --no-new-privs \
  --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
  --bounding-set=-all,+net_bind_service \
  env NOTIFY_SOCKET="$WORK/notify" JOURNAL_STREAM="$JOURNAL_STREAM" "${EXEC_START[@]}" \
  >>"$WORK/relaygate.log" 2>&1 &
GATEWAY=$!
PIDS+=("$GATEWAY")
wait_for 30 grep -q '^READY=1' "$WORK/notify.log" || die "no READY=1 from the gateway"
[ "$(stat -c %U "/proc/$GATEWAY")" = relaygate ] || die "gateway not running as relaygate"
curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || die "/readyz"
grep -q '^<6>{.*"event":"started"' "$WORK/relaygate.log" || die "no <6> journal priority on the log"
ok "ExecStart as relaygate on privileged port $SMTP_PORT: READY=1, /readyz 200, <6>-prefixed log"

send() {  # send <from>: prints swaks' transcript
  swaks --server 127.0.0.1 --port "$SMTP_PORT" --from "$1" --to bob@example.net \
    --header "Subject: package test from $1" --timeout 30 2>&1 || true
}
send alice@example.com >"$WORK/accepted.txt"
grep -Eq '^<- *250 2.0.0 Ok: ([0-9]+ bytes )?queued as ' "$WORK/accepted.txt" \
  || { cat "$WORK/accepted.txt"; die "alice@example.com was not accepted"; }
wait_for 30 bash -c "ls '$MAIL'/*.json >/dev/null 2>&1" || die "accepted message not at the signer's sink"
grep -q '^DKIM-Signature: .*d=example.com' "$MAIL"/*.eml || die "the relayed message was not DKIM-signed by the signer"
send mallory@partner.example >"$WORK/refused.txt"
grep -q '^<\*\* *550 5.7.1' "$WORK/refused.txt" || { cat "$WORK/refused.txt"; die "mallory@partner.example not refused"; }
[ "$(find "$MAIL" -name '*.json' | wc -l)" -eq 1 ] || die "the refused message reached the sink"
AUDIT=/var/log/relaygate/audit.log
wait_for 10 grep -q '"reason":"envelope_domain_unauthorized"' "$AUDIT" || die "refusal not in $AUDIT"
grep -q '"reason":"accepted"' "$AUDIT" || die "acceptance not in $AUDIT"
[ "$(stat -c %U "$AUDIT")" = relaygate ] || die "$AUDIT not owned by relaygate"
ok "swaks: example.com accepted, signed by the quickstart signer (Postfix + OpenDKIM), partner.example refused 550 5.7.1; both in $AUDIT"

# The packaged logrotate snippet, forced: copytruncate keeps the gateway's
# O_APPEND descriptor, so the next line starts the truncated file.
logrotate -f -s "$WORK/logrotate.state" /etc/logrotate.d/relaygate >"$WORK/logrotate.log" 2>&1 \
  || { cat "$WORK/logrotate.log"; die "logrotate /etc/logrotate.d/relaygate"; }
grep -q '"reason":"accepted"' "$AUDIT.1" || die "logrotate: no $AUDIT.1 with the old lines"
send alice@example.com >"$WORK/accepted2.txt"
wait_for 10 grep -q '"reason":"accepted"' "$AUDIT" || die "no audit line after the rotation"
[ "$(head -c 1 "$AUDIT")" = "{" ] || die "$AUDIT does not start with a line after the rotation (a hole?)"
ok "logrotate -f: $AUDIT.1 holds the old lines, the gateway writes on at the start of $AUDIT"

kill -HUP "$GATEWAY"
wait_for 20 bash -c "grep -q '^RELOADING=1' '$WORK/notify.log' && [ \$(grep -c '^READY=1' '$WORK/notify.log') -ge 2 ]" \
  || die "SIGHUP: no RELOADING=1 then READY=1"
ok "SIGHUP (ExecReload): RELOADING=1, then READY=1"

kill -TERM "$GATEWAY"
wait_for 20 grep -q '^STOPPING=1' "$WORK/notify.log" || die "SIGTERM: no STOPPING=1"
rc=0
wait "$GATEWAY" || rc=$?
[ "$rc" -eq 0 ] || die "gateway exited $rc after SIGTERM"
grep -q '"drain_finished"' "$WORK/relaygate.log" || die "no drain_finished"
ok "SIGTERM (KillSignal): STOPPING=1, drained, exit 0"

# ---- 4. upgrade, remove, purge ----------------------------------------------
NEW_VERSION="$VERSION+upgrade1"
(cd "$BUILD" && cpack -G DEB -B "$WORK/v2" -D CPACK_DEBIAN_PACKAGE_VERSION="$NEW_VERSION" \
  >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log"; die "cpack (upgrade)"; }
apt_install "$(ls "$WORK"/v2/relaygate_*.deb)"
[ "$(dpkg-query -W -f='${Version}' relaygate)" = "$NEW_VERSION" ] || die "not upgraded"
grep -q "\"port\": $SMTP_PORT" /etc/relaygate/config.json || die "upgrade replaced the edited conffile"
[ -f "$AUDIT" ] || die "upgrade lost the audit log"
getent passwd relaygate >/dev/null || die "upgrade lost the user"
setpriv --reuid=relaygate --regid=relaygate --init-groups \
  relaygate check --config /etc/relaygate/config.json >/dev/null || die "check after upgrade"
ok "upgrade $VERSION -> $NEW_VERSION keeps the edited config.json, the audit log and the user"

DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq relaygate >/dev/null 2>&1 || die "apt-get remove"
[ ! -e /usr/bin/relaygate ] || die "remove left /usr/bin/relaygate"
dpkg-query -W -f='${Status}' relaygate | grep -q 'config-files' || die "remove: not config-files"
[ -f /etc/relaygate/config.json ] || die "remove deleted the conffiles"
ok "apt-get remove: binary gone, conffiles kept"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq relaygate >/dev/null 2>&1 || die "apt-get purge"
for p in /etc/relaygate /etc/logrotate.d/relaygate /var/lib/relaygate /var/log/relaygate \
    /lib/systemd/system/relaygate.service /etc/systemd/system/multi-user.target.wants/relaygate.service; do
  [ ! -e "$p" ] || die "purge left $p"
done
! getent passwd relaygate >/dev/null || die "purge left the relaygate user"
! getent group relaygate >/dev/null || die "purge left the relaygate group"
! dpkg-query -W -f='${Status}' relaygate 2>/dev/null | grep -q 'installed\|config-files' || die "still known to dpkg"
ok "apt-get purge: conffiles, state, logs, user and group gone"

echo "package.deb: $PASSED checks passed"
