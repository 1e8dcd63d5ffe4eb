// Alert wiring that promtool cannot see.
//
//   node check-alerts.mjs RULES.yml README.md TESTS.yaml...
//
// * Every alert has a runbook_url annotation (no old-style `runbook`):
//   <base>#<anchor>, one base for all alerts, equal to the one README.md
//   documents ("Runbook base in use: `URL`"), and <anchor> is a heading of
//   README.md by GitHub's anchor rules (lower case, punctuation dropped,
//   spaces to '-', -1/-2... for repeats), its own for each alert; every
//   in-page link (#anchor) of README.md names a heading too.
// * RelaygateTargetDown covers a missing target: its expression has
//   `absent(up{job="..."})` next to `up{job="..."} == 0`, and the unit tests
//   make it fire with no up series of that job at all, fire on an up == 0
//   target, and stay silent while the job's targets are up.
//
// Exit 0 when everything holds, 1 with one line per problem otherwise.
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { checker } from "./checker.mjs";

const [rulesFile, readmeFile, ...testFiles] = process.argv.slice(2);
if (!rulesFile || !readmeFile || testFiles.length === 0) {
  console.error("usage: check-alerts.mjs RULES.yml README.md TESTS.yaml...");
  process.exit(2);
}
const { check, finish } = checker();

// GitHub heading anchors of a Markdown file (headings in code fences skipped).
function githubAnchors(markdown) {
  const anchors = new Set();
  const seen = new Map();
  let fence = null;
  for (const line of markdown.split("\n")) {
    const f = /^\s*(```|~~~)/.exec(line);
    if (f) {
      if (fence === null) fence = f[1];
      else if (f[1] === fence) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const slug = h[1]
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

const readme = readFileSync(readmeFile, "utf8");
const anchors = githubAnchors(readme);
const documented = /^Runbook base in use: `([^`]+)`/m.exec(readme)?.[1];
check(documented, `${readmeFile}: no line "Runbook base in use: \`URL\`"`);

// The README's own #links (the runbooks link each other and other sections).
for (const [, a] of readme.matchAll(/\]\(#([^)\s]+)\)/g))
  check(anchors.has(a), `${readmeFile}: link #${a} names no heading`);

const rules = YAML.parse(readFileSync(rulesFile, "utf8"));
const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);
check(alerts.length > 0, `${rulesFile}: no alerts`);
const anchorOwner = new Map();
for (const a of alerts) {
  const where = `${rulesFile}: ${a.alert}`;
  const ann = a.annotations ?? {};
  check(!("runbook" in ann), `${where}: annotation "runbook" is not what Alertmanager/Grafana link; use runbook_url`);
  const url = ann.runbook_url;
  if (!check(typeof url === "string", `${where}: no runbook_url annotation`)) continue;
  const m = /^(https?:\/\/[^#\s]+)#([^#\s]+)$/.exec(url);
  if (!check(m, `${where}: runbook_url ${url} is not <http(s) base>#<anchor>`)) continue;
  const [, base, anchor] = m;
  check(base === documented,
    `${where}: runbook_url base ${base} != the documented "Runbook base in use" ${documented} ` +
      "(node deploy/tools/sync-rules.mjs --runbook-base URL rewrites them all)");
  check(anchors.has(anchor), `${where}: anchor #${anchor} is no heading of ${readmeFile}`);
  check(!anchorOwner.has(anchor), `${where}: shares runbook #${anchor} with ${anchorOwner.get(anchor)}`);
  anchorOwner.set(anchor, a.alert);
}

// RelaygateTargetDown: up == 0, or no target at all.
const td = alerts.find((a) => a.alert === "RelaygateTargetDown");
if (check(td, `${rulesFile}: no RelaygateTargetDown`)) {
  const job = /up\{job="([^"]+)"\}\s*==\s*0/.exec(td.expr)?.[1];
  check(job, `RelaygateTargetDown: expression lacks up{job="..."} == 0`);
  check(job && td.expr.includes(`absent(up{job="${job}"})`),
    `RelaygateTargetDown: expression lacks absent(up{job="${job}"}): it cannot fire when the target is gone`);
  const upOfJob = (s) => /^up\{/.test(s.series) && s.series.includes(`job="${job}"`);
  let firesAbsent = false;
  let firesDown = false;
  let silentUp = false;
  for (const file of testFiles) {
    for (const t of YAML.parse(readFileSync(file, "utf8")).tests ?? []) {
      const ups = (t.input_series ?? []).filter(upOfJob);
      for (const c of t.alert_rule_test ?? []) {
        if (c.alertname !== "RelaygateTargetDown") continue;
        const fired = (c.exp_alerts ?? []).length > 0;
        if (fired && ups.length === 0) firesAbsent = true;
        if (fired && ups.some((s) => /(^|\s)0(x|\s|$)/.test(String(s.values))) &&
          c.exp_alerts.every((e) => e.exp_labels?.instance)) firesDown = true;
        if (!fired && ups.length > 0 && ups.every((s) => /^1x\d+$/.test(String(s.values)))) silentUp = true;
      }
    }
  }
  check(firesAbsent, "RelaygateTargetDown: no unit test makes it fire without any up series of its job (absent)");
  check(firesDown, "RelaygateTargetDown: no unit test makes it fire on a target with up == 0");
  check(silentUp, "RelaygateTargetDown: no unit test keeps it silent while the job's targets are up (up == 1)");
}

finish(`alert wiring checks (${alerts.length} alerts, ${anchorOwner.size} runbook anchors)`);
