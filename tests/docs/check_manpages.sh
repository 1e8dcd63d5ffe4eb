#!/usr/bin/env bash
# The man pages (ctest: docs.manpages): docs/man is what scripts/manpages
# renders from this binary's --help and README.md (not stale), and each page
# passes `man --warnings` (groff's warnings) and `lexgrog` (its NAME line
# parses, so whatis/apropos find it).
#
#   tests/docs/check_manpages.sh RELAYGATE_BINARY
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RELAYGATE="${1:?usage: check_manpages.sh RELAYGATE_BINARY}"
for tool in man lexgrog groff; do
  command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool missing (scripts/setup installs it)"; exit 77; }
done
/usr/bin/python3 "$ROOT/scripts/manpages" --check --relaygate "$RELAYGATE"
for page in "$ROOT"/docs/man/*.[0-9]; do
  warnings="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)"
  if [ -n "$warnings" ]; then
    echo "FAIL: man --warnings $page:"; echo "$warnings"; exit 1
  fi
  lexgrog "$page"
done
echo "man pages OK"
