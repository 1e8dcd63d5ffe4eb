// PromQL cross-checks between the dashboard, the rules and a real scrape.
//
//   node promql-refs.mjs dashboard DASHBOARD.json OUT.rules.yml
//       Checks the dashboard's conventions (datasource variable, every
//       query on ${datasource}, $__rate_interval in every rate/increase
//       window but $__range) and writes every query (targets, template
//       variable queries, annotations) as a recording rule into OUT, with
//       Grafana's variables replaced, for `promtool check rules`.
//   node promql-refs.mjs scrape SCRAPE.txt RULES.yml DASHBOARD.json
//       Every relaygate_* metric and every label matcher name the rules and
//       the dashboard use exists in SCRAPE (a real /metrics of relaygate);
//       every recorded relaygate:* series the dashboard reads is defined by
//       RULES.
import { readFileSync, writeFileSync } from "node:fs";
import YAML from "yaml";
import { checker } from "./checker.mjs";

const [mode, ...rest] = process.argv.slice(2);
const { check, finish } = checker();
const done = (what) => finish(`${what} checks`);

// Every PromQL string of a dashboard, with where it came from.
function dashboardQueries(dash) {
  const out = [];
  const walk = (panels, path) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) out.push({ where: `panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr, panel: p, target: t });
      walk(p.panels, path);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    const m = /^label_values\((.*),\s*\w+\)$/.exec(q ?? "");
    // label_values(selector, label): the selector is PromQL.
    out.push({ where: `variable ${v.name}`, expr: m ? m[1] : q, variable: v });
  }
  for (const a of dash.annotations?.list ?? []) if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: a.expr, annotation: a });
  return out;
}
const substitute = (expr) =>
  expr
    .replaceAll("$__rate_interval", "5m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "1h")
    .replace(/\$\{?(\w+)(?::\w+)?\}?/g, ".*");

// relaygate_* selectors: metric name plus the label names they match on.
function selectors(expr) {
  const out = [];
  const re = /\b(relaygate[_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?/g;
  let m;
  while ((m = re.exec(expr))) {
    const labels = [...(m[3] ?? "").matchAll(/(\w+)\s*(=~|!~|!=|=)/g)].map((x) => x[1]);
    out.push({ metric: m[1], labels });
  }
  return out;
}

if (mode === "dashboard") {
  const [dashFile, outFile] = rest;
  const dash = JSON.parse(readFileSync(dashFile, "utf8"));
  const vars = dash.templating?.list ?? [];
  check(vars.some((v) => v.name === "datasource" && v.type === "datasource" && v.query === "prometheus"),
    "dashboard needs a datasource variable of type prometheus");
  const queries = dashboardQueries(dash);
  check(queries.length > 0, "dashboard has no queries");
  const titles = (dash.panels ?? []).map((p) => p.title.toLowerCase()).join(" | ");
  for (const [what, re] of [["traffic", /messages relayed/], ["decisions by reason", /by reason/],
    ["decisions by tenant", /by tenant/], ["latency", /p99/], ["upstream health", /upstream errors/],
    ["policy version", /policy version/]])
    check(re.test(titles), `dashboard needs a ${what} panel`);
  const rules = [];
  for (const q of queries) {
    check(typeof q.expr === "string" && q.expr.length > 0, `${q.where}: empty query`);
    if (!q.expr) continue;
    const ds = q.target?.datasource ?? q.panel?.datasource ?? q.variable?.datasource ?? q.annotation?.datasource;
    check(ds?.uid === "${datasource}", `${q.where}: datasource must be \${datasource}`);
    for (const w of q.expr.matchAll(/\b(rate|irate|increase)\([^[]*\[([^\]]+)\]/g))
      check(w[2] === "$__rate_interval" || (w[1] === "increase" && w[2] === "$__range"),
        `${q.where}: ${w[1]}() window must be $__rate_interval, not ${w[2]}`);
    check(selectors(q.expr).length > 0, `${q.where}: names no relaygate metric`);
    rules.push({ record: `dashboard:query_${rules.length}`, expr: substitute(q.expr) });
  }
  writeFileSync(outFile, YAML.stringify({ groups: [{ name: "dashboard-queries", rules }] }, { lineWidth: 0 }));
  done("dashboard");
}

if (mode === "scrape") {
  const [scrapeFile, rulesFile, dashFile] = rest;
  // Sample name -> set of label names, from the exposition text.
  const scraped = new Map();
  for (const line of readFileSync(scrapeFile, "utf8").split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s/.exec(line);
    if (!m) continue;
    const names = scraped.get(m[1]) ?? new Set();
    for (const l of (m[3] ?? "").matchAll(/(\w+)="/g)) names.add(l[1]);
    scraped.set(m[1], names);
  }
  check(scraped.size > 0, `${scrapeFile}: no samples`);
  const rulesDoc = YAML.parse(readFileSync(rulesFile, "utf8"));
  const allRules = rulesDoc.groups.flatMap((g) => g.rules);
  const recorded = new Map(allRules.filter((r) => r.record).map((r) => [r.record, r.expr]));
  const dash = JSON.parse(readFileSync(dashFile, "utf8"));
  const uses = [
    ...allRules.map((r) => ({ where: `rule ${r.record ?? r.alert}`, expr: r.expr })),
    ...dashboardQueries(dash).map((q) => ({ where: `dashboard ${q.where}`, expr: q.expr })),
  ];
  // Target labels Prometheus adds; "le" of buckets is checked via the scrape.
  const targetLabels = new Set(["job", "instance", "namespace", "pod", "service", "container", "endpoint"]);
  for (const u of uses) {
    for (const s of selectors(u.expr)) {
      if (s.metric.includes(":")) {
        check(recorded.has(s.metric), `${u.where}: recorded series ${s.metric} is defined by no rule`);
        continue;
      }
      if (!check(scraped.has(s.metric), `${u.where}: metric ${s.metric} is not in the scrape`)) continue;
      for (const l of s.labels)
        if (!targetLabels.has(l))
          check(scraped.get(s.metric).has(l), `${u.where}: ${s.metric} has no label "${l}" in the scrape`);
    }
  }
  done("metric/label reference");
}

console.error("usage: promql-refs.mjs dashboard DASH OUT | scrape SCRAPE RULES DASH");
process.exit(2);
