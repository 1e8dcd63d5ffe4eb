// Writes deploy/prometheus/relaygate-rules.yaml (PrometheusRule) from the
// plain rules file deploy/prometheus/relaygate.rules.yml, which is the
// source of truth: the groups are copied as text (comments and layout
// kept), indented under spec:. `--check` only compares and exits 1 when the
// PrometheusRule is stale.
//
// `--runbook-base URL` first rewrites every alert's runbook_url in
// relaygate.rules.yml to URL#<its anchor> (URL: where deploy/README.md is
// rendered, e.g. https://github.com/OWNER/REPO/blob/main/deploy/README.md),
// the expected ones in tests*.yaml and the "Runbook base in use" line of
// deploy/README.md, then writes the PrometheusRule.
// tests/deploy/check_deploy.sh checks that every runbook_url starts with
// the documented base and that every anchor is a heading there.
//
// The operator's `release` selector label is not written here: the
// kustomize base adds it to the ServiceMonitor and the PrometheusRule
// (deploy/k8s/base/kustomization.yaml, one place).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "prometheus");
const plainFile = join(dir, "relaygate.rules.yml");
let source = readFileSync(plainFile, "utf8");

const baseAt = process.argv.indexOf("--runbook-base");
if (baseAt >= 0 && process.argv.includes("--check")) {
  console.error("--runbook-base rewrites files; run it without --check");
  process.exit(2);
}
if (baseAt >= 0) {
  const base = process.argv[baseAt + 1] ?? "";
  if (!/^https?:\/\/[^\s"#]+$/.test(base)) {
    console.error("--runbook-base needs an http(s) URL without '#' or quotes");
    process.exit(2);
  }
  const rebase = (text) => {
    let n = 0;
    const out = text.replace(/^(\s*runbook_url: ")[^"#]*(#[^"]*")$/gm, (_, pre, anchor) => {
      n++;
      return pre + base + anchor;
    });
    return [out, n];
  };
  let n;
  [source, n] = rebase(source);
  writeFileSync(plainFile, source);
  console.log(`relaygate.rules.yml: ${n} runbook_url annotations now start with ${base}`);
  // The unit tests' expected annotations, and the documented base.
  for (const f of readdirSync(dir).filter((f) => /^tests.*\.yaml$/.test(f))) {
    const [text, m] = rebase(readFileSync(join(dir, f), "utf8"));
    writeFileSync(join(dir, f), text);
    console.log(`${f}: ${m} expected runbook_url annotations rewritten`);
  }
  const readme = join(dir, "..", "README.md");
  const doc = readFileSync(readme, "utf8").replace(/^Runbook base in use: `[^`]*`/m, `Runbook base in use: \`${base}\``);
  writeFileSync(readme, doc);
  console.log("deploy/README.md: \"Runbook base in use\" updated");
}

const start = source.search(/^groups:$/m);
if (start < 0) throw new Error("relaygate.rules.yml: no top-level groups:");
const body = source
  .slice(start)
  .split("\n")
  .map((line) => (line.length ? "  " + line : line))
  .join("\n");
const header = `# GENERATED from relaygate.rules.yml by deploy/tools/sync-rules.mjs: edit
# that file, then run \`node deploy/tools/sync-rules.mjs\`. The operator's
# \`release\` label comes from deploy/k8s/base/kustomization.yaml.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: relaygate
  labels:
    app.kubernetes.io/name: relaygate
spec:
`;
const out = header + body;
const target = join(dir, "relaygate-rules.yaml");
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    // missing counts as stale
  }
  if (current !== out) {
    console.error("relaygate-rules.yaml is stale: run node deploy/tools/sync-rules.mjs");
    process.exit(1);
  }
  console.log("relaygate-rules.yaml matches relaygate.rules.yml");
} else {
  writeFileSync(target, out);
  console.log(`wrote ${target}`);
}
