# One model, five serving layers. Plain `make` lists the targets.
# Every target bootstraps what it needs: on a fresh clone `make stage-1` just works.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-from-lock
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

STAGE_1 := 01_model_py
STAGE_2 := 02_rest_api
STAGE_3 := 03_wsgi
STAGE_4 := 04_container
STAGE_5 := 05_kubernetes
EXAMPLE := --sepal-length 5.1 --sepal-width 3.5 --petal-length 1.4 --petal-width 0.2

.PHONY: help
help: ## show this help
	@echo "Usage: make <target>   (HOST/PORT override 127.0.0.1:8000)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv makes the environment: `uv sync --locked` installs uv.lock's exact pins, hashes checked, in
# seconds when its cache is warm. A uv on PATH is used; where there is none, the pinned one is
# installed from PyPI with pip (scripts/uv-bootstrap.txt: its pin and hashes, exported from uv.lock),
# once, outside the clone (by version). PYTHON_SYSTEM is the Python
# the venv is made from: uv never downloads one.
UV_VERSION := 0.13.9
UV_HOME := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/model-serving-layers/uv-$(UV_VERSION)
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_HOME)/bin/uv)
# --system-certs: trust the system's certificates, as pip does (a company's or a venue's proxy that
# inspects TLS brings its own CA, installed there).
UV_SYNC = $(UV) --no-python-downloads --system-certs sync --locked --quiet --python $(PYTHON_SYSTEM)
export UV

$(UV_HOME)/bin/uv: scripts/uv-bootstrap.txt
	$(PYTHON_SYSTEM) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r scripts/uv-bootstrap.txt
	@touch $@  # pip leaves an installed uv alone: without this, make would bootstrap it again every time

.PHONY: setup
setup: $(STAMP) ## create .venv from uv.lock (one lock for every stage, the tests and the notebooks)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV_SYNC)
	@# The harness is imported from this checkout: a .pth file puts it on the venv's path. No build
	@# step, so no setuptools, which venvs on Python 3.12+ no longer ship.
	$(PY) -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "model-serving-layers.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $@

# The model artifact of a stage folder, trained on first use (a second or so).
%/artifacts/iris.joblib: | $(STAMP)
	cd $* && ../$(PY) model.py train

.PHONY: stage-1
stage-1: $(STAGE_1)/artifacts/iris.joblib ## stage 01: predict one flower with the plain script
	cd $(STAGE_1) && ../$(PY) model.py predict $(EXAMPLE)

.PHONY: stage-2
# `flask run --port` takes any whole number and the socket wraps it (PORT=99999 listened on 34463,
# without a word): the port is checked here first, one line, as gunicorn.conf.py does for stage 03.
stage-2: $(STAGE_2)/artifacts/iris.joblib ## stage 02: Flask development server on $HOST:$PORT (foreground)
	@case "$(PORT)" in ''|*[!0-9]*) ok=;; *) ok=$$(( $(PORT) >= 1 && $(PORT) <= 65535 ));; esac; [ "$$ok" = 1 ] || { \
	  echo "error: PORT must be a whole number from 1 to 65535, got '$(PORT)'" >&2; exit 2; }
	@$(PY) -c 'import socket, sys; socket.getaddrinfo(sys.argv[1], None)' '$(HOST)' 2>/dev/null || { \
	  echo "error: HOST must be an address or a name this machine resolves, got '$(HOST)'" >&2; exit 2; }
	cd $(STAGE_2) && exec ../$(VENV)/bin/flask --app "app:create_app()" run --host $(HOST) --port $(PORT)

# PROXY=1: nginx (03_wsgi/nginx.conf) on $HOST:$PORT, gunicorn behind it on a unix socket.
PROXY ?=

.PHONY: stage-3
# gunicorn reads WEB_CONCURRENCY itself when it starts, before gunicorn.conf.py can check it:
# a value that is not a number would end in gunicorn's traceback, so it is checked here first.
stage-3: $(STAGE_3)/artifacts/iris.joblib ## stage 03: gunicorn on $HOST:$PORT (foreground; Ctrl-C stops it at once, kill -TERM gracefully); PROXY=1 puts nginx in front
	@case "$${WEB_CONCURRENCY-1}" in ''|*[!0-9]*|0) \
	  echo "error: WEB_CONCURRENCY must be a whole number of at least 1, got '$$WEB_CONCURRENCY'" >&2; exit 2;; esac
ifeq ($(PROXY),1)
	GUNICORN=$(CURDIR)/$(VENV)/bin/gunicorn exec bash scripts/stage3_proxy.sh
else
	cd $(STAGE_3) && exec ../$(VENV)/bin/gunicorn -c gunicorn.conf.py "app:create_app()"
endif

# Stage 04 with Docker Compose (04_container/compose.yaml): the server's container (not published)
# and nginx's in front of it, on 127.0.0.1:$PORT, restarted unless stopped. Compose v2 is the
# `docker compose` plugin; scripts/compose.sh builds it from its Go module where a machine has none.
COMPOSE_4 := docker compose --file $(STAGE_4)/compose.yaml

.PHONY: stage-4
stage-4: $(STAMP) ## stage 04: build both images and start server + nginx with Docker Compose on $HOST:$PORT, predict once
	@$(PY) -m harness.container check
	@bash scripts/compose.sh --check
	@bash scripts/build_base_image.sh
	HOST=$(HOST) PORT=$(PORT) $(COMPOSE_4) up --detach --build --wait
	@$(PY) -m harness.container predict $(PORT)
	@echo "logs: $(COMPOSE_4) logs --follow    stop and remove: make stage-4-down"

.PHONY: stage-4-down
stage-4-down: ## stop (gracefully) and remove the stage-04 containers and their network
	$(COMPOSE_4) down

.PHONY: base-image
base-image: ## python:3.11-slim without a registry: pull it, else build a stand-in from Debian packages
	bash scripts/build_base_image.sh

# Stage 05 runs on kind where kind is installed, else on the local cluster built
# from Kubernetes' Go modules (scripts/local-cluster: for machines where no
# registry answers). CLUSTER=kind or CLUSTER=local chooses.
CLUSTER ?= $(if $(shell command -v kind),kind,local)
LOCAL_CLUSTER := scripts/local-cluster/cluster.sh
export CLUSTER

.PHONY: stage-5
stage-5: $(STAMP) ## stage 05: the stage-04 image on Kubernetes (kind, else the local cluster), one prediction via 127.0.0.1:8000
ifeq ($(CLUSTER),kind)
	@KUBECTL=$(VENV)/bin/kubectl bash $(STAGE_5)/kind.sh check
	@echo "building the stage-04 image (reused when 04_container/ is unchanged)..."
	@IMAGE=$$($(PY) -m harness.cluster image) && \
	KUBECTL=$(VENV)/bin/kubectl bash $(STAGE_5)/kind.sh up "$$IMAGE" && \
	bash $(STAGE_5)/kind.sh predict
else ifeq ($(CLUSTER),local)
	@bash $(LOCAL_CLUSTER) check
	@echo "building the stage-04 image (reused when 04_container/ is unchanged)..."
	@IMAGE=$$($(PY) -m harness.cluster image) && \
	bash $(LOCAL_CLUSTER) up "$$IMAGE" && \
	bash $(LOCAL_CLUSTER) predict
	@bash $(LOCAL_CLUSTER) env | sed 's/^/kubectl needs: /'
else
	@echo "CLUSTER must be kind or local, got '$(CLUSTER)'"; exit 2
endif

.PHONY: stage-5-down
stage-5-down: ## remove stage 05: delete the kind cluster, or the app from the local cluster
ifeq ($(CLUSTER),kind)
	bash $(STAGE_5)/kind.sh down
else
	@KUBECONFIG=$$(bash $(LOCAL_CLUSTER) env | cut -d= -f2) $(VENV)/bin/kubectl delete namespace iris-serving \
	  --ignore-not-found 2>/dev/null || echo "the local cluster is not running: nothing to remove"
endif

.PHONY: cluster-build
cluster-build: ## build the local cluster from Kubernetes' Go modules (cached in ~/.cache; the first build is the longest step of all)
	bash scripts/local-cluster/build.sh

.PHONY: cluster-up
cluster-up: ## start the local single-node cluster (builds what is missing first; idempotent; root)
	bash $(LOCAL_CLUSTER) up

.PHONY: cluster-down
cluster-down: ## stop the local cluster and remove every trace (processes, pods, mounts, interfaces, iptables rules)
	bash $(LOCAL_CLUSTER) down

.PHONY: tour
tour: $(STAMP) ## start here: the same request to every layer this machine can run, then the scorecard
	$(PY) -m harness.scorecard --tour

.PHONY: scorecard
scorecard: $(STAMP) ## measure every available layer (crash, upgrade, throughput, cost) into results/ (minutes; a quiet machine)
	$(PY) -m harness.scorecard

# Every committed figure from one stamped run: the scorecard, the bench, the notebooks' outputs.
# Refuses a busy machine in one line (FORCE=1 publishes anyway, marked contended).
.PHONY: results
results: $(STAMP) bench-venv ## publish every figure in one stamped run on a quiet machine (scorecard, bench, notebooks)
	$(PY) -m harness.publish

.PHONY: quiet
quiet: $(STAMP) ## is this machine quiet enough to publish figures? (load, steal, the floor's noise)
	$(PY) -m harness.quiet

# nbmake runs every notebook in a fresh kernel from notebooks/, a time limit per cell.
NBMAKE := --nbmake --nbmake-timeout=300

.PHONY: test
test: $(STAMP) ## the whole suite: every stage, real servers, Docker, a cluster, notebooks (the longest)
	$(PY) -m pytest $(NBMAKE) tests notebooks

.PHONY: test-fast
test-fast: $(STAMP) ## inner loop: everything but slow, Docker, cluster and notebook tests (under a minute)
	$(PY) -m pytest -m "not slow and not docker and not cluster"

# What the stage-04 image installs, as a software bill of materials a scanner or reviewer reads:
# CycloneDX JSON from the exact pins of its requirements.txt (cyclonedx-py validates it against the
# schema as it writes). It lists the Python packages; the base image's Debian packages are Debian's.
SBOM ?= build/sbom-04.cdx.json
.PHONY: sbom
sbom: $(STAMP) ## the stage-04 image's Python packages as a CycloneDX SBOM (validated): build/sbom-04.cdx.json
	@mkdir -p $(dir $(SBOM))
	PYTHONWARNINGS=ignore::UserWarning $(VENV)/bin/cyclonedx-py requirements $(STAGE_4)/requirements.txt \
	  --pyproject pyproject.toml --output-reproducible --of JSON --output-file $(SBOM)
	@echo "wrote $(SBOM)"

PYTHON_VERSION ?= 3.13
.PHONY: test-python
test-python: ## make setup + make test-fast under another Python, in a container: PYTHON_VERSION=3.13 (Docker; what is committed)
	bash scripts/other_python.sh $(PYTHON_VERSION)

# A publishing target: part of `make results`' run, or a run of its own (a quiet machine, measured).
.PHONY: notebooks
notebooks: $(STAMP) ## re-execute every notebook in place, refreshing the committed outputs (a quiet machine)
	@run=$${RESULTS_RUN:-$$($(PY) -m harness.publish begin)} || exit 1; export RESULTS_RUN=$$run; \
	cd notebooks && for nb in *.ipynb; do \
	  echo "executing $$nb"; \
	  ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=300 --log-level=ERROR "$$nb" || exit 1; \
	done

.PHONY: glossary
glossary: $(STAMP) ## link each glossary term where a learner page first uses it (GLOSSARY.md; tests/test_glossary.py checks)
	$(PY) -m harness.glossary --fix

.PHONY: lint
lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# checkov scans stage 05's manifests (tests/test_kubernetes_offline.py); a CI tool with about 90
# packages of its own, so it lives in .venv-checkov, a uv project of its own (.ci/pyproject.toml).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-from-lock

$(CHECKOV_STAMP): .ci/uv.lock .ci/pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(CHECKOV_VENV) $(UV_SYNC) --project .ci
	touch $@

.PHONY: checkov-venv
checkov-venv: $(CHECKOV_STAMP) ## create .venv-checkov from .ci/uv.lock (what CI installs)

.PHONY: checkov
checkov: $(STAMP) $(CHECKOV_STAMP) ## scan stage 05's rendered manifests with checkov (.ci/checkov.yaml: what is skipped, and why)
	$(PY) -m pytest -q -s tests/test_kubernetes_offline.py -k checkov

.PHONY: diff
diff: ## what one layer adds, code and configuration: make diff A=2 B=3 (ALL=1: the READMEs too)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make diff A=2 B=3 [ALL=1]"; exit 2; }
	@$(PYTHON_SYSTEM) -m harness.diff $(A) $(B) $(if $(ALL),--all)

# The app is four files, one concern each; every served stage holds the same four.
APP_FILES := app.py inputs.py logs.py metrics.py v2.py openapi.json

.PHONY: sync
sync: ## copy the deliberate copies (model.py, app.py, ...) from the stage that owns them
	@for d in $(STAGE_2) $(STAGE_3) $(STAGE_4) $(STAGE_5); do [ -d $$d ] && cp $(STAGE_1)/model.py $$d/; done; \
	for d in $(STAGE_3) $(STAGE_4) $(STAGE_5); do [ -d $$d ] && cp $(addprefix $(STAGE_2)/,$(APP_FILES)) $$d/; done; \
	for d in $(STAGE_4) $(STAGE_5); do [ -d $$d ] && cp $(STAGE_3)/gunicorn.conf.py $(STAGE_3)/nginx.conf $$d/; done; \
	[ -d $(STAGE_5) ] && cp $(STAGE_4)/Dockerfile $(STAGE_4)/proxy.Dockerfile $(STAGE_4)/.dockerignore \
	  $(STAGE_4)/requirements.txt $(STAGE_5)/; true

# The benchmark against the peers (FastAPI + uvicorn, MLServer): the peers run from their
# own venv, a uv project of its own (bench/pyproject.toml), so the stages keep only the user's
# packages; the benchmark itself runs in .venv, where the harness starts stages 02-04 as
# `make stage-N` does.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-from-lock

$(BENCH_STAMP): bench/uv.lock bench/pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(BENCH_VENV) $(UV_SYNC) --project bench
	touch $@

.PHONY: bench-venv
bench-venv: $(BENCH_STAMP) ## create .venv-bench from bench/uv.lock (the peers and the profiler only)

.PHONY: bench
bench: $(STAMP) $(BENCH_STAMP) ## stages 02-04 vs FastAPI + uvicorn and MLServer, one run, wrk: results/bench.json + .png, bench/README.md's figures (minutes)
	@run=$${RESULTS_RUN:-$$($(PY) -m harness.publish begin)} || exit 1; export RESULTS_RUN=$$run; \
	$(PY) -m bench.profile && $(PY) -m bench.run

.PHONY: bench-smoke
bench-smoke: $(STAMP) $(BENCH_STAMP) ## the benchmark at one second a load, no Docker (what tests/test_bench.py runs)
	$(PY) -m bench.run --smoke --out build/bench-smoke.json

.PHONY: bench-profile
bench-profile: $(STAMP) $(BENCH_STAMP) ## py-spy on a stage-03 worker under wrk load: where its CPU goes, results/profile-03.json
	$(PY) -m bench.profile

.PHONY: golden
golden: $(STAMP) ## regenerate tests/golden_predictions.json from a fresh version-1 model
	$(PY) tests/make_golden.py

.PHONY: lock
lock: | $(UV) ## re-resolve the three uv.lock files (root, bench, .ci) from their pyproject.toml, then export each stage's requirements.txt
	$(UV) lock --system-certs && $(UV) lock --system-certs --project bench && $(UV) lock --system-certs --project .ci
	$(MAKE) --no-print-directory requirements

# Each served stage's requirements.txt is its dependency group exported from uv.lock with hashes
# (harness/requirements.py), so `pip install -r requirements.txt` (stage 04's Dockerfile, a learner
# without uv) installs exactly the files uv.lock pins. Stage 05's copy is `make sync`'s.
.PHONY: requirements
requirements: | $(UV) ## export each stage's requirements.txt from uv.lock (pins with hashes; tested to match)
	$(PYTHON_SYSTEM) -m harness.requirements write
	@$(MAKE) --no-print-directory sync

# Workshop exercises (EXERCISES.md): each checks itself against the real layer. The verdict is one
# line; unless it is PASS the target fails, so a script or CI can tell (make adds its own "Error N").
.PHONY: check
check: $(STAMP) ## check a workshop exercise: make check EX=03.2 [DIR=your/copy] (one line: PASS, or FAIL and why)
	@$(PY) -m exercises.check $(EX) $(if $(DIR),--dir $(DIR))

.PHONY: solve
solve: $(STAMP) ## apply an exercise's reference solution to a scratch copy and say where: make solve EX=03.2
	@$(PY) -m exercises.check --solve $(EX)

# For a room with no internet: everything a learner's machine would download.
WORKSHOP_CACHE ?= build/workshop

.PHONY: workshop-cache
workshop-cache: $(STAMP) $(UV_HOME)/bin/uv ## for a room with no internet: wheels, saved images, cluster binaries into build/workshop
	mkdir -p $(WORKSHOP_CACHE)/wheels $(WORKSHOP_CACHE)/images
	@# uv's own wheel, for the bootstrap (pip), and a uv cache holding every package uv.lock pins
	@# (filled by a sync into a scratch venv), which `uv sync --offline` installs from.
	$(UV_HOME)/bin/pip download --quiet --no-deps --require-hashes --dest $(WORKSHOP_CACHE)/wheels -r scripts/uv-bootstrap.txt
	UV_CACHE_DIR=$(abspath $(WORKSHOP_CACHE))/uv-cache UV_PROJECT_ENVIRONMENT=$(abspath $(WORKSHOP_CACHE))/scratch-venv $(UV_SYNC)
	rm -rf $(WORKSHOP_CACHE)/scratch-venv
	@if $(PY) -m harness.container check; then \
	  bash scripts/build_base_image.sh && \
	  IMAGE=$$($(PY) -m harness.container tag) && docker build --quiet --tag $$IMAGE $(STAGE_4) >/dev/null && \
	  docker save --output $(WORKSHOP_CACHE)/images/iris-images.tar python:3.11-slim python:3.11-slim-bookworm $$IMAGE && \
	  echo "saved python:3.11-slim(-bookworm) and $$IMAGE (docker load --input iris-images.tar)"; \
	else echo "no Docker here: no images saved"; fi
	@if [ -d $(HOME)/.cache/model-serving-layers/cluster ]; then \
	  tar -C $(HOME)/.cache -czf $(WORKSHOP_CACHE)/local-cluster-cache.tar.gz model-serving-layers/cluster && \
	  echo "saved the local cluster's binaries (~/.cache/model-serving-layers/cluster)"; \
	else echo "no local cluster binaries in ~/.cache/model-serving-layers/cluster (make cluster-build first)"; fi
	@du -sh $(WORKSHOP_CACHE)/* | sed 's/^/  /'
