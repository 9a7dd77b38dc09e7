#!/usr/bin/env bash
# A one-node Kubernetes from official binaries, for machines where kind cannot
# run because no registry answers (kind's node image must be pulled). The same
# steps as Kubernetes' own hack/local-up-cluster.sh, written out short:
# certificates and kubeconfigs generated here, then etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, a containerd of its own, kubelet and
# kube-proxy as host processes, a bridge CNI network, and metrics-server.
#
#   cluster.sh check     say in one line what this machine lacks, if anything (exit 1)
#   cluster.sh up        build what is missing (build.sh), then start the cluster (idempotent)
#   cluster.sh status    exit 0 when the API answers
#   cluster.sh up IMAGE  the same, then deploy IMAGE (what `kind.sh up IMAGE` does on kind)
#   cluster.sh deploy IMAGE [PROXY]  import IMAGE and the nginx sidecar's image PROXY (built
#                        from 05_kubernetes/proxy.Dockerfile when not given), roll stage 05 (k8s/local) to them
#   cluster.sh predict   one prediction through the Service (127.0.0.1:8000)
#   cluster.sh load IMG  copy a local Docker image into the cluster's containerd
#   cluster.sh down      stop everything and remove every trace: processes, pods,
#                        mounts, network interfaces, iptables rules, state
#   cluster.sh env       print `export KUBECONFIG=...` for your shell
#
# Needs root (the kubelet manages cgroups, mounts and network namespaces), a
# running Docker engine (images are built with it, then imported), and from
# Debian: containerd, runc, containernetworking-plugins, iptables, conntrack, gcc.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE5="$(cd "$HERE/../../05_kubernetes" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.sh
source "$HERE/versions.sh"
CACHE="${CLUSTER_CACHE:-$HOME/.cache/model-serving-layers/cluster}"
BIN="$CACHE/kubernetes-$KUBE_VERSION/bin"
# Everything the running cluster writes lives under these two folders (down removes them).
STATE="${CLUSTER_STATE:-/var/lib/model-serving-cluster}"
RUN=/run/model-serving-cluster
CERTS="$STATE/pki"
LOGS="$STATE/logs"
export KUBECONFIG="$STATE/admin.kubeconfig"
SOCK="$RUN/containerd.sock"
CNI_BIN=/usr/lib/cni # Debian's containernetworking-plugins (upstream: /opt/cni/bin)
NODE="$(hostname | tr '[:upper:]' '[:lower:]')"
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.0.0.0/24
API_SERVICE_IP=10.0.0.1
# NodePorts from 8000, so the stage-05 Service can answer on 127.0.0.1:8000 like every stage.
NODE_PORTS=8000-32767
BRIDGE=cni-iris0
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_TAG"
METRICS_IMAGE="registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION"

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
kubectl() { "$BIN/kubectl" "$@"; }

# The node's address, on the loopback interface: the API server, the kubelet and the kubernetes
# Service's endpoint live there, so pods reach them (through the bridge, the host's own address)
# while no other machine does: the host's real interfaces carry none of the cluster's ports (a
# workshop's Wi-Fi sees nothing), and an INPUT rule drops packets for it from anywhere but lo and
# the pod bridge. As kind does: its API server answers on 127.0.0.1 and its node sits on Docker's
# host-only network. Not 127.0.0.1 itself: in a pod, 127.0.0.1 is the pod's own loopback, so the
# kubernetes Service needs an endpoint address that pods can route to.
NODE_ADDRESS=10.87.0.1
NODE_ONLY_CHAIN=IRIS-NODE-ADDRESS

node_address_up() {
  ip -4 addr show dev lo | grep -q " $NODE_ADDRESS/" || ip addr add "$NODE_ADDRESS/32" dev lo
  iptables -w -N "$NODE_ONLY_CHAIN" 2>/dev/null || iptables -w -F "$NODE_ONLY_CHAIN"
  iptables -w -A "$NODE_ONLY_CHAIN" -i lo -j RETURN
  iptables -w -A "$NODE_ONLY_CHAIN" -i "$BRIDGE" -j RETURN
  iptables -w -A "$NODE_ONLY_CHAIN" -j DROP
  iptables -w -C INPUT -d "$NODE_ADDRESS/32" -j "$NODE_ONLY_CHAIN" 2>/dev/null ||
    iptables -w -I INPUT -d "$NODE_ADDRESS/32" -j "$NODE_ONLY_CHAIN"
}

node_address_down() {
  while iptables -w -D INPUT -d "$NODE_ADDRESS/32" -j "$NODE_ONLY_CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$NODE_ONLY_CHAIN" 2>/dev/null && iptables -w -X "$NODE_ONLY_CHAIN" 2>/dev/null || true
  ip addr del "$NODE_ADDRESS/32" dev lo 2>/dev/null || true
}

# What this machine lacks, one line, empty when nothing.
lacks() {
  [[ "$(uname -s)" == Linux ]] || { echo "Linux is required (the kubelet runs on Linux only; use kind elsewhere)"; return; }
  [[ $EUID -eq 0 ]] || { echo "root is required (the kubelet manages cgroups, mounts and network namespaces)"; return; }
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] ||
    { echo "no usable cgroups (neither v1 memory controller nor cgroup v2) under /sys/fs/cgroup"; return; }
  command -v docker >/dev/null || { echo "no docker client: images are built with Docker, then imported"; return; }
  docker info >/dev/null 2>&1 || { echo "the Docker engine does not answer (is dockerd running?)"; return; }
  local cmd
  for cmd in containerd runc iptables conntrack ip openssl; do
    command -v "$cmd" >/dev/null || { echo "$cmd not found (Debian: apt-get install containerd runc iptables conntrack iproute2 openssl)"; return; }
  done
  [[ -x "$CNI_BIN/bridge" ]] || { echo "no CNI plugins in $CNI_BIN (Debian: apt-get install containernetworking-plugins)"; return; }
  if ! bash "$HERE/build.sh" --check >/dev/null; then
    [[ -x /usr/local/go/bin/go ]] || command -v go >/dev/null ||
      { echo "Kubernetes is not built yet and there is no Go toolchain to build it"; return; }
    command -v gcc >/dev/null || { echo "Kubernetes is not built yet and there is no gcc for the pause image"; return; }
  fi
}

api_up() { [[ -f "$KUBECONFIG" && -x "$BIN/kubectl" ]] && kubectl get --raw /readyz >/dev/null 2>&1; }

# Wait up to $1 seconds for the command that follows.
wait_for() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not happen within ${seconds} s (logs: $LOGS)"
    sleep 1
  done
}

# ---- certificates (local-up-cluster uses cfssl; openssl does the same here) -----------------
# cert NAME CN [O] [SAN]: a key and a certificate signed by ca (or $CA_NAME).
cert() {
  local name="$1" cn="$2" org="${3:-}" san="${4:-}" ca="${CA_NAME:-ca}" subj
  subj="/CN=$cn${org:+/O=$org}"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$CERTS/$name.key" -subj "$subj" -out "$CERTS/$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s' \
    "${san:+subjectAltName=$san}" >"$CERTS/$name.ext"
  openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/$ca.crt" -CAkey "$CERTS/$ca.key" -CAcreateserial \
    -days 365 -extfile "$CERTS/$name.ext" -out "$CERTS/$name.crt" 2>/dev/null
  rm -f "$CERTS/$name.csr" "$CERTS/$name.ext"
}

ca() {
  openssl req -x509 -new -newkey rsa:2048 -nodes -days 365 -keyout "$CERTS/$1.key" -out "$CERTS/$1.crt" \
    -subj "/CN=$2" 2>/dev/null
}

# kubeconfig NAME: $STATE/NAME.kubeconfig with the client certificate NAME.
kubeconfig() {
  cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      certificate-authority: $CERTS/ca.crt
      server: https://$NODE_ADDRESS:6443
users:
  - name: $1
    user:
      client-certificate: $CERTS/$1.crt
      client-key: $CERTS/$1.key
contexts:
  - name: local
    context: {cluster: local, user: $1}
current-context: local
EOF
}

certificates() {
  [[ -f "$CERTS/admin.crt" ]] && return
  log "certificates and kubeconfigs in $CERTS"
  mkdir -p "$CERTS"
  ca ca "model-serving-local-ca"
  cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:$NODE_ADDRESS,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kube-proxy system:kube-proxy
  cert kubelet "system:node:$NODE" system:nodes "IP:127.0.0.1,IP:$NODE_ADDRESS,DNS:$NODE"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  # The aggregation layer (metrics.k8s.io is served by metrics-server through it) has a CA of its own.
  ca front-proxy-ca front-proxy-ca
  CA_NAME=front-proxy-ca cert front-proxy-client front-proxy-client
  openssl genrsa -out "$CERTS/service-account.key" 2048 2>/dev/null
  openssl rsa -in "$CERTS/service-account.key" -pubout -out "$CERTS/service-account.pub" 2>/dev/null
  local name
  for name in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$name"; done
}

# put FILE: write stdin to FILE unless it already holds exactly that (kube-proxy, for one,
# exits when its configuration file changes under it).
put() {
  local new
  new="$(cat)"
  [[ -f "$1" && "$(cat "$1")" == "$new" ]] || printf '%s\n' "$new" >"$1"
}

# ---- processes ----------------------------------------------------------------------------
# running NAME: the PID of our component NAME, if it runs (a PID file can outlive its process,
# and the number can belong to another program by then: check what runs under it).
running() {
  local pid
  pid="$(cat "$RUN/$1.pid" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$1" && echo "$pid"
}

# start NAME ARGS...: run in the background, log to $LOGS/NAME.log, remember the PID.
start() {
  local name="$1"
  shift
  if running "$name" >/dev/null; then return; fi
  log "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

containerd_config() {
  # A containerd of our own (not Docker's): own socket, root and state; CRI with cgroupfs.
  put "$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod sandboxes ask for oom_score_adj -998; where root may not lower it (a VM sandbox like
  # ours: "Permission denied"), runc fails with "can't get final child's PID from pipe".
  # Never go below containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$STATE/cni"
EOF
  # The pod network: one bridge, host-local addresses, NAT out, hostPort support, and the
  # firewall plugin (Docker sets the FORWARD policy to DROP; this lets pod traffic through).
  mkdir -p "$STATE/cni"
  put "$STATE/cni/10-iris.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "iris-local",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
}

kubelet_config() {
  put "$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 and no systemd. Kubernetes 1.35+ refuses cgroup v1 unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CERTS/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $CERTS/kubelet.crt
tlsPrivateKeyFile: $CERTS/kubelet.key
# The kubelet's API (logs, exec, metrics) on the node's address only, not every interface;
# its health port stays on 127.0.0.1 (the default), its read-only port off (the default).
address: $NODE_ADDRESS
# The pause image is imported, never pulled: keep image garbage collection off
# (containerd 1.6.20 does not mark the sandbox image as pinned).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A workshop machine's disk is often fuller than the default 15 % threshold.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
failSwapOn: false
resolvConf: /etc/resolv.conf
EOF
  put "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
# iptables mode answers NodePorts on 127.0.0.1 too (iptables.localhostNodePorts, the default),
# and, with nodePortAddresses, only there: no NodePort on the host's real interfaces.
mode: iptables
iptables: {localhostNodePorts: true}
nodePortAddresses: [127.0.0.0/8]
# Its health and metrics ports on loopback (the health port's default is every interface).
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack settings alone (a VM may not let us change them).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

images() {
  # Built here, never pulled: the pause image (every pod's sandbox) and metrics-server.
  local dir
  if ! ctr_k8s images check "name==$PAUSE_IMAGE" | grep -q "$PAUSE_IMAGE"; then
    dir="$(mktemp -d)"
    cp "$BIN/pause" "$dir/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Dockerfile"
    docker build --quiet --tag "$PAUSE_IMAGE" "$dir" >/dev/null
    rm -rf "$dir"
    load "$PAUSE_IMAGE"
  fi
  if ! ctr_k8s images check "name==$METRICS_IMAGE" | grep -q "$METRICS_IMAGE"; then
    dir="$(mktemp -d)"
    cp "$BIN/metrics-server" "$dir/metrics-server"
    printf 'FROM scratch\nCOPY metrics-server /metrics-server\nUSER 65534:65534\nENTRYPOINT ["/metrics-server"]\n' \
      >"$dir/Dockerfile"
    docker build --quiet --tag "$METRICS_IMAGE" "$dir" >/dev/null
    rm -rf "$dir"
    load "$METRICS_IMAGE"
  fi
}

ctr_k8s() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

# load IMAGE: the Docker image into the cluster's containerd (what `kind load docker-image` does).
load() {
  log "importing $1 into the cluster's containerd"
  docker save "$1" | ctr_k8s images import --no-unpack - >/dev/null
  # Keep it out of image garbage collection's reach and visible to the kubelet under its name.
  ctr_k8s images label "$1" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
}

up() {
  local missing
  missing="$(lacks)"
  [[ -z "$missing" ]] || die "cannot run a local cluster here: $missing"
  # Idempotent: every step below keeps what is already there (certificates, running
  # processes, imported images), so `up` on a running cluster only restarts what died.
  local started=$SECONDS
  bash "$HERE/build.sh"
  mkdir -p "$STATE" "$RUN" "$LOGS"
  node_address_up
  certificates
  containerd_config
  kubelet_config

  start etcd "$BIN/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  start containerd containerd --config "$STATE/containerd.toml"
  wait_for 30 "etcd answering" curl -sf http://127.0.0.1:2381/health
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address "$NODE_ADDRESS" --secure-port 6443 --advertise-address "$NODE_ADDRESS" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODE_PORTS" \
    --tls-cert-file "$CERTS/apiserver.crt" --tls-private-key-file "$CERTS/apiserver.key" \
    --client-ca-file "$CERTS/ca.crt" \
    --kubelet-client-certificate "$CERTS/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$CERTS/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$CERTS/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$CERTS/service-account.pub" \
    --service-account-signing-key-file "$CERTS/service-account.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --requestheader-client-ca-file "$CERTS/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$CERTS/front-proxy-client.crt" --proxy-client-key-file "$CERTS/front-proxy-client.key"
  wait_for 90 "kube-apiserver ready" kubectl get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" --leader-elect=false \
    --service-account-private-key-file "$CERTS/service-account.key" --root-ca-file "$CERTS/ca.crt" \
    --cluster-signing-cert-file "$CERTS/ca.crt" --cluster-signing-key-file "$CERTS/ca.key" \
    --use-service-account-credentials --controllers '*' \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" --leader-elect=false \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" --bind-address 127.0.0.1
  wait_for 30 "containerd answering" ctr --address "$SOCK" version
  images
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE" --node-ip "$NODE_ADDRESS"
  # kube-proxy turns on route_localnet (node ports on 127.0.0.1); down puts it back.
  [[ -f "$STATE/route_localnet.host" ]] || sysctl -n net.ipv4.conf.all.route_localnet >"$STATE/route_localnet.host"
  start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
  wait_for 120 "node $NODE Ready" kubectl wait --for=condition=Ready "node/$NODE" --timeout=5s
  log "metrics-server $METRICS_SERVER_VERSION"
  kubectl apply -f "$HERE/metrics-server.yaml" >/dev/null
  log "cluster up in $((SECONDS - started)) s; use it with: export KUBECONFIG=$KUBECONFIG"
}

# deploy IMAGE: stage 05's k8s/local overlay with IMAGE, as 05_kubernetes/kind.sh does on kind.
# The tag is the image id, unique to its contents: a new build means new pods.
# The nginx sidecar's image, built from proxy.Dockerfile (Debian's nginx on the same base as the
# server's image; Docker's cache makes an unchanged rebuild instant); prints its id.
proxy_image() {
  docker build --quiet --file "$STAGE5/proxy.Dockerfile" "$STAGE5" 2>/dev/null ||
    die "building the proxy image from $STAGE5/proxy.Dockerfile failed (make base-image first?)"
}

deploy() {
  local image="$1" proxy="${2:-}" tag proxy_tag overlay
  docker image inspect "$image" >/dev/null 2>&1 || die "no local image '$image': build stage 04 first (make stage-5 does)"
  tag="iris-serving:$(docker image inspect --format '{{.Id}}' "$image" | sed 's/^sha256://' | cut -c1-12)"
  docker tag "$image" "$tag"
  load "$tag"
  [[ -n "$proxy" ]] || proxy="$(proxy_image)"
  proxy_tag="iris-proxy:$(docker image inspect --format '{{.Id}}' "$proxy" | sed 's/^sha256://' | cut -c1-12)"
  docker tag "$proxy" "$proxy_tag"
  load "$proxy_tag"
  overlay="$(mktemp -d)"
  trap 'rm -rf "$overlay"' RETURN
  cat >"$overlay/kustomization.yaml" <<EOF
resources:
  - $(realpath --relative-to="$overlay" "$STAGE5/k8s/local")
images:
  - name: iris-serving
    newTag: ${tag#iris-serving:}
  - name: iris-proxy
    newTag: ${proxy_tag#iris-proxy:}
EOF
  kubectl apply -k "$overlay"
  kubectl rollout status deployment/iris -n iris-serving --timeout=180s
}

predict() {
  curl --fail-with-body --silent --show-error --max-time 10 -H 'Content-Type: application/json' \
    -d '{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}' \
    http://127.0.0.1:8000/predict
  echo
}

# ---- down: stop and leave nothing behind ----------------------------------------------------
down() {
  [[ -d "$STATE" || -d "$RUN" ]] || { log "no local cluster (nothing under $STATE)"; return; }
  local name pid
  # Pods first, through the runtime, so CNI releases their addresses and rules.
  if [[ -x "$BIN/crictl" && -S "$SOCK" ]]; then
    for name in kubelet kube-proxy; do stop_component "$name"; done
    "$BIN/crictl" --runtime-endpoint "unix://$SOCK" rmp --all --force >/dev/null 2>&1 || true
  fi
  for name in kube-scheduler kube-controller-manager kube-apiserver kubelet kube-proxy containerd etcd; do
    stop_component "$name"
  done
  # Shims of containers that outlived containerd.
  for pid in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io -address $SOCK" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
  # kube-proxy removes its own rules; then whatever the kubelet and the CNI plugins added.
  [[ -x "$BIN/kube-proxy" ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  iptables_cleanup
  ip link delete "$BRIDGE" 2>/dev/null || true
  node_address_down
  # Mounts the kubelet and containerd left (pod volumes, overlay snapshots, shm).
  grep -oE " ($STATE|$RUN)[^ ]*" /proc/mounts | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
  [[ ! -f "$STATE/route_localnet.host" ]] ||
    sysctl -qw "net.ipv4.conf.all.route_localnet=$(cat "$STATE/route_localnet.host")" || true
  rm -rf "$STATE" "$RUN"
  rm -f /var/lib/cni/results/iris-local-* 2>/dev/null || true
  log "cluster down: processes stopped, pods, mounts, $BRIDGE and iptables rules removed, $STATE deleted"
}

stop_component() {
  local name="$1" pid
  if pid="$(running "$name")"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

# Every rule and chain the cluster added: the kubelet's and kube-proxy's (KUBE-*) and the
# CNI plugins' (CNI-*), in IPv4 and IPv6. Rules that jump to them first, then the chains.
iptables_cleanup() {
  local cmd table rule chains chain
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
      while read -r rule; do
        # iptables -S quotes comments the way a shell does: let the shell split the rule.
        [[ -z "$rule" ]] || eval "$cmd -t $table ${rule/#-A/-D}" 2>/dev/null || true
      done <<<"$("$cmd" -t "$table" -S 2>/dev/null | grep -E -- '^-A .*-j (KUBE|CNI)-' || true)"
      chains="$("$cmd" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\)/\1/p')"
      for chain in $chains; do "$cmd" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$cmd" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}

case "${1:-}" in
  check)
    missing="$(lacks)"
    [[ -z "$missing" ]] || { echo "cannot run a local cluster here: $missing"; exit 1; }
    echo "this machine can run the local cluster (Kubernetes $KUBE_VERSION)"
    ;;
  build) bash "$HERE/build.sh" ;;
  up)
    up
    [[ -z "${2:-}" ]] || deploy "$2" "${3:-}"
    ;;
  deploy)
    [[ -n "${2:-}" ]] || die "usage: cluster.sh deploy IMAGE [PROXY_IMAGE]"
    api_up || die "the local cluster is not running (make cluster-up)"
    deploy "$2" "${3:-}"
    ;;
  predict) predict ;;
  status) api_up ;;
  load)
    [[ -n "${2:-}" ]] || die "usage: cluster.sh load IMAGE"
    [[ -S "$SOCK" ]] || die "the local cluster is not running (make cluster-up)"
    load "$2"
    ;;
  down) down ;;
  env) echo "export KUBECONFIG=$KUBECONFIG" ;;
  *) die "usage: cluster.sh check | build | up [IMAGE] | deploy IMAGE | predict | status | load IMAGE | down | env" ;;
esac
