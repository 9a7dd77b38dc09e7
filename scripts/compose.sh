#!/usr/bin/env bash
# Docker Compose v2, the `docker compose` CLI plugin that stage 04 runs with (04_container/compose.yaml).
#
#   compose.sh           make `docker compose` answer: nothing to do where it does; else build the
#                        pinned release from its official Go module and install it as a CLI plugin
#   compose.sh --check   exit 0 when `docker compose` answers, 1 with one line saying how to get it
#
# Docker Desktop and Docker's own packages (docker-compose-plugin) ship the plugin. Where a machine
# has neither and no registry or GitHub answers (this repository's CI), it is built from
# github.com/docker/compose/v5 on the Go module proxy, as the project's Makefile builds it, cached
# outside the clone by version: ${COMPOSE_CACHE:-~/.cache/model-serving-layers/compose-VERSION}.
# (Debian's `docker-compose` package is Compose 1.29, the retired Python program: not this.)
set -euo pipefail
COMPOSE_VERSION=v5.6.0
MODULE=github.com/docker/compose/v5
CACHE="${COMPOSE_CACHE:-$HOME/.cache/model-serving-layers/compose-$COMPOSE_VERSION}"
PLUGINS="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

answers() { docker compose version >/dev/null 2>&1; }

if [[ "${1:-}" == --check ]]; then
  answers && exit 0
  echo "no Docker Compose v2 (\`docker compose\`): install Docker's docker-compose-plugin package or Docker Desktop, or run: bash scripts/compose.sh" >&2
  exit 1
fi

if answers; then
  echo "docker compose: $(docker compose version --short 2>/dev/null || echo present)"
  exit 0
fi
command -v docker >/dev/null || { echo "compose.sh: no docker command: install Docker first" >&2; exit 1; }

if [[ ! -x "$CACHE/docker-compose" ]]; then
  export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  command -v go >/dev/null || { echo "compose.sh: no Go toolchain to build Compose $COMPOSE_VERSION with" >&2; exit 1; }
  echo "[compose $(date +%H:%M:%S)] building Docker Compose $COMPOSE_VERSION from $MODULE (once, cached in $CACHE)"
  # `go install module/cmd@version` refuses a go.mod with exclude directives (Compose's has two): build it
  # from a small module of our own that requires it and carries the same excludes, as its own build would.
  src="$CACHE/src"
  mkdir -p "$src"
  gomod="$(go mod download -json "$MODULE@$COMPOSE_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || { echo "compose.sh: could not download $MODULE@$COMPOSE_VERSION from the Go module proxy" >&2; exit 1; }
  {
    printf 'module build.local/compose\n\ngo %s\n\nrequire %s %s\n\n' "$(sed -n 's/^go //p' "$gomod")" "$MODULE" "$COMPOSE_VERSION"
    sed -n '/^exclude (/,/^)/p' "$gomod"
  } >"$src/go.mod"
  (cd "$src" && go build -trimpath -ldflags "-s -w -X $MODULE/internal.Version=$COMPOSE_VERSION" \
     -o "$CACHE/docker-compose" "$MODULE/cmd")
fi
mkdir -p "$PLUGINS"
ln -sf "$CACHE/docker-compose" "$PLUGINS/docker-compose"
echo "docker compose: $(docker compose version --short) (installed as a CLI plugin in $PLUGINS)"
