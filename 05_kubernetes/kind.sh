#!/usr/bin/env bash
# Stage 05 on a local kind cluster. `make stage-5` runs it; so does the harness.
#
#   kind.sh check         say what is missing (docker, kind, kubectl), if anything
#   kind.sh up IMAGE      create (or reuse) the cluster, install metrics-server, deploy IMAGE
#   kind.sh deploy IMAGE [PROXY]  load IMAGE and the nginx sidecar's image PROXY (built from
#                         proxy.Dockerfile when not given) into kind, roll the Deployment to them
#   kind.sh predict       one prediction through the Service (127.0.0.1:8000)
#   kind.sh down          delete the cluster
#
# IMAGE is any local Docker image of stage 04. It is tagged iris-serving:<image id>,
# a tag unique to its contents: kind quick start's advice, because a reused tag
# with imagePullPolicy IfNotPresent would leave the old image running.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="${KIND_CLUSTER:-iris-serving}"
KUBECTL="${KUBECTL:-kubectl}"
NAMESPACE=iris-serving
URL=http://127.0.0.1:8000

die() { echo "kind.sh: $*" >&2; exit 1; }

need() {
  command -v docker >/dev/null || die "docker not found: install Docker Engine or Docker Desktop"
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running? may you use it?)"
  command -v kind >/dev/null || die "kind not found: install kind v0.33.0 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or: go install sigs.k8s.io/kind@v0.33.0)"
  command -v "$KUBECTL" >/dev/null || die "kubectl not found: run 'make setup' (it installs kubectl into .venv) or install kubectl 1.37"
}

cluster_up() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "reusing kind cluster '$CLUSTER'"
  else
    kind create cluster --name "$CLUSTER" --config "$HERE/k8s/kind/kind-cluster.yaml" --wait 120s
  fi
  "$KUBECTL" config use-context "kind-$CLUSTER" >/dev/null
  # metrics-server feeds pod CPU to the HorizontalPodAutoscaler (fetched from its pinned release).
  "$KUBECTL" apply -k "$HERE/k8s/metrics-server" >/dev/null
}

# The nginx sidecar's image, built from proxy.Dockerfile (Debian's nginx on the same base as the
# server's image; Docker's cache makes an unchanged rebuild instant); prints its id.
proxy_image() {
  docker build --quiet --file "$HERE/proxy.Dockerfile" "$HERE" 2>/dev/null ||
    die "building the proxy image from $HERE/proxy.Dockerfile failed (make base-image first?)"
}

deploy() {
  local image="$1" proxy="${2:-}" tag proxy_tag overlay
  docker image inspect "$image" >/dev/null 2>&1 || die "no local image '$image': build stage 04 first (make stage-5 does)"
  tag="iris-serving:$(docker image inspect --format '{{.Id}}' "$image" | sed 's/^sha256://' | cut -c1-12)"
  docker tag "$image" "$tag"
  kind load docker-image "$tag" --name "$CLUSTER"
  [[ -n "$proxy" ]] || proxy="$(proxy_image)"
  proxy_tag="iris-proxy:$(docker image inspect --format '{{.Id}}' "$proxy" | sed 's/^sha256://' | cut -c1-12)"
  docker tag "$proxy" "$proxy_tag"
  kind load docker-image "$proxy_tag" --name "$CLUSTER"
  # A throwaway overlay that only sets the tag: the committed files stay unchanged.
  overlay="$(mktemp -d)"
  trap 'rm -rf "$overlay"' RETURN
  cat >"$overlay/kustomization.yaml" <<EOF
resources:
  - $(realpath --relative-to="$overlay" "$HERE/k8s/kind")
images:
  - name: iris-serving
    newTag: ${tag#iris-serving:}
  - name: iris-proxy
    newTag: ${proxy_tag#iris-proxy:}
EOF
  "$KUBECTL" apply -k "$overlay"
  "$KUBECTL" rollout status deployment/iris -n "$NAMESPACE" --timeout=180s
}

predict() {
  command -v curl >/dev/null || die "curl not found"
  curl --fail-with-body --silent --show-error --max-time 10 -H 'Content-Type: application/json' \
    -d '{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}' \
    "$URL/predict"
  echo
}

case "${1:-}" in
  check)
    need
    ;;
  up)
    [ -n "${2:-}" ] || die "usage: kind.sh up IMAGE"
    need
    cluster_up
    deploy "$2" "${3:-}"
    ;;
  deploy)
    [ -n "${2:-}" ] || die "usage: kind.sh deploy IMAGE [PROXY_IMAGE]"
    need
    deploy "$2" "${3:-}"
    ;;
  predict)
    predict
    ;;
  down)
    if ! command -v kind >/dev/null; then echo "kind not found: no cluster to delete"; exit 0; fi
    kind delete cluster --name "$CLUSTER"
    ;;
  *)
    die "usage: kind.sh check | up IMAGE | deploy IMAGE | predict | down"
    ;;
esac
