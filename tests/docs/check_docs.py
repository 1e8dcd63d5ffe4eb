#!/usr/bin/env python3
"""Checks that the README documents every reason code, every metric and
every config bound.

The reason table (gateway/common/reason.cpp), the metric definitions
(gateway/metrics/metrics.cpp) and the config bounds (gateway/config/bounds.hpp)
are the single sources; an operator reading README.md must find each label
and each metric name there, the bounds table exactly as bounds.hpp has it
(`check_docs.py ROOT --print-bounds` prints it), and the defaults of the
README's config example equal to the table's.
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
readme = (root / "README.md").read_text()

BOUND = re.compile(r'^\s*\{"([a-z_.\[\]]+)", (\d+), (\d+), (\d+), "([^"]*)"\},$', re.M)
bounds = BOUND.findall((root / "gateway/config/bounds.hpp").read_text())
table = ["| Key | Default | Min | Max | Why |", "|---|---|---|---|---|"]
table += [f"| `{n}` | {d} | {lo} | {hi} | {why} |" for n, d, lo, hi, why in bounds]
if "--print-bounds" in sys.argv:
    print("\n".join(table))
    sys.exit(0)
reasons = re.findall(r'ReasonInfo\{R::\w+,\s*"([a-z0-9_]+)"', (root / "gateway/common/reason.cpp").read_text())
metrics = re.findall(r'\.Name\("(relaygate_[a-z0-9_]+)"\)', (root / "gateway/metrics/metrics.cpp").read_text())

missing = [f"reason {r}" for r in reasons if f"`{r}`" not in readme]
missing += [f"metric {m}" for m in metrics if f"`{m}`" not in readme]
if len(reasons) < 40 or len(metrics) < 10 or len(bounds) < 30:
    missing.append(f"parser found only {len(reasons)} reasons / {len(metrics)} metrics / "
                   f"{len(bounds)} bounds")

# The bounds table between its markers, row for row.
section = re.search(r"<!-- bounds:begin -->\n(.*?)<!-- bounds:end -->", readme, re.S)
if not section or section.group(1).strip().splitlines() != table:
    missing.append("the config bounds table as gateway/config/bounds.hpp has it "
                   "(tests/docs/check_docs.py . --print-bounds prints it)")

# The config example's values are the defaults.
example = re.search(r"### Config .*?```json\n(.*?)```", readme, re.S)
try:
    config = json.loads(example.group(1)) if example else None
except ValueError as e:
    config = None
    missing.append(f"a config example that is valid JSON ({e})")
for name, default, _, _, _ in bounds if config else []:
    node = config
    for part in name.split("."):
        node = node[0] if isinstance(node, list) else node
        node = node.get(part.removesuffix("[]")) if isinstance(node, dict) else None
    if node != int(default):
        missing.append(f"config key {name} with its default {default} in the example "
                       f"(it shows {node})")
for m in missing:
    print(f"README.md does not document {m}")
print(f"checked {len(reasons)} reason codes, {len(metrics)} metrics and {len(bounds)} config bounds")
sys.exit(1 if missing else 0)
