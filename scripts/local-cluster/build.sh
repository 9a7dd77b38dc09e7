#!/usr/bin/env bash
# Build the local cluster's binaries and images from their official Go modules.
#
#   build.sh            build whatever is missing into $CLUSTER_CACHE/<versions>/ (idempotent)
#   build.sh --check    exit 0 when everything is built, 1 (saying what is missing) otherwise
#
# Nothing here comes from a container registry or GitHub: only the Go module
# proxy (Kubernetes, etcd, cri-tools, metrics-server) and the C source of the
# pause image that ships inside the Kubernetes module. The result is cached
# outside the clone, keyed by version, so a fresh clone on the same machine
# reuses it: ${CLUSTER_CACHE:-~/.cache/model-serving-layers/cluster}.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io
# staging module with a local path (./staging/src/k8s.io/...), which the module
# zip does not contain. So we write a small build module that requires it and
# replaces each staging module with its published v0.N.x release instead (the
# same for etcd, whose server module replaces its siblings with ../).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.sh
source "$HERE/versions.sh"
CACHE="${CLUSTER_CACHE:-$HOME/.cache/model-serving-layers/cluster}"
OUT="$CACHE/kubernetes-$KUBE_VERSION"
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd crictl metrics-server pause)

die() { echo "build.sh: $*" >&2; exit 1; }
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

missing() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$OUT/bin/$b" ]] || echo "$b"; done
}

if [[ "${1:-}" == --check ]]; then
  gone="$(missing | tr '\n' ' ')"
  [[ -z "$gone" ]] || { echo "not built yet in $OUT/bin: $gone(run: make cluster-build)"; exit 1; }
  exit 0
fi

command -v go >/dev/null || die "no Go toolchain (expected /usr/local/go/bin/go): Kubernetes is built from its Go modules"
mkdir -p "$OUT/bin" "$OUT/src"

# A build module in $OUT/src/$1 that requires $2@$3 and replaces "path=>path version" pairs ($4...).
build_module() {
  local name="$1" module="$2" version="$3"
  shift 3
  local dir="$OUT/src/$name"
  mkdir -p "$dir"
  {
    echo "module build.local/$name"
    echo
    echo "go 1.26"
    echo
    echo "require $module $version"
    [[ $# -eq 0 ]] || { echo "replace ("; printf '\t%s\n' "$@"; echo ")"; }
  } >"$dir/go.mod"
  echo "$dir"
}

# Every k8s.io/X => ./staging/src/k8s.io/X of the pinned Kubernetes, replaced by k8s.io/X v0.N.P.
kubernetes() {
  local staging_version="v0.${KUBE_VERSION#v1.}" gomod dir replaces=() ldflags pkg
  log "Kubernetes $KUBE_VERSION: downloading the module"
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
  while read -r staging; do
    replaces+=("$staging => $staging $staging_version")
  done < <(sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod")
  dir="$(build_module kubernetes k8s.io/kubernetes "$KUBE_VERSION" "${replaces[@]}")"
  # Version stamping as hack/lib/version.sh does: unstamped binaries say v0.0.0.
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "Kubernetes $KUBE_VERSION: compiling (the longest step: 10-25 minutes on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$OUT/bin/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
     k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
}

etcd() {
  local dir
  dir="$(build_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" \
    "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION" \
    "go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION" \
    "go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION" \
    "go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION")"
  log "etcd $ETCD_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3)
}

crictl() {
  local dir
  dir="$(build_module crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION")"
  log "crictl $CRICTL_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl)
}

metrics_server() {
  local dir
  dir="$(build_module metrics-server sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION")"
  log "metrics-server $METRICS_SERVER_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/metrics-server" \
     sigs.k8s.io/metrics-server/cmd/metrics-server)
}

# The pause binary as build/pause/Makefile builds it: static, optimised for size.
pause() {
  local src
  command -v gcc >/dev/null || die "no gcc: the pause image is compiled from C (apt-get install gcc libc6-dev)"
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/build/pause/linux/pause.c"
  [[ -f "$src" ]] || go mod download "k8s.io/kubernetes@$KUBE_VERSION"
  log "pause $PAUSE_TAG from $src"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-local" -o "$OUT/bin/pause" "$src"
}

todo="$(missing)"
[[ -n "$todo" ]] || { log "everything is built in $OUT/bin"; exit 0; }
started=$SECONDS
grep -qx -e kube-apiserver -e kube-controller-manager -e kube-scheduler -e kubelet -e kube-proxy -e kubectl <<<"$todo" && kubernetes
grep -qx etcd <<<"$todo" && etcd
grep -qx crictl <<<"$todo" && crictl
grep -qx metrics-server <<<"$todo" && metrics_server
grep -qx pause <<<"$todo" && pause
gone="$(missing | tr '\n' ' ')"
[[ -z "$gone" ]] || die "still missing after the build: $gone"
log "built in $((SECONDS - started)) s into $OUT/bin"
