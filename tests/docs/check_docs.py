#!/usr/bin/env python3
"""Checks the documentation tables against the tables in the code.

Each has one source: the reason table (gateway/common/reason.cpp), the
metric definitions (gateway/metrics/metrics.cpp) and the lint rules
(policy/engine/lint_rules.hpp). The README tables must list exactly those
rows, with the same values:

- README.md "Reason codes": one row per reason, reply `code enhanced` as in
  the table (a few reasons whose reply is not the table's own say so in
  parentheses, listed in NOT_SENT_FROM_TABLE);
- README.md "Metrics": one row per metric, with its type;
- policy/README.md "The linter": every rule id once, with its severity;
- README.md config bounds (gateway/config/bounds.hpp) between its markers,
  row for row (`check_docs.py ROOT --print-bounds` prints it), and the
  defaults of the README's config example equal to the table's.
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
problems = []

BOUND = re.compile(r'^\s*\{"([a-z_.\[\]]+)", (\d+), (\d+), (\d+), "([^"]*)"\},$', re.M)
bounds = BOUND.findall((root / "gateway/config/bounds.hpp").read_text())
bounds_table = ["| Key | Default | Min | Max | Why |", "|---|---|---|---|---|"]
bounds_table += [f"| `{n}` | {d} | {lo} | {hi} | {why} |" for n, d, lo, hi, why in bounds]
if "--print-bounds" in sys.argv:
    print("\n".join(bounds_table))
    sys.exit(0)

# Reasons whose reply the client never sees as the table's own text: the
# relay's reply is passed on, nothing is sent, or RSET's 250 is the reply.
NOT_SENT_FROM_TABLE = {"upstream_rejected", "client_disconnected", "transaction_reset"}


def section_table(text, heading, doc):
    """The rows (lists of cells) of the first table after `heading`."""
    start = text.find(f"\n{heading}\n")
    if start < 0:
        problems.append(f"{doc} has no section {heading!r}")
        return []
    rows, in_table = [], False
    for line in text[start + len(heading) + 2:].splitlines():
        if line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif in_table:
            break
    return rows[1:]  # without the header row


def ticked(cell):
    return re.findall(r"`([^`]+)`", cell)


def compare(kind, doc, documented, actual):
    """documented: list of (name, value); actual: dict name -> value."""
    seen = set()
    for name, value in documented:
        if name not in actual:
            problems.append(f"{doc} lists {kind} {name}, which the code does not have")
        elif name in seen:
            problems.append(f"{doc} lists {kind} {name} twice")
        elif value is not None and value != actual[name]:
            problems.append(f"{doc} says {kind} {name} is {value!r}; the code says {actual[name]!r}")
        seen.add(name)
    for name in actual:
        if name not in seen:
            problems.append(f"{doc} does not document {kind} {name}")


def minimum(kind, found, at_least):
    if len(found) < at_least:
        problems.append(f"parser found only {len(found)} {kind} (expected at least {at_least})")


# --- reasons -----------------------------------------------------------------
reason_src = (root / "gateway/common/reason.cpp").read_text()
reasons = {label: f"{code} {enhanced}" for label, code, enhanced in re.findall(
    r'ReasonInfo\{R::\w+,\s*"([a-z0-9_]+)",\s*(\d{3}),\s*"([0-9.]+)"', reason_src)}
enum_src = (root / "gateway/common/reason.hpp").read_text()
enum_body = enum_src[enum_src.index("enum class Reason"):]
enum_body = enum_body[:enum_body.index("};")]
enum_rows = re.findall(r"^\s+([a-z0-9_]+),", enum_body, re.M)
if len(enum_rows) != len(reasons):
    problems.append(f"parser read {len(reasons)} reason rows for {len(enum_rows)} enum values")
minimum("reasons", reasons, 40)

readme = (root / "README.md").read_text()
documented = []
for cells in section_table(readme, "### Reason codes", "README.md"):
    names = ticked(cells[0])
    if len(names) != 1:
        problems.append(f"README.md reason row {cells[0]!r}: one reason per row")
        continue
    reply = cells[1]
    if reply.startswith("(") and names[0] in NOT_SENT_FROM_TABLE:
        reply = None
    documented.append((names[0], reply))
compare("reason", "README.md", documented, reasons)

# --- metrics -----------------------------------------------------------------
metrics_src = (root / "gateway/metrics/metrics.cpp").read_text()
metrics = {name: kind.lower() for kind, name in re.findall(
    r'Build(Counter|Gauge|Histogram)\(\)\s*\.Name\("(relaygate_[a-z0-9_]+)"\)', metrics_src)}
if len(metrics) != len(re.findall(r"\.Name\(", metrics_src)):
    problems.append("metrics.cpp has a .Name( the parser did not read")
minimum("metrics", metrics, 10)
documented = []
for cells in section_table(readme, "### Metrics (`GET /metrics` on the admin port)", "README.md"):
    names = ticked(cells[0])
    documented += [(n, cells[1]) for n in names]
compare("metric", "README.md", documented, metrics)

# --- lint rules --------------------------------------------------------------
rules_src = (root / "policy/engine/lint_rules.hpp").read_text()
rules = {rule: sev for rule, sev in re.findall(
    r'LintRule\{"([a-z0-9_]+)",\s*Severity::(error|warning)\}', rules_src)}
if len(rules) != rules_src.count("LintRule{"):
    problems.append("lint_rules.hpp has a LintRule{ the parser did not read")
minimum("lint rules", rules, 20)
policy_readme = (root / "policy/README.md").read_text()
documented = []
for cells in section_table(policy_readme, "## The linter", "policy/README.md"):
    documented += [(n, cells[1]) for n in ticked(cells[0])]
compare("lint rule", "policy/README.md", documented, rules)

# --- config bounds -------------------------------------------------------------
minimum("config bounds", bounds, 30)
section = re.search(r"<!-- bounds:begin -->\n(.*?)<!-- bounds:end -->", readme, re.S)
if not section or section.group(1).strip().splitlines() != bounds_table:
    problems.append("README.md does not show the config bounds table as gateway/config/bounds.hpp "
                    "has it (tests/docs/check_docs.py . --print-bounds prints it)")
example = re.search(r"### Config .*?```json\n(.*?)```", readme, re.S)
try:
    config = json.loads(example.group(1)) if example else None
except ValueError as e:
    config = None
    problems.append(f"README.md config example is not valid JSON ({e})")
for name, default, _, _, _ in bounds if config else []:
    node = config
    for part in name.split("."):
        node = node[0] if isinstance(node, list) else node
        node = node.get(part.removesuffix("[]")) if isinstance(node, dict) else None
    if node != int(default):
        problems.append(f"README.md config example does not show {name} with its default "
                        f"{default} (it shows {node})")

for p in problems:
    print(p)
print(f"checked {len(reasons)} reason codes, {len(metrics)} metrics, {len(rules)} lint rules "
      f"and {len(bounds)} config bounds")
sys.exit(1 if problems else 0)
