#!/usr/bin/env bash
# Build a stand-in for the official python:3.11-slim image from Debian 12
# packages, for machines that cannot reach a container registry (workshop
# rooms, air-gapped CI). Only needed when `docker pull python:3.11-slim` fails.
#
#   scripts/build_base_image.sh            # pull python:3.11-slim, else build the stand-in
#   FORCE=1 scripts/build_base_image.sh    # build the stand-in even if the tag exists
#   PYTHON=3.13 scripts/build_base_image.sh  # python:3.13-slim, from Debian 13 (trixie)
#   TAG=... EXTRA_PACKAGES=make,git NO_PULL=1 scripts/build_base_image.sh  # another tag, more packages, never pulled
#
# How: mmdebstrap bootstraps a minimal Debian bookworm root filesystem with
# python3.11 (or 3.13 from trixie), venv and pip from the same Debian mirror (and apt proxy) this
# host uses, streams it as a tarball into `docker import`, and tags it
# python:3.11-slim. `python`, `python3` and `pip` are on PATH in /usr/local/bin
# like in the official image. The host's CA bundle is copied in so pip works
# behind a TLS-intercepting proxy. Takes about 30 s; needs root (or fakeroot).
set -euo pipefail

PYTHON=${PYTHON:-3.11}
case $PYTHON in
  3.11) SUITE=bookworm ;; # Debian 12
  3.13) SUITE=trixie ;;   # Debian 13
  *) echo "error: PYTHON must be 3.11 (Debian 12) or 3.13 (Debian 13), got '$PYTHON'" >&2; exit 2 ;;
esac
# The default tag also gets its Debian release's tag (python:3.11-slim-bookworm, as the official
# images have): what a Dockerfile that pins Debian package versions builds from (proxy.Dockerfile).
RELEASE_TAG=""
[[ -z "${TAG:-}" ]] && RELEASE_TAG=python:$PYTHON-slim-$SUITE
TAG=${TAG:-python:$PYTHON-slim}
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}

command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker engine is not running (or not reachable by you)" >&2; exit 1; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
done_if_complete() {
  if have "$TAG" && { [[ -z $RELEASE_TAG ]] || have "$RELEASE_TAG"; }; then
    echo "$TAG${RELEASE_TAG:+ and $RELEASE_TAG} exist; nothing to do (FORCE=1 rebuilds)"
    exit 0
  fi
}
if [[ -z "${FORCE:-}" ]]; then
  done_if_complete
  # An image of this Debian release under the short tag (a stand-in built before) is the release's.
  if have "$TAG" && [[ -n $RELEASE_TAG ]] &&
    [[ $(docker run --rm --entrypoint cat "$TAG" /etc/os-release) == *"VERSION_CODENAME=$SUITE"* ]]; then
    docker tag "$TAG" "$RELEASE_TAG"
  fi
  done_if_complete
fi
# A reachable registry always wins: bounded, since a filtered network can hang.
if [[ -z "${FORCE:-}${NO_PULL:-}" ]]; then
  for tag in "$TAG" $RELEASE_TAG; do
    have "$tag" || { timeout "${PULL_TIMEOUT:-60}" docker pull --quiet "$tag" >/dev/null 2>&1 && echo "pulled $tag"; } || true
  done
  done_if_complete
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }

# The Debian mirrors the host's apt uses (deb822 .sources and one-line .list
# files), so the bootstrap goes through the same mirror, snapshot or proxy.
host_uris() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f"
  done | tr ' ' '\n' | sed '/^$/d'
}
uris=$(host_uris)
MIRROR=${MIRROR:-$(grep -E '/debian/?$' <<<"$uris" | head -n1 || true)}
SECURITY=${SECURITY:-$(grep -E '/debian-security/?$' <<<"$uris" | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

# The host's apt settings that decide how the mirror is reached: a proxy, and
# the validity checks a snapshot mirror needs switched off.
aptopts=()
while IFS= read -r line; do
  aptopts+=(--aptopt="$line")
done < <(apt-config dump | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' || true)

# Trust the host's CA bundle inside the image (a TLS-intercepting proxy's CA
# lives there); without one, Debian's own bundle stays.
ca_hooks=()
if [[ -f "$HOST_CA" ]]; then
  ca_hooks+=(--customize-hook="cp '$HOST_CA' \"\$1/etc/ssl/certs/ca-certificates.crt\"")
fi

echo "building $TAG from $MIRROR ($SUITE) with mmdebstrap ..."
start=$SECONDS
# The hooks run in mmdebstrap's shell with $1 = the new root: single quotes on purpose.
# shellcheck disable=SC2016
mmdebstrap --variant=apt --format=tar --quiet \
  "${aptopts[@]}" \
  --include="python$PYTHON,python3-venv,python3-pip,ca-certificates${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='for n in python python3; do ln -sf /usr/bin/python'"$PYTHON"' "$1/usr/local/bin/$n"; done' \
  --customize-hook='ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
  "${ca_hooks[@]}" \
  --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  "$SUITE" - \
  "deb $MIRROR $SUITE main" \
  "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY $SUITE-security main" |
  docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "stand-in for ${RELEASE_TAG:-$TAG}: Debian $SUITE python$PYTHON via mmdebstrap" \
    - "${RELEASE_TAG:-$TAG}" >/dev/null
# The short tag too, unless a pulled image (of another Debian release) holds it.
[[ -z $RELEASE_TAG ]] || { [[ -z "${FORCE:-}" ]] && have "$TAG"; } || docker tag "$RELEASE_TAG" "$TAG"
echo "built ${RELEASE_TAG:-$TAG} in $((SECONDS - start)) s: $(docker image inspect --format '{{.Size}}' "${RELEASE_TAG:-$TAG}" | awk '{printf "%.0f MB", $1/1e6}')"
