#!/usr/bin/env bash
# `make setup` and `make test-fast` under another Python than this machine's, in a container.
# Learners bring Python 3.11 to 3.13 (Debian 12 ships 3.11; Ubuntu 24.04 3.12; Debian 13 and
# current macOS installers 3.13); this machine has only 3.11, so CI tries 3.13 here.
#
#   scripts/other_python.sh 3.13        (make test-python PYTHON_VERSION=3.13)
#
# How: a Debian root filesystem with that Python, make and git (build_base_image.sh, so no
# registry is needed), this checkout's committed state cloned inside (the host's .venv and
# files stay untouched), then the README's setup and the fast tests, as a learner runs them.
# pip's (uv's bootstrap) and uv's downloads are cached outside the clone, one directory per Python version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-}
[[ $version =~ ^3\.[0-9]+$ ]] || { echo "usage: $0 3.13 (a Python version the script knows: see build_base_image.sh)" >&2; exit 2; }
tag="model-serving-layers/python-test:$version"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/model-serving-layers/python$version"
mkdir -p "$cache/pip" "$cache/uv"

PYTHON=$version TAG=$tag EXTRA_PACKAGES=make,git NO_PULL=1 bash scripts/build_base_image.sh
start=$SECONDS
docker run --rm --volume "$PWD:/src:ro" --volume "$cache/pip:/root/.cache/pip" --volume "$cache/uv:/root/.cache/uv" "$tag" bash -euc '
  git config --global --add safe.directory "*"
  git clone --quiet /src /work && cd /work
  python3 --version
  time make setup
  make test-fast
'
echo "Python $version: make setup and make test-fast passed in $((SECONDS - start)) s"
