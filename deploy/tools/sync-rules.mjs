// Writes deploy/prometheus/relaygate-rules.yaml (PrometheusRule) from the
// plain rules file deploy/prometheus/relaygate.rules.yml, which is the
// source of truth: the groups are copied as text (comments and layout
// kept), indented under spec:. `--check` only compares and exits 1 when the
// PrometheusRule is stale.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "prometheus");
const source = readFileSync(join(dir, "relaygate.rules.yml"), "utf8");
const start = source.search(/^groups:$/m);
if (start < 0) throw new Error("relaygate.rules.yml: no top-level groups:");
const body = source
  .slice(start)
  .split("\n")
  .map((line) => (line.length ? "  " + line : line))
  .join("\n");
const header = `# GENERATED from relaygate.rules.yml by deploy/tools/sync-rules.mjs: edit
# that file, then run \`node deploy/tools/sync-rules.mjs\`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: relaygate
  labels:
    app.kubernetes.io/name: relaygate
    # Matches the default ruleSelector of kube-prometheus-stack releases
    # named "prometheus"; adjust to your Prometheus' ruleSelector.
    release: prometheus
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
