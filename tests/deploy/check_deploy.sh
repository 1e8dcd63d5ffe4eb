#!/usr/bin/env bash
# Offline checks of everything under deploy/ (ctest: deploy.manifests).
#
#   tests/deploy/check_deploy.sh RELAYGATE_BINARY
#
# 1. Dockerfile: lint rules (deploy/tools/check-dockerfile.mjs), OCI labels,
#    the REVISION build-arg and deploy/release.cmake (the package's options),
#    and the runtime package list proven complete for the built binary: every
#    library ldd resolves belongs (dpkg -S) to a listed package or to the
#    base image's libc6/libstdc++6/libgcc-s1, and, as root, the binary runs
#    in a chroot holding only those packages' files. The Debian package's
#    unit: `systemd-analyze security --offline=yes` exposure <= 2.0.
# 2. Kubernetes: `kubectl kustomize` renders both overlays and the
#    standalone one with the Redis component (overlays/standalone-redis)
#    (where kubectl exists; otherwise a notice and per-file checks), each
#    object validated against the Kubernetes and prometheus-operator
#    schemas (npm kubernetes-models, pinned in deploy/tools/package-lock.json)
#    plus relaygate's deployment rules, the operator's `release` label on
#    the ServiceMonitor and PrometheusRule only, and the Grafana sidecar's
#    dashboard ConfigMap (label grafana_dashboard "1", exactly the
#    dashboard JSON), credentials_file a read-only directory mount of the
#    Secret relaygate-credentials (no subPath) and no password_hash in the
#    policy ConfigMap; the rendered policy with the Secret's credentials
#    passes `relaygate check` and the rendered config is accepted by the real
#    `relaygate run` (with Redis: against a real redis-server started with
#    the manifest's arguments).
# 3. Prometheus: promtool check rules / test rules; the PrometheusRule CR
#    carries exactly the plain file's groups; every runbook_url on the
#    documented base and naming a heading of deploy/README.md;
#    RelaygateTargetDown with absent(), tested absent / down / up.
# 4. Grafana: every dashboard query through `promtool check rules`.
# 5. A real scrape: relaygate (quickstart policy, a TLS certificate) in
#    front of smtp-sink, two SMTP sessions, then every metric and label the
#    rules and the dashboard name must be in /metrics, and the certificate
#    expiry gauge equal to the certificate's notAfter.
# 6. yamllint on deploy/, shellcheck on scripts/, deploy/ (with the Debian
#    maintainer scripts) and tests/.
#
# Needs node + npm (npm ci runs once into deploy/tools/node_modules), and
# the Debian packages of scripts/setup (prometheus, yamllint, shellcheck,
# postfix for smtp-sink, openssl, curl). Prints "N passed, N failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEPLOY="$ROOT/deploy"
TOOLS="$DEPLOY/tools"
RELAYGATE="${1:-$ROOT/build/gateway/relaygate}"
DASH="$DEPLOY/grafana/relaygate-dashboard.json"

PASSED=0
FAILED=0
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1"; FAILED=$((FAILED + 1)); }
notice() { echo "NOTICE: $*"; }
# step <name> <command...>: runs the command, output shown on failure only.
step() {
  local name="$1"; shift
  local log="$WORK/step.log"
  if "$@" >"$log" 2>&1; then
    pass "$name"
    grep -E '^(NOTICE|ok)' "$log" || true
  else
    fail "$name"
    sed 's/^/    /' "$log" | tail -60
  fi
}

# ---- prerequisites ----------------------------------------------------------
missing=()
for tool in node npm promtool yamllint shellcheck openssl curl /usr/sbin/smtp-sink /usr/bin/python3 dpkg ldd \
    redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check_deploy: missing tools: ${missing[*]}" >&2
  echo "check_deploy: run scripts/setup (Debian packages); node and npm come with the machine" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [ ! -x "$RELAYGATE" ]; then
  echo "check_deploy: relaygate binary not found: $RELAYGATE" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f "$TOOLS/node_modules/.package-lock.json" ] \
   || [ "$TOOLS/package-lock.json" -nt "$TOOLS/node_modules/.package-lock.json" ]; then
  echo "check_deploy: npm ci in deploy/tools"
  if ! (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1; then
    cat "$WORK/npm.log"
    fail "npm ci (deploy/tools/package-lock.json)"
    echo "$PASSED passed, $FAILED failed"
    exit 1
  fi
fi
pass "deploy/tools node_modules (npm ci, pinned by package-lock.json)"

# ---- 1. Dockerfile ------------------------------------------------------------
step "Dockerfile lint rules" node "$TOOLS/check-dockerfile.mjs" "$DEPLOY/Dockerfile"

# The image builds with the Debian package's options (deploy/release.cmake,
# which scripts/package uses too), takes its revision as a build argument
# (the context has no .git) and says what it is in OCI labels whose values
# are the package's: project version, source URL, license.
# tests/deploy/dockerfile_build.sh runs that build and checks --version.
check_image_metadata() {
  local df="$DEPLOY/Dockerfile" bad=0 run version source label
  run="$(awk '/^FROM .* AS runtime/{exit} /^RUN cmake /{on=1} on{print} on && !/\\$/{exit}' "$df")"
  # shellcheck disable=SC2016 # ${REVISION} is the Dockerfile's, literally
  grep -qF -- '-DRELAYGATE_REVISION="${REVISION}"' <<<"$run" \
    || { echo "the build stage's cmake must pass -DRELAYGATE_REVISION=\"\${REVISION}\""; bad=1; }
  grep -qF -- 'cmake -C deploy/release.cmake ' <<<"$run" \
    || { echo "the build stage's cmake must configure with -C deploy/release.cmake"; bad=1; }
  grep -qF 'cmake -C deploy/release.cmake ' "$ROOT/scripts/package" \
    || { echo "scripts/package must configure with -C deploy/release.cmake"; bad=1; }
  [ "$(grep -c '^ARG REVISION=' "$df")" -eq 2 ] || { echo "ARG REVISION needed in both stages"; bad=1; }
  version="$(sed -n 's/^project(relaygate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")"
  source="$(sed -n 's/^set(RELAYGATE_SOURCE_URL "\([^"]*\)".*/\1/p' "$ROOT/deploy/debian/package.cmake")"
  grep -qx "ARG VERSION=$version" "$df" || { echo "ARG VERSION must default to the project version $version"; bad=1; }
  grep -q 'Apache License' "$ROOT/LICENSE" || { echo "LICENSE is not the Apache License"; bad=1; }
  # shellcheck disable=SC2016 # ${VERSION} and ${REVISION} are the Dockerfile's
  for label in "org.opencontainers.image.source=\"$source\"" 'org.opencontainers.image.version="${VERSION}"' \
      'org.opencontainers.image.revision="${REVISION}"' 'org.opencontainers.image.licenses="Apache-2.0"'; do
    if grep -qF "$label" "$df"; then echo "ok   LABEL $label"; else echo "missing LABEL $label"; bad=1; fi
  done
  if command -v hadolint >/dev/null 2>&1; then
    hadolint "$df" || bad=1
  else
    echo "NOTICE: hadolint not installed (not packaged for Debian 12); check-dockerfile.mjs has its rules"
  fi
  return "$bad"
}
step "Dockerfile: OCI labels, REVISION build-arg, the package's release options" check_image_metadata

mapfile -t RUNTIME_PKGS < <(node "$TOOLS/check-dockerfile.mjs" --runtime-packages "$DEPLOY/Dockerfile")
BASE_PKGS=(libc6 libstdc++6 libgcc-s1)
# Sanitizer builds (build-asan) link their runtimes; the image is a Release
# build, so these are allowed here and copied into the chroot.
SANITIZER_RE='^(libasan[0-9]*|libubsan[0-9]*|liblsan[0-9]*|libtsan[0-9]*)$'

# dpkg -S for a library path; Debian 12 is merged-/usr, so try both spellings.
owner_of() {
  local path="$1" real out
  real="$(readlink -f "$path")"
  for p in "$path" "$real" "${real/#\/usr\/lib/\/lib}" "${path/#\/lib/\/usr\/lib}"; do
    if out="$(dpkg -S "$p" 2>/dev/null)"; then
      out="${out%%:*}"
      echo "${out%%,*}"
      return 0
    fi
  done
  return 1
}

check_runtime_libs() {
  local allowed=" ${RUNTIME_PKGS[*]} ${BASE_PKGS[*]} " bad=0 lib path pkg
  echo "runtime packages from the Dockerfile: ${RUNTIME_PKGS[*]}"
  [ ${#RUNTIME_PKGS[@]} -gt 0 ] || { echo "no runtime packages parsed"; return 1; }
  if ldd "$RELAYGATE" | grep -q 'not found'; then
    ldd "$RELAYGATE" | grep 'not found'
    return 1
  fi
  : >"$WORK/lib-packages"
  while read -r lib path; do
    if ! pkg="$(owner_of "$path")"; then
      echo "$lib ($path): no Debian package owns it"; bad=1; continue
    fi
    pkg="${pkg%%:*}"
    echo "$pkg" >>"$WORK/lib-packages"
    if [[ "$allowed" == *" $pkg "* ]]; then
      echo "ok   $lib -> $pkg"
    elif [[ "$pkg" =~ $SANITIZER_RE ]]; then
      echo "NOTICE: $lib -> $pkg (sanitizer build; not in the Release image)"
    else
      echo "MISSING $lib -> $pkg: add $pkg to the runtime stage of deploy/Dockerfile"; bad=1
    fi
  done < <(ldd "$RELAYGATE" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
  return "$bad"
}
step "Dockerfile runtime packages cover ldd of $(basename "$RELAYGATE")" check_runtime_libs

# The binary in a chroot with only the files of the listed packages.
chroot_proof() {
  local root="$WORK/rootfs" pkg f dir
  mkdir -p "$root"
  # Mirror merged-/usr top-level symlinks (/lib -> usr/lib, ...).
  for d in lib lib64 lib32 libx32 bin sbin; do
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
  done
  local pkgs=("${RUNTIME_PKGS[@]}" "${BASE_PKGS[@]}")
  while read -r pkg; do
    [[ "$pkg" =~ $SANITIZER_RE ]] && pkgs+=("$pkg")
  done < <(sort -u "$WORK/lib-packages" 2>/dev/null)
  for pkg in "${pkgs[@]}"; do
    dpkg -L "$pkg" >/dev/null 2>&1 || { echo "package $pkg is not installed here"; return 1; }
    while read -r f; do
      [ -f "$f" ] || [ -L "$f" ] || continue
      case "$f" in */share/doc/*|*/share/man/*|*/share/locale/*|*/share/lintian/*) continue ;; esac
      dir="$(readlink -f "$(dirname "$f")")"
      mkdir -p "$root$dir"
      cp -P "$f" "$root$dir/" 2>/dev/null || true
    done < <(dpkg -L "$pkg")
  done
  mkdir -p "$root/usr/local/bin" "$root/etc/relaygate"
  cp "$RELAYGATE" "$root/usr/local/bin/relaygate"
  cp "$ROOT/policy/examples/quickstart.json" "$root/etc/relaygate/policy.json"
  echo "rootfs: $(du -sh "$root" | cut -f1) from ${pkgs[*]}"
  chroot "$root" /usr/local/bin/relaygate check --policy /etc/relaygate/policy.json
}
if ldd "$RELAYGATE" | grep -q libasan; then
  # The sanitizer runtime reads its options and thread list from /proc,
  # which the chroot lacks. The image ships the Release binary, and the
  # normal build's run of this test does the chroot proof for it.
  notice "sanitizer build: chroot proof runs in the normal build's run of this test"
elif [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null; then
  step "relaygate runs in a chroot of only the runtime packages' files" chroot_proof
else
  notice "not root: chroot proof of the runtime packages skipped (dpkg -S check above still ran)"
fi

# The Debian package's unit, offline (tests/package/test_deb.sh checks the
# installed one, as root): exposure at most 2.0 ("OK").
unit_security() {
  local out score
  out="$(systemd-analyze security --offline=yes --no-pager "$DEPLOY/debian/relaygate.service" 2>&1)" || true
  score="$(sed -n 's/.*Overall exposure level for relaygate.service: \([0-9.]*\) .*/\1/p' <<<"$out")"
  [ -n "$score" ] || { echo "$out"; return 1; }
  echo "ok: exposure $score"
  awk -v s="$score" 'BEGIN {exit !(s <= 2.0)}' || { grep '✗' <<<"$out"; return 1; }
}
if command -v systemd-analyze >/dev/null 2>&1; then
  step "deploy/debian/relaygate.service: systemd-analyze security <= 2.0" unit_security
else
  notice "systemd-analyze missing: the unit's security score is checked by package.deb only"
fi

# ---- 2. Kubernetes -----------------------------------------------------------
K8S="$DEPLOY/k8s"
# Without a renderer: what kustomize would add, read from the
# kustomizations (the rendered checks are in validate-k8s.mjs).
declared_unrendered() {
  node --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { createRequire } from "node:module";
    const require = createRequire(process.argv[1] + "/");
    const YAML = require("yaml");
    const [, , k8s, grafana] = process.argv;
    const base = YAML.parse(readFileSync(k8s + "/base/kustomization.yaml", "utf8"));
    const bad = [];
    const rel = (base.patches ?? []).filter((p) => p.target?.group === "monitoring.coreos.com" && !p.target?.kind)
      .flatMap((p) => YAML.parse(p.patch ?? "[]"))
      .filter((op) => op.op === "add" && op.path === "/metadata/labels/release" && op.value);
    if (rel.length !== 1) bad.push("base: one patch adding /metadata/labels/release to group monitoring.coreos.com expected");
    if (!(base.resources ?? []).includes("../../grafana")) bad.push("base: resource ../../grafana missing");
    // The SASL credentials: the Secret, mounted as a directory where every
    // shipped config.json points credentials_file.
    if (!(base.resources ?? []).includes("secret-credentials.yaml")) bad.push("base: resource secret-credentials.yaml missing");
    const sec = YAML.parse(readFileSync(k8s + "/base/secret-credentials.yaml", "utf8"));
    if (sec?.kind !== "Secret" || sec.metadata?.name !== "relaygate-credentials" || sec.type !== "Opaque")
      bad.push("base/secret-credentials.yaml: Secret relaygate-credentials of type Opaque expected");
    const pod = YAML.parse(readFileSync(k8s + "/base/deployment.yaml", "utf8")).spec.template.spec;
    const rg = pod.containers.find((c) => c.name === "relaygate");
    for (const cf of ["base", "overlays/standalone", "components/redis"]) {
      const want = JSON.parse(readFileSync(k8s + "/" + cf + "/config.json", "utf8")).credentials_file;
      const m = (rg.volumeMounts ?? []).find((x) => x.mountPath === want);
      const v = m && (pod.volumes ?? []).find((x) => x.name === m.name);
      if (!want || !m || m.subPath || !m.readOnly || v?.secret?.secretName !== "relaygate-credentials")
        bad.push(cf + "/config.json: credentials_file " + want + " must be the read-only directory mount " +
          "(no subPath) of Secret relaygate-credentials in base/deployment.yaml");
    }
    const g = YAML.parse(readFileSync(grafana + "/kustomization.yaml", "utf8"));
    const gen = (g.configMapGenerator ?? []).find((c) => c.name === "relaygate-dashboard");
    if (!gen || !(gen.files ?? []).includes("relaygate-dashboard.json") ||
        gen.options?.labels?.grafana_dashboard !== "1" || gen.options?.disableNameSuffixHash !== true)
      bad.push("grafana: configMapGenerator relaygate-dashboard from relaygate-dashboard.json, " +
        "label grafana_dashboard \"1\", disableNameSuffixHash expected");
    for (const b of bad) console.error(b);
    if (!bad.length) console.log("ok: release: " + rel[0].value + "; dashboard ConfigMap generator; credentials Secret mount");
    process.exit(bad.length ? 1 : 0);
  ' "$TOOLS/node_modules" "$K8S" "$DEPLOY/grafana"
}
# standalone+redis: overlays/standalone-redis = standalone + components/redis.
SHAPES=(standalone sidecar standalone+redis)
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  for shape in "${SHAPES[@]}"; do
    out="$WORK/$shape.yaml"
    overlay="${shape/+/-}"
    extra=()
    # The component's config.json is the standalone one plus rate_limit.
    [ "$shape" = standalone+redis ] && extra=(--config-like "$K8S/overlays/standalone/config.json")
    if kubectl kustomize "$K8S/overlays/$overlay" >"$out" 2>"$WORK/kustomize.err"; then
      pass "kubectl kustomize overlays/$overlay ($(grep -c '^kind:' "$out") objects)"
      step "overlays/$overlay: schemas + deployment rules, release label, dashboard ConfigMap" \
        node "$TOOLS/validate-k8s.mjs" --shape "$shape" --extract "$WORK/$shape" --dashboard "$DASH" \
          "${extra[@]}" "$out"
    else
      fail "kubectl kustomize overlays/$overlay"
      sed 's/^/    /' "$WORK/kustomize.err"
    fi
  done
else
  notice "kubectl (with kustomize) not available: overlays not rendered; validating each manifest file on its own instead"
  mapfile -t files < <(find "$K8S" "$DEPLOY/prometheus" -name '*.yaml' ! -name 'kustomization.yaml' ! -name 'tests*.yaml' | sort)
  step "manifest files: schemas (unrendered)" node "$TOOLS/validate-k8s.mjs" --files "${files[@]}"
  step "release label patch, dashboard generator, credentials Secret mount declared (unrendered)" declared_unrendered
  # Without a render the config/policy come straight from the sources.
  mkdir -p "$WORK/standalone" "$WORK/sidecar" "$WORK/standalone+redis"
  cp "$K8S/overlays/standalone/config.json" "$K8S/base/policy.json" "$WORK/standalone/"
  cp "$K8S/base/config.json" "$K8S/base/policy.json" "$WORK/sidecar/"
  cp "$K8S/components/redis/config.json" "$K8S/base/policy.json" "$WORK/standalone+redis/"
fi

# A short-lived self-signed certificate for the configs that use TLS.
make_tls() {  # make_tls DIR -> DIR/tls.crt, DIR/tls.key
  mkdir -p "$1"
  [ -f "$1/tls.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$1/tls.key" -out "$1/tls.crt" -days 2 -subj /CN=relaygate.test 2>/dev/null
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {  # wait_port PORT: until something accepts on 127.0.0.1:PORT (5 s at most)
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
}

# The policy and config that would be deployed, checked by the real binary.
run_config() {  # run_config <dir with config.json + policy.json or policy.d/ [+ credentials/] [+ redis-args.txt]>
  local dir="$1" tls="$WORK/tls" log pid redis_addr="" redis_pid=""
  make_tls "$tls"
  # A Redis store: a real redis-server with the manifest's arguments (the
  # later --port/--bind/--dir win), so they are proven to parse too.
  if /usr/bin/python3 -c 'import json, sys
sys.exit(json.load(open(sys.argv[1])).get("rate_limit", {}).get("store") != "redis")' "$dir/config.json"; then
    local rport args=()
    rport="$(free_port)"
    [ -f "$dir/redis-args.txt" ] && mapfile -t args <"$dir/redis-args.txt"
    [ "${args[0]:-}" = redis-server ] && args=("${args[@]:1}")
    redis-server "${args[@]}" --port "$rport" --bind 127.0.0.1 --dir "$dir" >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    PIDS+=("$redis_pid")
    for _ in $(seq 1 50); do
      [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
    if [ "$(redis-cli -p "$rport" ping 2>/dev/null)" != PONG ]; then
      echo "redis-server with the manifest's arguments did not start:"; cat "$dir/redis.log"; return 1
    fi
    echo "ok: redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') on 127.0.0.1:$rport with: ${args[*]}"
    redis_addr="127.0.0.1:$rport"
  fi
  # Only addresses, ports and file paths change; every other key is the
  # deployed one, so the real parser checks names, values and combinations.
  /usr/bin/python3 - "$dir" "$tls" "$redis_addr" <<'EOF'
import json, os, sys
d, tls, redis = sys.argv[1], sys.argv[2], sys.argv[3]
c = json.load(open(f"{d}/config.json"))
if redis:
    c["rate_limit"]["address"] = redis
for l in c.get("listeners", []):
    l["address"], l["port"] = "127.0.0.1", 0
c.setdefault("admin", {}).update(address="127.0.0.1", port=0)
if "tls" in c:
    c["tls"] = {"cert_file": f"{tls}/tls.crt", "key_file": f"{tls}/tls.key"}
if "policy_dir" in c:
    c["policy_dir"] = f"{d}/policy.d"
else:
    c["policy_file"] = f"{d}/policy.json"
# The credentials Secret's keys as extracted from the render (none by
# default: an empty directory, as the empty Secret mounts).
if "credentials_file" in c:
    os.makedirs(f"{d}/credentials", exist_ok=True)
    c["credentials_file"] = f"{d}/credentials"
c["drain_timeout_seconds"] = 2
json.dump(c, open(f"{d}/config.local.json", "w"), indent=2)
EOF
  log="$dir/run.log"
  "$RELAYGATE" run --config "$dir/config.local.json" 2>"$log" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 50); do
    grep -q '"event":"started"' "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '"event":"started"' "$log"; then
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    [ -n "$redis_pid" ] && { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; }
    cat "$log"
    return 1
  fi
  kill -TERM "$pid"
  wait "$pid"
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid"
    wait "$redis_pid" || true
  fi
}
for shape in "${SHAPES[@]}"; do
  src=()
  if [ -f "$WORK/$shape/policy.json" ]; then src=(--policy "$WORK/$shape/policy.json")
  elif [ -d "$WORK/$shape/policy.d" ]; then src=(--policy-dir "$WORK/$shape/policy.d")
  fi
  if [ ${#src[@]} -gt 0 ]; then
    # With the credentials Secret's keys (the render's; an empty directory
    # without one), as the pod sees them.
    mkdir -p "$WORK/$shape/credentials"
    step "overlays/${shape/+/-}: policy + credentials pass relaygate check" \
      "$RELAYGATE" check "${src[@]}" --credentials "$WORK/$shape/credentials"
    step "overlays/${shape/+/-}: config.json accepted by relaygate run" run_config "$WORK/$shape"
  fi
done

# ---- 3. Prometheus -------------------------------------------------------------
PROM="$DEPLOY/prometheus"
step "promtool check rules relaygate.rules.yml" promtool check rules "$PROM/relaygate.rules.yml"
step "PrometheusRule CR is generated from the plain rules" node "$TOOLS/sync-rules.mjs" --check
extract_cr_groups() {
  node --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    import { createRequire } from "node:module";
    const require = createRequire(process.argv[1] + "/");
    const YAML = require("yaml");
    const [, , dir, out] = process.argv;
    const cr = YAML.parse(readFileSync(dir + "/relaygate-rules.yaml", "utf8"));
    const plain = YAML.parse(readFileSync(dir + "/relaygate.rules.yml", "utf8"));
    if (JSON.stringify(cr.spec.groups) !== JSON.stringify(plain.groups)) {
      console.error("spec.groups of the PrometheusRule differ from relaygate.rules.yml");
      process.exit(1);
    }
    writeFileSync(out, YAML.stringify({ groups: cr.spec.groups }));
  ' "$TOOLS/node_modules" "$PROM" "$WORK/cr.rules.yml" && promtool check rules "$WORK/cr.rules.yml"
}
step "PrometheusRule spec.groups == plain rules, promtool-valid" extract_cr_groups
prom_unit_tests() { (cd "$PROM" && promtool test rules tests.yaml tests-baseline.yaml); }
step "promtool test rules (tests.yaml, tests-baseline.yaml)" prom_unit_tests
alerts_tested() {  # every alert has a firing test case
  local a bad=0
  while read -r a; do
    if ! grep -A3 -E "alertname: $a\$" "$PROM"/tests*.yaml | grep -q 'exp_labels'; then
      echo "alert $a has no test that makes it fire"; bad=1
    fi
    if ! grep -qE "alertname: $a, exp_alerts: \[\]" "$PROM"/tests*.yaml; then
      echo "alert $a has no test that keeps it silent"; bad=1
    fi
  done < <(sed -n 's/^ *- alert: //p' "$PROM/relaygate.rules.yml")
  return "$bad"
}
step "every alert has a firing and a silent unit test" alerts_tested
step "runbook_url anchors in deploy/README.md; RelaygateTargetDown absent() tested" \
  node "$TOOLS/check-alerts.mjs" "$PROM/relaygate.rules.yml" "$DEPLOY/README.md" "$PROM"/tests*.yaml

# ---- 4. Grafana ----------------------------------------------------------------
step "dashboard conventions; queries written as rules" \
  node "$TOOLS/promql-refs.mjs" dashboard "$DASH" "$WORK/dashboard.rules.yml"
step "promtool check rules on every dashboard query" promtool check rules "$WORK/dashboard.rules.yml"

# ---- 5. real scrape ----------------------------------------------------------------
real_scrape() {
  local dir="$WORK/scrape" sink_port log pid sink admin smtp
  mkdir -p "$dir"
  sink_port="$(free_port)"
  /usr/sbin/smtp-sink -u nobody "127.0.0.1:$sink_port" 10 >"$dir/sink.log" 2>&1 &
  sink=$!
  PIDS+=("$sink")
  wait_port "$sink_port"
  cp "$ROOT/policy/examples/quickstart.json" "$dir/policy.json"
  # A certificate, so relaygate_tls_certificate_expiry_timestamp_seconds
  # (exported only with tls.cert_file) is in the scrape.
  make_tls "$WORK/tls"
  # The policy over HTTPS (openssl s_server -WWW serves the directory), so
  # the policy_url series are in the scrape too.
  local www_port www
  www_port="$(free_port)"
  (cd "$dir" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$www_port" \
     -cert "$WORK/tls/tls.crt" -key "$WORK/tls/tls.key") >"$dir/s_server.log" 2>&1 &
  www=$!
  PIDS+=("$www")
  wait_port "$www_port"
  # smtp-sink offers XCLIENT but answers it with 250 (Postfix sends 220).
  cat >"$dir/config.json" <<EOF
{
  "listeners": [ { "address": "127.0.0.1", "port": 0, "starttls": "offered" } ],
  "upstream": { "host": "127.0.0.1", "port": $sink_port, "xclient": false,
                "connect_timeout_seconds": 5 },
  "tls": { "cert_file": "$WORK/tls/tls.crt", "key_file": "$WORK/tls/tls.key" },
  "policy_url": "https://127.0.0.1:$www_port/policy.json",
  "policy_fetch": { "ca_file": "$WORK/tls/tls.crt", "verify_name": "relaygate.test",
                    "cache_file": "cache.json", "poll_seconds": 1 },
  "admin": { "enabled": true, "address": "127.0.0.1", "port": 0 },
  "threads": 1,
  "drain_timeout_seconds": 2
}
EOF
  log="$dir/relaygate.log"
  "$RELAYGATE" run --config "$dir/config.json" 2>"$log" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 50); do
    grep -q '"event":"started"' "$log" && break
    sleep 0.1
  done
  admin="$(sed -n 's/.*"kind":"admin".*"port":\([0-9]*\).*/\1/p' "$log" | head -1)"
  smtp="$(sed -n 's/.*"kind":"smtp".*"port":\([0-9]*\).*/\1/p' "$log" | head -1)"
  if [ -z "$admin" ] || [ -z "$smtp" ]; then cat "$log"; return 1; fi
  # One relayed message (tenant demo), one refused (other.example is not
  # demo's), one refused RCPT-less session: decisions, upstream latency.
  /usr/bin/python3 - "$smtp" <<'EOF'
import smtplib, sys
port = int(sys.argv[1])
msg = "From: a@demo.example\r\nTo: b@example.org\r\nSubject: deploy test\r\n\r\nhello\r\n"
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    s.ehlo("client.test")
    s.sendmail("a@demo.example", ["b@example.org"], msg)
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    s.ehlo("client.test")
    code, _ = s.mail("x@other.example")
    assert code >= 500, code
    s.rset()
print("smtp sessions done")
EOF
  curl -fsS "http://127.0.0.1:$admin/livez" >/dev/null
  curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null
  curl -fsS "http://127.0.0.1:$admin/metrics" >"$WORK/scrape.txt"
  kill -TERM "$pid"
  wait "$pid" || { cat "$log"; return 1; }
  echo "scraped $(grep -c '^relaygate_' "$WORK/scrape.txt") relaygate samples"
  grep -q 'relaygate_messages_relayed_total{tenant="demo"} 1' "$WORK/scrape.txt" \
    || { echo "the test message was not relayed"; cat "$log"; return 1; }
  promtool check metrics <"$WORK/scrape.txt" || { echo "promtool check metrics complained"; return 1; }
  # The expiry gauge is the certificate's notAfter (RelaygateTLSCertificateExpiring).
  local not_after gauge
  not_after="$(date -u -d "$(openssl x509 -in "$WORK/tls/tls.crt" -noout -enddate | cut -d= -f2)" +%s)"
  gauge="$(sed -n 's/^relaygate_tls_certificate_expiry_timestamp_seconds \([0-9.e+]*\)$/\1/p' "$WORK/scrape.txt")"
  if [ -z "$gauge" ] || ! /usr/bin/python3 -c 'import sys; sys.exit(float(sys.argv[1]) != float(sys.argv[2]))' "$gauge" "$not_after"; then
    echo "relaygate_tls_certificate_expiry_timestamp_seconds ${gauge:-missing} != notAfter $not_after"; return 1
  fi
  echo "ok: relaygate_tls_certificate_expiry_timestamp_seconds $gauge == the certificate's notAfter"
  node "$TOOLS/promql-refs.mjs" scrape "$WORK/scrape.txt" "$PROM/relaygate.rules.yml" "$DASH"
}
step "real scrape: every metric and label of rules + dashboard exists" real_scrape

# ---- 6. linters ----------------------------------------------------------------------
step "yamllint deploy/" yamllint -s -c "$DEPLOY/.yamllint" "$DEPLOY"
mapfile -t own_sh < <(find "$ROOT/tests/deploy" "$DEPLOY" -path '*/node_modules' -prune -o -name '*.sh' -print | sort)
own_sh+=("$DEPLOY"/debian/postinst "$DEPLOY"/debian/prerm "$DEPLOY"/debian/postrm)  # #!/bin/sh, no .sh
step "shellcheck (all severities) deploy/ and tests/deploy/" shellcheck -x "${own_sh[@]}"
mapfile -t other_sh < <(
  find "$ROOT/tests" -path "$ROOT/tests/deploy" -prune -o -name '*.sh' -print
  for f in "$ROOT"/scripts/*; do head -1 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && echo "$f"; done
)
# scripts/test has a style-level note (SC2002) outside this test's files:
# warnings and errors fail, style notes do not.
step "shellcheck -S warning scripts/ and tests/" shellcheck -S warning "${other_sh[@]}"

echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
