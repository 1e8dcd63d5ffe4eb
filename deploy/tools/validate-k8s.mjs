// Validates Kubernetes manifests offline.
//
//   node validate-k8s.mjs --shape standalone|sidecar|standalone+redis [--extract DIR]
//                         [--config-like CONFIG.json] [--dashboard DASHBOARD.json] rendered.yaml
//       A `kubectl kustomize` render of an overlay: every object against the
//       Kubernetes / prometheus-operator schemas (kubernetes-models), then the
//       deployment rules relaygate depends on (probes, securityContext, drain
//       and grace period, config <-> ports <-> mounts, Services, HPA, PDB,
//       NetworkPolicy, ServiceMonitor, the operator's release label on the
//       ServiceMonitor and PrometheusRule only). --extract writes the rendered
//       config.json and policy.json (policy_dir: policy.d/*.json) to DIR for
//       `relaygate check`, the credentials Secret's keys to DIR/credentials/
//       (and, with Redis, redis-args.txt: the Redis container's arguments,
//       one a line). credentials_file must be the Secret volume mounted as
//       a directory (no subPath) and the policy ConfigMap hold no
//       password_hash (the hashes belong in that Secret).
//       standalone+redis is the standalone overlay with components/redis
//       (overlays/standalone-redis): the standalone rules plus the Redis
//       rate-limit store's (Deployment, Service, NetworkPolicies, the
//       rate_limit block pointing at them). --config-like: the rendered
//       config.json minus "rate_limit" must equal CONFIG.json (the component
//       carries a copy of the standalone config; this catches drift).
//       --dashboard: the render has the Grafana sidecar's ConfigMap
//       (relaygate-dashboard, label grafana_dashboard "1") holding exactly
//       DASHBOARD.json.
//   node validate-k8s.mjs --files FILE...
//       Schema checks of individual manifests (no renderer available):
//       complete objects are validated, patches only parsed.
//
// Exit 0 when everything holds, 1 with one line per problem otherwise.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import YAML from "yaml";

const require = createRequire(import.meta.url);
const problems = [];
const fail = (where, msg) => problems.push(`${where}: ${msg}`);
let checks = 0;
const check = (cond, where, msg) => {
  checks++;
  if (!cond) fail(where, msg);
  return cond;
};

// apiVersion + kind -> model class.
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const candidates =
    group === "monitoring.coreos.com"
      ? [`@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`]
      : group === ""
        ? [`kubernetes-models/${version}/${kind}`]
        : [`kubernetes-models/${group}/${version}/${kind}`];
  for (const c of candidates) {
    try {
      const mod = require(c);
      if (mod[kind]) return mod[kind];
    } catch {
      // try the next candidate
    }
  }
  return null;
}

function schemaCheck(obj, where) {
  if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
    fail(where, "not a Kubernetes object (apiVersion/kind missing)");
    return false;
  }
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!check(Model, where, `no schema for ${obj.apiVersion} ${obj.kind}`)) return false;
  try {
    checks++;
    new Model(obj).validate();
    return true;
  } catch (e) {
    fail(`${where} ${obj.kind}/${obj.metadata?.name}`, `schema: ${e.message}`);
    return false;
  }
}

function loadDocs(file) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) fail(file, `YAML: ${d.errors[0].message}`);
    const js = d.toJS();
    if (js !== null && js !== undefined) out.push(js);
  }
  return out;
}

const args = process.argv.slice(2);

// ---- individual files -------------------------------------------------------
if (args[0] === "--files") {
  for (const file of args.slice(1)) {
    for (const obj of loadDocs(file)) {
      if (Array.isArray(obj)) continue; // JSON 6902 patch: parsed only
      if (obj.kind === "Kustomization") continue;
      const partial = !obj.spec && !obj.data && !obj.stringData && obj.kind !== "Namespace";
      // Strategic merge patches lack required fields; validate complete objects.
      const isPatch = /patch/i.test(file) || partial;
      if (!isPatch) schemaCheck(obj, file);
    }
  }
  report();
}

// ---- rendered overlay -------------------------------------------------------
let shape = null;
let extract = null;
let configLike = null;
let dashboard = null;
let rendered = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--shape") shape = args[++i];
  else if (args[i] === "--extract") extract = args[++i];
  else if (args[i] === "--config-like") configLike = args[++i];
  else if (args[i] === "--dashboard") dashboard = args[++i];
  else rendered = args[i];
}
if (!["standalone", "sidecar", "standalone+redis"].includes(shape) || !rendered) {
  console.error("usage: validate-k8s.mjs --shape standalone|sidecar|standalone+redis [--extract DIR] " +
    "[--config-like CONFIG.json] [--dashboard DASHBOARD.json] rendered.yaml");
  process.exit(2);
}
// standalone+redis: the standalone shape's rules, plus the Redis store's.
const withRedis = shape.endsWith("+redis");
const baseShape = shape.replace(/\+redis$/, "");
const objs = loadDocs(rendered);
const W = `[${shape}]`;
for (const o of objs) schemaCheck(o, W);

const byKind = (kind) => objs.filter((o) => o.kind === kind);
const one = (kind, pred = () => true) => objs.find((o) => o.kind === kind && pred(o));
const labelsMatch = (selector, labels) =>
  selector && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

// The workload and the relaygate container; with the Redis component also
// the relaygate-redis Deployment, checked further down.
const REDIS_NAME = "relaygate-redis";
const isRedis = (o) => o.metadata?.name === REDIS_NAME;
const deployments = byKind("Deployment").filter((o) => !(withRedis && isRedis(o)));
check(deployments.length === 1, W, `expected one relaygate Deployment, found ${deployments.length}`);
const dep = deployments[0] ?? { metadata: {}, spec: { template: { metadata: {}, spec: {} } } };
const pod = dep.spec.template.spec;
const podLabels = dep.spec.template.metadata?.labels ?? {};
const D = `${W} Deployment/${dep.metadata.name}`;
check(labelsMatch(dep.spec.selector?.matchLabels, podLabels), D, "selector does not match the pod labels");
const inits = pod.initContainers ?? [];
const mains = pod.containers ?? [];
const rg =
  baseShape === "sidecar"
    ? inits.find((c) => c.name === "relaygate")
    : mains.find((c) => c.name === "relaygate");
if (!check(rg, D, `relaygate container not found in ${baseShape === "sidecar" ? "initContainers" : "containers"}`))
  report();
const C = `${D} container relaygate`;

// Config and policy from the ConfigMaps the pod mounts.
const volume = (name) => (pod.volumes ?? []).find((v) => v.name === name);
const mountOf = (c, pathPrefix) => (c.volumeMounts ?? []).find((m) => m.mountPath === pathPrefix);
const cmByName = (name) => one("ConfigMap", (o) => o.metadata.name === name);
for (const v of pod.volumes ?? []) {
  if (v.configMap) check(cmByName(v.configMap.name), D, `volume ${v.name}: ConfigMap ${v.configMap.name} not in the render`);
  if (v.secret && v.secret.secretName !== "signer-dkim-keys")
    check(one("Secret", (o) => o.metadata.name === v.secret.secretName), D,
      `volume ${v.name}: Secret ${v.secret.secretName} not in the render`);
}
for (const c of [...mains, ...inits])
  for (const m of c.volumeMounts ?? [])
    check(volume(m.name), `${D} container ${c.name}`, `mount ${m.mountPath}: no volume ${m.name}`);

const configMount = mountOf(rg, "/etc/relaygate/config.json");
let config = {};
if (check(configMount, C, "no mount at /etc/relaygate/config.json (the image's ENTRYPOINT reads it)")) {
  const cm = cmByName(volume(configMount.name)?.configMap?.name);
  const key = configMount.subPath ?? "config.json";
  if (check(cm?.data?.[key], C, `config ConfigMap has no ${key}`)) {
    try {
      config = JSON.parse(cm.data[key]);
    } catch (e) {
      fail(C, `config.json: ${e.message}`);
    }
  }
}
const KNOWN = {
  "": ["listeners", "upstream", "policy_file", "policy_dir", "credentials_file", "admin", "limits", "timeouts", "threads", "hostname",
    "verdict_header", "audit_log", "drain_timeout_seconds", "tls", "policy_poll_seconds", "rate_limit",
    "anomalies"],
  listener: ["address", "port", "starttls", "implicit_tls", "request_client_certificate", "auth",
    "proxy_protocol", "trusted_proxies", "proxy_timeout_seconds", "reuse_port"],
  upstream: ["host", "port", "xclient", "pipelining", "defer_mail", "connect_timeout_seconds", "reply_timeout_seconds",
    "final_reply_timeout_seconds", "data_block_seconds", "quit_seconds", "starttls", "ca_file",
    "verify_name"],
  admin: ["enabled", "address", "port"],
  tls: ["cert_file", "key_file"],
  rate_limit: ["store", "address", "username", "password_file", "key_prefix", "tls", "timeout_ms",
    "connect_timeout_ms", "on_error", "replicas", "report_only", "memory_entries", "recipient_lease",
    "batch_ms", "block_percent", "seen_cache_entries"],
};
const keysKnown = (o, known, where) => {
  for (const k of Object.keys(o ?? {})) check(known.includes(k), `${W} config.json${where}`, `unknown key "${k}"`);
};
keysKnown(config, KNOWN[""], "");
(config.listeners ?? []).forEach((l, i) => keysKnown(l, KNOWN.listener, `.listeners[${i}]`));
keysKnown(config.upstream, KNOWN.upstream, ".upstream");
keysKnown(config.admin, KNOWN.admin, ".admin");
keysKnown(config.tls, KNOWN.tls, ".tls");
keysKnown(config.rate_limit, KNOWN.rate_limit, ".rate_limit");
if (config.rate_limit) {
  const rl = config.rate_limit;
  check(["memory", "redis"].includes(rl.store ?? "memory"), `${W} config.json.rate_limit`,
    `store must be memory or redis, not ${rl.store}`);
  check(["fail_open", "fail_closed"].includes(rl.on_error ?? "fail_open"), `${W} config.json.rate_limit`,
    `on_error must be fail_open or fail_closed, not ${rl.on_error}`);
}
if (configLike) {
  // Key order does not matter; values must be equal.
  const canon = (v) => JSON.stringify(v, (k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x);
  const { rate_limit: _ignored, ...rest } = config;
  let like = null;
  try {
    like = JSON.parse(readFileSync(configLike, "utf8"));
  } catch (e) {
    fail(W, `--config-like ${configLike}: ${e.message}`);
  }
  if (like) {
    delete like.rate_limit;
    for (const k of new Set([...Object.keys(rest), ...Object.keys(like)]))
      check(canon(rest[k]) === canon(like[k]), `${W} config.json`,
        `"${k}" differs from ${configLike} (the component's config.json must be that config plus rate_limit)`);
  }
}

const drain = config.drain_timeout_seconds ?? 30;
const port = (c, name) => (c.ports ?? []).find((p) => p.name === name);
const smtpPort = port(rg, "smtp");
const adminPort = port(rg, "admin");
check(smtpPort && adminPort, C, "needs container ports named smtp and admin");
const listener = (config.listeners ?? [])[0] ?? {};
check(config.listeners?.length >= 1, C, "config has no listener");
check(listener.address === "0.0.0.0" || listener.address === "::", C,
  `listener must bind all pod addresses, not ${listener.address}`);
check(smtpPort?.containerPort === listener.port, C,
  `container port smtp ${smtpPort?.containerPort} != listener port ${listener.port}`);
check(config.admin?.enabled !== false, C, "admin must be enabled (probes, metrics)");
check(["0.0.0.0", "::"].includes(config.admin?.address), C, "admin must listen on all pod addresses (kubelet probes, Prometheus)");
check(adminPort?.containerPort === (config.admin?.port ?? 9025), C, "container port admin != admin.port");

// Paths in the config are relative to the config file's directory.
const inEtc = (p) => (p.startsWith("/") ? p : `/etc/relaygate/${p}`).replace(/\/+$/, "");
const policyFiles = {}; // file name -> text (one for policy_file, several for policy_dir)
check(!(config.policy_file && config.policy_dir), C, "policy_file and policy_dir are exclusive");
if (config.policy_dir) {
  // policy_dir: every *.json of a directory mount (a ConfigMap, or a
  // projected volume of several ConfigMaps), never subPath.
  const dir = inEtc(config.policy_dir);
  const m = mountOf(rg, dir);
  if (check(m, C, `policy_dir ${dir}: no mount there`)) {
    check(!m.subPath, C, "the policy_dir mount must not use subPath (updates would never reach the pod)");
    const v = volume(m.name) ?? {};
    const cms = v.configMap ? [v.configMap] : (v.projected?.sources ?? []).map((src) => src.configMap).filter(Boolean);
    check(cms.length > 0 && !(v.projected?.sources ?? []).some((src) => !src.configMap), C,
      `policy_dir volume ${m.name} must be a ConfigMap or a projected volume of ConfigMaps`);
    for (const ref of cms) {
      const cm = cmByName(ref.name);
      check(cm && !/-[a-z0-9]{10}$/.test(cm.metadata.name), C,
        `policy ConfigMap ${ref.name} has a hash suffix: an update would roll pods instead of hot-reloading`);
      const items = ref.items ?? Object.keys(cm?.data ?? {}).map((key) => ({ key, path: key }));
      for (const it of items)
        if (/^[^.][^/]*\.json$/.test(it.path) && cm?.data?.[it.key] !== undefined) {
          check(!(it.path in policyFiles), C, `policy_dir: ${it.path} comes from two ConfigMaps`);
          policyFiles[it.path] = cm.data[it.key];
        }
    }
    check(Object.keys(policyFiles).length > 0, C, `policy_dir ${dir}: no *.json in the mounted ConfigMaps`);
  }
} else {
  // policy_file must be the policy ConfigMap mounted as a directory (hot reload).
  const policyPath = inEtc(config.policy_file ?? "policy.json");
  const policyDir = policyPath.slice(0, policyPath.lastIndexOf("/"));
  const policyMount = mountOf(rg, policyDir);
  if (check(policyMount, C, `policy_file ${policyPath}: no mount at ${policyDir}`)) {
    check(!policyMount.subPath, C, "the policy mount must not use subPath (updates would never reach the pod)");
    const cm = cmByName(volume(policyMount.name)?.configMap?.name);
    const key = policyPath.slice(policyDir.length + 1);
    if (check(cm?.data?.[key], C, `policy ConfigMap has no key ${key}`)) policyFiles["policy.json"] = cm.data[key];
    check(cm && !/-[a-z0-9]{10}$/.test(cm.metadata.name), C,
      `policy ConfigMap ${cm?.metadata?.name} has a hash suffix: an update would roll pods instead of hot-reloading`);
  }
}
const policyText = config.policy_dir ? null : policyFiles["policy.json"] ?? null;
// SASL password hashes: a Secret mounted as a directory at credentials_file
// (one key per user), so that they never sit in the policy ConfigMap and a
// changed Secret reaches the pod (no subPath) and is hot-reloaded.
let credentials = null; // user -> hash, from the rendered Secret
if (check(config.credentials_file, C, "no credentials_file: SASL password hashes would have to sit in the policy ConfigMap")) {
  const dir = inEtc(config.credentials_file);
  const m = mountOf(rg, dir);
  if (check(m, C, `credentials_file ${dir}: no directory mount there (the credentials Secret)`)) {
    const CM = `${C} mount ${dir}`;
    const before = problems.length;
    check(!m.subPath, CM, "must not use subPath (a changed Secret would never reach the pod)");
    check(m.readOnly === true, CM, "must be readOnly");
    const v = volume(m.name) ?? {};
    if (check(v.secret?.secretName, CM, `volume ${m.name} must be a Secret volume (not a ConfigMap: the hashes are secrets)`)) {
      check(!v.secret.items, CM, "no items: every key of the Secret is a user");
      check(((v.secret.defaultMode ?? 0o644) & 0o007) === 0, CM,
        `defaultMode ${(v.secret.defaultMode ?? 0o644).toString(8)} lets every user of the node read the hashes (0440)`);
      const sec = one("Secret", (o) => o.metadata.name === v.secret.secretName);
      if (sec) {
        check((sec.type ?? "Opaque") === "Opaque", CM, `Secret ${sec.metadata.name} must be type Opaque, not ${sec.type}`);
        credentials = {};
        for (const [k, b64] of Object.entries(sec.data ?? {})) credentials[k] = Buffer.from(b64, "base64").toString("utf8");
        for (const [k, t] of Object.entries(sec.stringData ?? {})) credentials[k] = t;
        for (const k of Object.keys(credentials))
          check(!k.startsWith("."), CM, `key ${k}: names starting with "." are skipped by the gateway`);
        if (problems.length === before)
          console.log(`ok: credentials_file ${dir} is Secret ${sec.metadata.name} ` +
            `(${Object.keys(credentials).length} users), a read-only directory mount`);
      }
    }
  }
}
for (const [name, text] of Object.entries(policyFiles))
  check(!/"password_hash"\s*:/.test(text), C,
    `policy ${name} holds a password_hash: move it to the credentials Secret and name only the sasl_user`);
// TLS material from the Secret.
if (config.tls) {
  const dir = config.tls.cert_file.slice(0, config.tls.cert_file.lastIndexOf("/"));
  const m = mountOf(rg, dir);
  if (check(m, C, `tls files under ${dir}: no mount there`)) {
    const sec = one("Secret", (o) => o.metadata.name === volume(m.name)?.secret?.secretName);
    for (const f of [config.tls.cert_file, config.tls.key_file])
      check(sec && f.slice(dir.length + 1) in (sec.data ?? {}), C, `Secret has no key for ${f}`);
  }
  check((config.listeners ?? []).every((l) => ["offered", "required"].includes(l.starttls)), C,
    "every listener should offer STARTTLS when tls is configured");
}

// Probes, lifecycle, securityContext, resources.
const probe = (p, path) => p?.httpGet?.path === path && p.httpGet.port === "admin";
check(probe(rg.livenessProbe, "/livez"), C, "livenessProbe must GET /livez on port admin");
check(probe(rg.readinessProbe, "/readyz"), C, "readinessProbe must GET /readyz on port admin");
const strict = (c, where, nonRoot) => {
  const s = c.securityContext ?? {};
  check(s.allowPrivilegeEscalation === false, where, "allowPrivilegeEscalation must be false");
  check(s.readOnlyRootFilesystem === true, where, "readOnlyRootFilesystem must be true");
  check(s.capabilities?.drop?.includes("ALL"), where, "capabilities.drop must include ALL");
  check(s.privileged !== true, where, "must not be privileged");
  if (nonRoot) {
    check(s.runAsNonRoot === true, where, "runAsNonRoot must be true");
    check(Number.isInteger(s.runAsUser) && s.runAsUser > 0, where, "runAsUser must be a non-zero uid (the image's 10001)");
  }
  const r = c.resources ?? {};
  for (const k of ["cpu", "memory"]) {
    check(r.requests?.[k], where, `resources.requests.${k} missing`);
    check(r.limits?.[k], where, `resources.limits.${k} missing`);
  }
};
strict(rg, C, true);
for (const c of [...mains, ...inits]) if (c !== rg) strict(c, `${D} container ${c.name}`, false);
check(pod.securityContext?.seccompProfile?.type === "RuntimeDefault", D, "pod seccompProfile RuntimeDefault");
check(pod.automountServiceAccountToken === false, D, "relaygate needs no service account token");

const sleepOf = (c) => {
  const cmd = c?.lifecycle?.preStop?.exec?.command ?? [];
  return /sleep$/.test(cmd[0] ?? "") ? Number(cmd[1]) : 0;
};
const grace = pod.terminationGracePeriodSeconds ?? 30;
if (baseShape === "standalone") {
  const pre = sleepOf(rg);
  check(pre > 0, C, "needs a preStop sleep so endpoints drop it before SIGTERM");
  check(grace >= pre + drain + 5 && grace <= pre + drain + 30, D,
    `terminationGracePeriodSeconds ${grace} must be preStop ${pre} + drain_timeout_seconds ${drain} + 5..30`);
} else {
  check(rg.restartPolicy === "Always", C, "a native sidecar needs restartPolicy: Always");
  const signer = mains.find((c) => c.name === "signer");
  if (check(signer, D, "no signer main container")) {
    const pre = sleepOf(signer);
    check(pre >= drain, `${D} container signer`,
      `preStop sleep ${pre} must cover drain_timeout_seconds ${drain} (the signer stops before the sidecar)`);
    check(grace >= pre + drain + 10, D,
      `terminationGracePeriodSeconds ${grace} must be >= signer preStop ${pre} + drain ${drain} + 10`);
    check(!(signer.ports ?? []).length, `${D} container signer`, "the signer must expose no port (loopback only)");
  }
  check(config.upstream?.host === "127.0.0.1" && config.upstream?.port === 10025, C,
    "sidecar upstream must be 127.0.0.1:10025");
  check((config.listeners ?? []).every((l) => (l.proxy_protocol ?? "off") === "off"), C,
    "sidecar listeners take clients directly: proxy_protocol off");
  const scm = one("ConfigMap", (o) => o.metadata.name.startsWith("signer-config"));
  check(scm && /^inet_interfaces = loopback-only$/m.test(scm.data?.["postfix-main.cf"] ?? ""), W,
    "signer main.cf must set inet_interfaces = loopback-only");
  check(scm && /^127\.0\.0\.1:10025 inet /m.test(scm.data?.["postfix-master.cf"] ?? ""), W,
    "signer master.cf must bind smtpd to 127.0.0.1:10025");
}

// Services (the Redis one is checked with the Redis store below).
const services = byKind("Service").filter((o) => !(withRedis && isRedis(o)));
for (const s of services) {
  const S = `${W} Service/${s.metadata.name}`;
  check(labelsMatch(s.spec.selector, podLabels), S, "selector does not match the relaygate pod");
  for (const p of s.spec.ports ?? [])
    check(typeof p.targetPort === "string" && port(rg, p.targetPort), S, `targetPort ${p.targetPort} is not a named relaygate port`);
}
const smtpSvc = services.find((s) => (s.spec.ports ?? []).some((p) => p.targetPort === "smtp"));
const adminSvc = services.find((s) => (s.spec.ports ?? []).some((p) => p.targetPort === "admin"));
check(smtpSvc && adminSvc && smtpSvc !== adminSvc, W, "needs separate SMTP and admin Services");
check(adminSvc?.spec?.type !== "LoadBalancer", W, "the admin port must never be on a load balancer");
if (baseShape === "standalone") {
  const a = smtpSvc?.metadata?.annotations ?? {};
  check(smtpSvc?.spec?.type === "LoadBalancer", W, "SMTP Service must be type LoadBalancer");
  check(a["service.beta.kubernetes.io/aws-load-balancer-type"] === "nlb", W, "NLB annotation missing");
  check(a["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] === "*", W, "PROXY protocol annotation missing");
  check(listener.proxy_protocol === "v2" && (listener.trusted_proxies ?? []).length > 0, W,
    "behind the NLB the listener needs proxy_protocol v2 and trusted_proxies");
  check(smtpSvc?.spec?.externalTrafficPolicy === "Local", W, "externalTrafficPolicy Local expected");
}

// ServiceMonitor -> admin Service.
const sm = one("ServiceMonitor");
if (check(sm, W, "no ServiceMonitor")) {
  check(labelsMatch(sm.spec.selector?.matchLabels, adminSvc?.metadata?.labels) &&
    !labelsMatch(sm.spec.selector?.matchLabels, smtpSvc?.metadata?.labels), W,
    "ServiceMonitor must select the admin Service only");
  check((sm.spec.endpoints ?? []).every((e) => (adminSvc?.spec?.ports ?? []).some((p) => p.name === e.port) &&
    e.path === "/metrics"), W, "ServiceMonitor endpoints must name the admin Service port, path /metrics");
}
const pr = one("PrometheusRule");
check(pr, W, "no PrometheusRule");

// The operator's selector label (kube-prometheus-stack: release: <Helm
// release>), added in one place (deploy/k8s/base/kustomization.yaml) to
// the ServiceMonitor and the PrometheusRule, and to nothing else.
const release = sm?.metadata?.labels?.release;
check(typeof release === "string" && release.length > 0, W,
  "ServiceMonitor has no release label (kube-prometheus-stack's default serviceMonitorSelector)");
check(pr?.metadata?.labels?.release === release, W,
  `PrometheusRule release label ${pr?.metadata?.labels?.release} != the ServiceMonitor's ${release} ` +
  "(kube-prometheus-stack's default ruleSelector)");
for (const o of objs) {
  if (o.apiVersion?.startsWith("monitoring.coreos.com/")) continue;
  const where = `${W} ${o.kind}/${o.metadata?.name}`;
  const tpl = o.spec?.template?.metadata?.labels;
  const sel = o.spec?.selector?.matchLabels ?? (o.kind === "Service" ? o.spec?.selector : undefined);
  check(!("release" in (o.metadata?.labels ?? {})) && !("release" in (tpl ?? {})) && !("release" in (sel ?? {})), where,
    "the release label belongs on the ServiceMonitor and PrometheusRule only (not on workloads, Services, selectors)");
}
if (release && pr?.metadata?.labels?.release === release)
  console.log(`ok: ServiceMonitor and PrometheusRule carry release: ${release}`);

// The Grafana dashboard as a ConfigMap for the dashboard sidecar
// (kube-prometheus-stack: label grafana_dashboard "1"), generated from
// the dashboard file without a copy.
if (dashboard) {
  const DASH_KEY = "relaygate-dashboard.json";
  const before = problems.length;
  const dcm = one("ConfigMap", (o) => DASH_KEY in (o.data ?? {}));
  if (check(dcm, W, `no ConfigMap carries ${DASH_KEY} (deploy/grafana/kustomization.yaml)`)) {
    const DC = `${W} ConfigMap/${dcm.metadata.name}`;
    check(dcm.metadata.name === "relaygate-dashboard", DC,
      "name must be relaygate-dashboard without a hash suffix (disableNameSuffixHash)");
    check(dcm.metadata.labels?.grafana_dashboard === "1", DC,
      "needs the label grafana_dashboard: \"1\" (the Grafana sidecar's default label and value)");
    check(dcm.data[DASH_KEY] === readFileSync(dashboard, "utf8"), DC,
      `${DASH_KEY} differs from ${dashboard} (it must be generated from that file)`);
    let uid = null;
    try {
      uid = JSON.parse(dcm.data[DASH_KEY]).uid;
    } catch (e) {
      fail(DC, `${DASH_KEY}: ${e.message}`);
    }
    check(uid, DC, "the dashboard needs a uid (the sidecar updates it in place)");
    check(JSON.stringify(dcm).length < 262144, DC,
      "over 256 KiB: kubectl apply's last-applied annotation would not fit (use server-side apply)");
    if (problems.length === before)
      console.log(`ok: ConfigMap ${dcm.metadata.name} (grafana_dashboard=1) holds ${dashboard}`);
  }
}

// NetworkPolicy.
const nps = byKind("NetworkPolicy");
const selects = (np, labels) => labelsMatch(np.spec.podSelector?.matchLabels, labels);
const rgPolicy = nps.find((np) => selects(np, podLabels));
if (check(rgPolicy, W, "no NetworkPolicy selects the relaygate pod")) {
  check(rgPolicy.spec.policyTypes?.includes("Ingress") && rgPolicy.spec.policyTypes?.includes("Egress"), W,
    "relaygate NetworkPolicy must restrict Ingress and Egress");
  const openPorts = (rgPolicy.spec.ingress ?? []).flatMap((r) => (r.ports ?? []).map((p) => p.port));
  check((rgPolicy.spec.ingress ?? []).every((r) => (r.ports ?? []).length > 0), W,
    "every ingress rule must name its ports");
  check(openPorts.every((p) => ["smtp", "admin", 2525, 9025].includes(p)), W,
    `relaygate pod ingress opens ports other than smtp/admin: ${openPorts}`);
}
if (baseShape === "standalone") {
  const signerLabels = { "app.kubernetes.io/name": "signer" };
  const sp = nps.find((np) => selects(np, signerLabels));
  if (check(sp, W, "no NetworkPolicy protects the signer")) {
    check(sp.spec.policyTypes?.includes("Ingress"), W, "signer policy must restrict Ingress");
    check((sp.spec.ingress ?? []).length > 0 && sp.spec.ingress.every((r) =>
      (r.from ?? []).length > 0 && r.from.every((f) => !f.ipBlock && !f.namespaceSelector &&
        labelsMatch(f.podSelector?.matchLabels, podLabels))), W,
      "only relaygate pods may reach the signer");
  }
  // HPA and PDB.
  const hpa = one("HorizontalPodAutoscaler");
  if (check(hpa, W, "no HPA")) {
    check(hpa.spec.scaleTargetRef?.kind === "Deployment" && hpa.spec.scaleTargetRef?.name === dep.metadata.name, W,
      "HPA must target the relaygate Deployment");
    check(hpa.spec.minReplicas >= 2, W, "HPA minReplicas must be >= 2");
    check((hpa.spec.metrics ?? []).some((m) => m.type === "Resource" && m.resource?.name === "cpu"), W, "HPA needs a CPU metric");
    check((hpa.spec.metrics ?? []).some((m) => m.type === "Pods" && m.pods?.metric?.name === "relaygate_connections_active"), W,
      "HPA needs the pods metric relaygate_connections_active");
  }
  check((dep.spec.replicas ?? 1) >= 2, D, "replicas must be >= 2");
  const pdb = one("PodDisruptionBudget");
  check(pdb && labelsMatch(pdb.spec.selector?.matchLabels, podLabels), W, "no PodDisruptionBudget selecting relaygate pods");
  check(pod.affinity?.podAntiAffinity, D, "pod anti-affinity missing");
}

// The Redis rate-limit store (components/redis).
if (withRedis) {
  const R = `${W} ${REDIS_NAME}`;
  const rdep = one("Deployment", isRedis);
  const rsvc = one("Service", isRedis);
  const rl = config.rate_limit ?? {};
  check(rl.store === "redis", `${W} config.json`, `rate_limit.store must be "redis" with the Redis component`);
  check(rl.replicas === (dep.spec.replicas ?? 1), `${W} config.json`,
    `rate_limit.replicas ${rl.replicas} must be the relaygate Deployment's replicas ${dep.spec.replicas ?? 1} ` +
    "(fail_open divides each limit by it)");
  const hpa = one("HorizontalPodAutoscaler");
  if (hpa)
    check(rl.replicas >= hpa.spec.minReplicas && rl.replicas <= hpa.spec.maxReplicas, `${W} config.json`,
      `rate_limit.replicas ${rl.replicas} outside the HPA's ${hpa.spec.minReplicas}..${hpa.spec.maxReplicas}`);
  if (check(rdep, R, "no relaygate-redis Deployment")) {
    const rpod = rdep.spec.template.spec;
    const rlabels = rdep.spec.template.metadata?.labels ?? {};
    check(labelsMatch(rdep.spec.selector?.matchLabels, rlabels), R, "selector does not match the pod labels");
    check(!labelsMatch(dep.spec.selector?.matchLabels, rlabels), R,
      "Redis pods must not carry the relaygate pod labels (Services, PDB and NetworkPolicies select by them)");
    check((rdep.spec.replicas ?? 1) === 1, R, "one Redis replica (two would split the counts behind the Service)");
    check(rdep.spec.strategy?.type === "Recreate", R, "strategy Recreate: never two Redis pods at once");
    check(rpod.automountServiceAccountToken === false, R, "Redis needs no service account token");
    check(rpod.securityContext?.seccompProfile?.type === "RuntimeDefault", R, "pod seccompProfile RuntimeDefault");
    const rc = (rpod.containers ?? []).find((c) => c.name === "redis");
    if (check(rc && (rpod.containers ?? []).length === 1, R, "one container named redis")) {
      const RC = `${R} container redis`;
      check(/^(docker\.io\/(library\/)?)?redis:\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$/.test(rc.image ?? ""),
        RC, `image ${rc.image}: the official redis image with a version tag (never latest)`);
      strict(rc, RC, true);
      const rport = port(rc, "redis");
      check(rport?.containerPort === 6379, RC, "needs a container port named redis, 6379");
      const a = [...(rc.command ?? []), ...(rc.args ?? [])];
      const opt = (name) => { const i = a.indexOf(name); return i >= 0 ? a[i + 1] : undefined; };
      check(opt("--save") === "" && opt("--appendonly") === "no", RC,
        "no persistence (--save \"\" --appendonly no): rate state is short-lived (deploy/README.md)");
      check(opt("--maxmemory") && opt("--maxmemory-policy") && opt("--maxmemory-policy") !== "noeviction", RC,
        "--maxmemory with an evicting --maxmemory-policy (a full store must not fail every decision)");
      const pings = (p) => /redis-cli\b.*\bping\b/.test((p?.exec?.command ?? []).join(" "));
      check(pings(rc.livenessProbe), RC, "livenessProbe must exec redis-cli ping");
      check(pings(rc.readinessProbe), RC, "readinessProbe must exec redis-cli ping");
      const writable = new Set((rpod.volumes ?? []).filter((v) => v.emptyDir).map((v) => v.name));
      check((rc.volumeMounts ?? []).some((m) => m.mountPath === "/data" && writable.has(m.name)), RC,
        "the image's WORKDIR /data must be an emptyDir (read-only root filesystem)");
    }
    if (check(rsvc, R, "no relaygate-redis Service")) {
      check((rsvc.spec.type ?? "ClusterIP") === "ClusterIP", R, "the Redis Service must be ClusterIP");
      check(labelsMatch(rsvc.spec.selector, rlabels), R, "the Service does not select the Redis pod");
      const sp = (rsvc.spec.ports ?? [])[0];
      check((rsvc.spec.ports ?? []).length === 1 && sp.port === 6379 && sp.targetPort === "redis", R,
        "the Service must expose only 6379 -> the named port redis");
      // rate_limit.address: the Service by name (short or FQDN) and port.
      const [host, p] = String(rl.address ?? "").split(/:(?=\d+$)/);
      const ns = rsvc.metadata.namespace;
      const names = [REDIS_NAME, `${REDIS_NAME}.${ns}`, `${REDIS_NAME}.${ns}.svc`, `${REDIS_NAME}.${ns}.svc.cluster.local`];
      check(names.includes(host) && Number(p) === sp?.port, `${W} config.json`,
        `rate_limit.address ${rl.address} must name the Service ${REDIS_NAME}:${sp?.port}`);
    }
    // Only relaygate reaches Redis; relaygate may reach it.
    const rnp = nps.find((np) => selects(np, rlabels));
    if (check(rnp, R, "no NetworkPolicy selects the Redis pod")) {
      check(rnp.spec.policyTypes?.includes("Ingress") && rnp.spec.policyTypes?.includes("Egress"), R,
        "the Redis NetworkPolicy must restrict Ingress and Egress");
      check((rnp.spec.ingress ?? []).length > 0 && rnp.spec.ingress.every((r) =>
        (r.from ?? []).length > 0 && r.from.every((f) => !f.ipBlock && !f.namespaceSelector &&
          labelsMatch(f.podSelector?.matchLabels, podLabels)) &&
        (r.ports ?? []).length > 0 && r.ports.every((p) => [6379, "redis"].includes(p.port))), R,
      "only relaygate pods may reach Redis, and only on 6379");
      check((rnp.spec.egress ?? []).length === 0, R, "Redis opens no connection: deny all egress");
    }
    check(nps.filter((np) => selects(np, rlabels)).length === 1, R,
      "exactly one NetworkPolicy selects the Redis pod (policies add up: a second could open it)");
    check((rgPolicy?.spec?.egress ?? []).some((r) =>
      (r.to ?? []).some((t) => !t.namespaceSelector && labelsMatch(t.podSelector?.matchLabels, rlabels)) &&
      (r.ports ?? []).some((p) => p.port === 6379)), W,
    "the relaygate NetworkPolicy must allow egress to the Redis pods on 6379");
  }
}

if (extract) {
  mkdirSync(extract, { recursive: true });
  writeFileSync(join(extract, "config.json"), JSON.stringify(config, null, 2));
  if (policyText) writeFileSync(join(extract, "policy.json"), policyText);
  if (config.policy_dir) {
    mkdirSync(join(extract, "policy.d"), { recursive: true });
    for (const [name, text] of Object.entries(policyFiles)) writeFileSync(join(extract, "policy.d", name), text);
  }
  if (credentials) {
    mkdirSync(join(extract, "credentials"), { recursive: true });
    for (const [user, hash] of Object.entries(credentials)) writeFileSync(join(extract, "credentials", user), hash);
  }
  // The Redis container's arguments, one a line, for a real redis-server.
  const rc = withRedis && one("Deployment", isRedis)?.spec?.template?.spec?.containers?.find((c) => c.name === "redis");
  if (rc) writeFileSync(join(extract, "redis-args.txt"), [...(rc.command ?? []), ...(rc.args ?? [])].join("\n") + "\n");
}
report();

function report() {
  for (const p of problems) console.error(`FAIL ${p}`);
  console.log(`${problems.length ? "FAILED" : "ok"}: ${checks} checks, ${problems.length} problems`);
  process.exit(problems.length ? 1 : 0);
}
