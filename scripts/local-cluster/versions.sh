# shellcheck shell=bash disable=SC2034
# Pinned versions of the local cluster (sourced by build.sh and cluster.sh).
# Kubernetes 1.37 is the newest release whose kubelet still starts on a cgroup v1
# host, with `failCgroupV1: false` (the default became true in 1.35; removal of
# cgroup v1 support is planned for 1.38 at the earliest).
KUBE_VERSION=v1.37.2
# etcd: the version Kubernetes 1.37 tests against (hack/lib/etcd.sh: 3.7.0), latest patch.
ETCD_VERSION=v3.7.3
# crictl, to list and remove the pods of the cluster on cluster-down.
CRICTL_VERSION=v1.37.0
# metrics-server, which feeds pod CPU to the HorizontalPodAutoscaler.
METRICS_SERVER_VERSION=v0.8.0
# The pause image (the sandbox every pod holds its namespaces in): built from
# build/pause/linux/pause.c of the Kubernetes module, tagged as upstream does.
PAUSE_TAG=3.10.2
