#!/bin/bash
# Measure the fixes of issue 13 with today's benchmark code: stage 03, FastAPI and
# the in-process floor served from the stage folders as they were before the first
# fix (model.py: bulk validation and labels; then gunicorn.conf.py: max_requests),
# then from this checkout, back to back, the same way.
# Writes results/bench-before-fix.json and results/bench-after-fix.json; `make bench`
# (or `python -m bench.run --summarise`) folds them into results/bench.json.
#   bash bench/fix_before_after.sh [FIRST_FIX_COMMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
fix=${1:-$(git log --format=%h -1 --grep '^model.py: validate and label a batch in bulk')}
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
# The stage folders as they were, unpacked beside (no checkout: the work tree is untouched).
git archive "$fix^" 01_model_py 02_rest_api 03_wsgi | tar -x -C "$before"
only=("03 gunicorn" "FastAPI")
BENCH_STAGES_ROOT="$before" .venv-bench/bin/python -m bench.run --only "${only[@]}" --out results/bench-before-fix.json
.venv-bench/bin/python -m bench.run --only "${only[@]}" --out results/bench-after-fix.json
