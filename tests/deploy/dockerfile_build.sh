#!/usr/bin/env bash
# Runs the Dockerfile's build stage exactly as `docker build` would, without
# a Docker engine: the files its COPY lines name go to a scratch /src (at
# their destinations), then the shell of its `RUN cmake ...` instruction runs
# there unchanged, with REVISION set as `--build-arg REVISION=$(git rev-parse
# --short=12 HEAD)` would set it. So the release build users, the package and
# the image get (deploy/release.cmake: no -Werror, hardening) is proven to
# build, and the binary is proven to report that revision.
#
#   tests/deploy/dockerfile_build.sh [WORKDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKERFILE="$ROOT/deploy/Dockerfile"
WORK="${1:-$(mktemp -d /tmp/relaygate-dockerbuild.XXXXXX)}"
mkdir -p "$WORK/src"

# COPY lines of the build stage (up to the first "FROM ... AS runtime").
awk '/^FROM .* AS runtime/{exit} /^COPY /{print $2, $3}' "$DOCKERFILE" | while read -r path dest; do
  mkdir -p "$(dirname "$WORK/src/${dest%/}")"
  cp -r "$ROOT/${path%/}" "$WORK/src/${dest%/}"
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
REVISION="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
echo "dockerfile_build: REVISION=$REVISION"
cd "$WORK/src"
REVISION="$REVISION" bash -euo pipefail -c "$script"
version="$("$WORK/src/build/gateway/relaygate" --version)"
case "$version" in
  *"(revision $REVISION)"*) echo "dockerfile_build: $version" ;;
  *) echo "dockerfile_build: --version says '$version', not revision $REVISION" >&2; exit 1 ;;
esac
echo "dockerfile_build: OK"
