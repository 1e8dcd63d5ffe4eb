// Lints deploy/Dockerfile offline: dockerfile-utils' validator (the
// checks of the VS Code Docker language server) plus a list of rules in the
// spirit of hadolint, which is not packaged for Debian nor usable offline.
//
//   node check-dockerfile.mjs Dockerfile                     lint, exit 0/1
//   node check-dockerfile.mjs --runtime-packages Dockerfile  print the final
//       stage's apt packages, one a line (for the ldd completeness test)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { DockerfileParser } = require("dockerfile-ast");
const { validate } = require("dockerfile-utils");

const args = process.argv.slice(2);
const printPackages = args[0] === "--runtime-packages";
const file = printPackages ? args[1] : args[0];
const text = readFileSync(file, "utf8");
const df = DockerfileParser.parse(text);
const instructions = df.getInstructions();

// Group instructions by stage.
const stages = [];
for (const ins of instructions) {
  if (ins.getKeyword() === "FROM") stages.push({ from: ins, body: [] });
  else if (stages.length) stages[stages.length - 1].body.push(ins);
}
// The instruction's full argument text with line continuations joined.
const argText = (ins) =>
  text
    .split("\n")
    .slice(ins.getRange().start.line, ins.getRange().end.line + 1)
    .join("\n")
    .replace(/^\s*\w+\s+/, "")
    .replace(/\\\n/g, " ")
    .replace(/\s+/g, " ")
    .trim();
const aptPackages = (cmd) => {
  const m = cmd.match(/apt-get install ([^&;|]*)/);
  if (!m) return [];
  return m[1].split(/\s+/).filter((w) => w && !w.startsWith("-"));
};

if (printPackages) {
  const last = stages[stages.length - 1];
  for (const ins of last.body)
    if (ins.getKeyword() === "RUN") for (const p of aptPackages(argText(ins))) console.log(p);
  process.exit(0);
}

const problems = [];
let rules = 0;
const rule = (ok, line, msg) => {
  rules++;
  if (!ok) problems.push(`${file}:${line + 1}: ${msg}`);
};

// 0. dockerfile-utils validator: syntax, flags, instruction arguments.
for (const d of validate(text, {})) rule(false, d.range.start.line, `dockerfile-utils: ${d.message}`);

// 1. Stages and base images.
rule(stages.length >= 2, 0, "must be multi-stage (build stage + runtime stage)");
for (const { from } of stages) {
  const line = from.getRange().start.line;
  const image = from.getImageName();
  const tag = from.getImageTag();
  const digest = from.getImageDigest?.();
  rule(tag || digest, line, `FROM ${image} must pin a tag or digest`);
  rule(tag !== "latest", line, "FROM must not use the latest tag");
  rule(digest || /^\d+(\.\d+)+(-slim)?$/.test(tag ?? ""), line,
    `FROM ${image}:${tag}: pin a Debian point release (12.N / 12.N-slim), not a moving tag`);
  rule(from.getBuildStage(), line, "every stage needs a name (FROM ... AS name)");
}
const first = stages[0]?.from;
const last = stages[stages.length - 1];
rule(first?.getImageName() === "debian" && /^12\./.test(first?.getImageTag() ?? ""), 0, "build stage must be debian:12.x");
rule(last?.from.getImageName() === "debian" && /^12\.\d+-slim$/.test(last?.from.getImageTag() ?? ""), 0,
  "runtime stage must be debian:12.x-slim");

// 2. RUN rules.
const shellHasPipefail = instructions.some((i) => i.getKeyword() === "SHELL" && /pipefail/.test(argText(i)));
for (const ins of instructions) {
  const kw = ins.getKeyword();
  const line = ins.getRange().start.line;
  const a = argText(ins);
  if (kw === "RUN") {
    if (/apt-get install/.test(a)) {
      rule(/apt-get update/.test(a) && a.indexOf("apt-get update") < a.indexOf("apt-get install"), line,
        "apt-get install must follow apt-get update in the same RUN (DL3009 cache)");
      rule(/--no-install-recommends/.test(a), line, "apt-get install needs --no-install-recommends (DL3015)");
      rule(/apt-get install (-\S+ )*-y\b/.test(a) || /-y /.test(a), line, "apt-get install needs -y (DL3014)");
      rule(/rm -rf \/var\/lib\/apt\/lists\/\*/.test(a), line, "delete /var/lib/apt/lists/* in the same RUN (DL3009)");
    }
    rule(!/apt-get (dist-)?upgrade/.test(a), line, "no apt-get upgrade: pin the base image instead (DL3005)");
    rule(!/\bsudo\b/.test(a), line, "no sudo (DL3004)");
    rule(!/\b(curl|wget)\b[^&;]*\|\s*(ba)?sh/.test(a), line, "no curl | sh");
    rule(!/(^|&&|;)\s*cd\s/.test(a), line, "use WORKDIR instead of cd (DL3003)");
    rule(!/[^|]\|[^|]/.test(a) || shellHasPipefail, line, "pipes need SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"] (DL4006)");
  }
  rule(kw !== "ADD", line, "use COPY, not ADD (DL3020); never ADD a URL");
  rule(kw !== "MAINTAINER", line, "MAINTAINER is deprecated (DL4000)");
  if (kw === "WORKDIR") rule(a.startsWith("/"), line, "WORKDIR must be absolute (DL3000)");
  if (kw === "ENV" || kw === "ARG")
    rule(!/(PASSWORD|SECRET|TOKEN|PRIVATE_KEY)/i.test(a), line, "no secrets in ENV/ARG");
}

// 3. Runtime stage: what it contains and how it runs.
const body = last?.body ?? [];
const kw = (k) => body.filter((i) => i.getKeyword() === k);
const runtimePkgs = kw("RUN").flatMap((i) => aptPackages(argText(i)));
rule(runtimePkgs.length > 0, 0, "runtime stage must install its shared libraries explicitly");
rule(runtimePkgs.every((p) => !/-dev$|^build-essential$|^g\+\+|^gcc|^cmake$|^clang/.test(p)), 0,
  `runtime stage installs build tools or -dev packages: ${runtimePkgs.join(" ")}`);
for (const c of kw("COPY")) {
  const from = c.getFlags().find((f) => f.getName() === "from");
  rule(from, c.getRange().start.line, "runtime stage copies only artifacts from the build stage (COPY --from=build)");
}
const users = kw("USER");
const lastUser = users.length ? argText(users[users.length - 1]) : "";
rule(users.length > 0, 0, "runtime stage must set USER (DL3002)");
rule(/^[1-9]\d*(:[1-9]\d*)?$/.test(lastUser), users.at(-1)?.getRange().start.line ?? 0,
  `USER must be a numeric non-root uid[:gid] (runAsNonRoot can verify it), got "${lastUser}"`);
const entry = kw("ENTRYPOINT");
rule(entry.length === 1, 0, "exactly one ENTRYPOINT in the runtime stage");
if (entry.length) {
  const raw = argText(entry[0]);
  let parsed = null;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // shell form
  }
  rule(Array.isArray(parsed), entry[0].getRange().start.line, "ENTRYPOINT must use the exec (JSON) form (DL3025)");
  rule(JSON.stringify(parsed) === JSON.stringify(["relaygate", "run", "--config", "/etc/relaygate/config.json"]),
    entry[0].getRange().start.line, `ENTRYPOINT must be ["relaygate","run","--config","/etc/relaygate/config.json"]`);
}
for (const c of kw("CMD")) rule(false, c.getRange().start.line, "no CMD: the ENTRYPOINT is complete");
const exposed = kw("EXPOSE").flatMap((i) => argText(i).split(/\s+/));
for (const p of ["2525", "9025"]) rule(exposed.includes(p), 0, `EXPOSE ${p} missing`);
rule(kw("VOLUME").length === 0, 0, "no VOLUME: Kubernetes mounts config, policy and TLS");

for (const p of problems) console.error(`FAIL ${p}`);
console.log(`${problems.length ? "FAILED" : "ok"}: ${rules} Dockerfile rules, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
