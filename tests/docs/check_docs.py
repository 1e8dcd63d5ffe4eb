#!/usr/bin/env python3
"""Checks that the README documents every reason code and every metric.

The reason table (gateway/common/reason.cpp) and the metric definitions
(gateway/metrics/metrics.cpp) are the single sources; an operator reading
README.md must find each label and each metric name there.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
readme = (root / "README.md").read_text()
reasons = re.findall(r'ReasonInfo\{R::\w+,\s*"([a-z0-9_]+)"', (root / "gateway/common/reason.cpp").read_text())
metrics = re.findall(r'\.Name\("(relaygate_[a-z0-9_]+)"\)', (root / "gateway/metrics/metrics.cpp").read_text())

missing = [f"reason {r}" for r in reasons if f"`{r}`" not in readme]
missing += [f"metric {m}" for m in metrics if f"`{m}`" not in readme]
if len(reasons) < 40 or len(metrics) < 10:
    missing.append(f"parser found only {len(reasons)} reasons / {len(metrics)} metrics")
for m in missing:
    print(f"README.md does not document {m}")
print(f"checked {len(reasons)} reason codes and {len(metrics)} metrics")
sys.exit(1 if missing else 0)
