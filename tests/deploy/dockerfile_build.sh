#!/usr/bin/env bash
# Runs the Dockerfile's build stage exactly as `docker build` would, without
# a Docker engine: the files its COPY lines name go to a scratch /src, then
# the shell of its `RUN cmake ...` instruction runs there unchanged. So the
# release build users and the image get (no -Werror, -O3) is proven to build.
#
#   tests/deploy/dockerfile_build.sh [WORKDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKERFILE="$ROOT/deploy/Dockerfile"
WORK="${1:-$(mktemp -d /tmp/relaygate-dockerbuild.XXXXXX)}"
mkdir -p "$WORK/src"

# COPY lines of the build stage (up to the first "FROM ... AS runtime").
awk '/^FROM .* AS runtime/{exit} /^COPY /{print $2}' "$DOCKERFILE" | while read -r path; do
  cp -r "$ROOT/${path%/}" "$WORK/src/"
done
# The RUN instruction that starts with cmake, joined over its continuations.
script="$(awk '/^FROM .* AS runtime/{exit}
  /^RUN cmake /{on=1; sub(/^RUN /,"")}
  on{line=$0; cont=sub(/\\$/,"",line); printf "%s ", line; if(!cont) exit}' "$DOCKERFILE")"
if [ -z "$script" ]; then
  echo "dockerfile_build: no 'RUN cmake' instruction in $DOCKERFILE" >&2
  exit 1
fi
echo "dockerfile_build: in $WORK/src:"
echo "$script"
cd "$WORK/src"
bash -euo pipefail -c "$script"
echo "dockerfile_build: OK"
