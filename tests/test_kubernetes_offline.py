"""Stage 05 without a cluster: the manifests render, validate strictly and agree with each other and the app.

Everything a cluster would reject, or accept and then get wrong, that can be
decided from the files: schema errors (unknown fields fail) against the API of
the pinned Kubernetes version, broken references between objects, probe paths
the app does not serve, a grace period too short for the shutdown it must
cover, and the "restricted" Pod Security Standard. The last test runs the
stage-04 image exactly as the Deployment's container spec says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import kubernetes_validate
import pytest
import requests
import yaml

from harness.cluster import build_model_image
from harness.golden import mismatches
from harness.kube import HOST_PORT
from harness.kube import K8S
from harness.kube import KIND_SCRIPT
from harness.kube import KUBERNETES_VERSION
from harness.kube import NODE_PORT
from harness.kube import kubectl_path
from harness.layers import BIN
from harness.layers import ROOT
from harness.layers import STAGES
from harness.load import EXAMPLE_ROW
from harness.manifests import config_lines
from harness.manifests import container_env
from harness.manifests import cpu_cores
from harness.manifests import find
from harness.manifests import render
from harness.manifests import run_as_deployed
from harness.manifests import run_probe
from harness.manifests import server_container
from harness.manifests import shutdown_budget
from harness.manifests import terminate_like_kubelet
from harness.manifests import validate

STAGE = STAGES[5]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"  # `make checkov-venv` (.ci/uv.lock)
CHECKOV_CONFIG = ROOT / ".ci" / "checkov.yaml"  # the checks skipped, each with its reason
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
# The first major version of each action that runs on Node 24 (their release notes).
NODE_24_MAJOR = {"actions/checkout": 5, "actions/setup-python": 6, "actions/setup-go": 6}
KIND_CONFIG = K8S / "kind" / "kind-cluster.yaml"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    """The kind overlay as kustomize renders it (the base plus the NodePort)."""
    return render("kind")


@pytest.fixture(scope="module")
def pod(objects) -> dict:
    return find(objects, "Deployment", "iris")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod) -> dict:
    return server_container(pod)


@pytest.fixture(scope="module")
def proxy(pod) -> dict:
    (sidecar,) = [c for c in pod["containers"] if c["name"] == "proxy"]
    return sidecar


@pytest.mark.parametrize("overlay", ["base", "kind", "local"])
def test_every_object_validates_strictly_against_the_pinned_kubernetes_api(overlay):
    problems = validate(render(overlay))
    assert not problems, problems


def test_strict_validation_rejects_an_unknown_field(objects):
    """The validator is not vacuous: a typo in a field name fails."""
    deployment = yaml.safe_load(yaml.safe_dump(find(objects, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def checkov(tmp_path_factory):
    """Scan objects with checkov as .ci/checkov.yaml sets it up: the failed and passed check IDs."""
    tool = str(CHECKOV) if CHECKOV.exists() else shutil.which("checkov")
    if not tool:
        message = "checkov is not installed: `make checkov-venv` installs it into .venv-checkov"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires checkov, but {message}", pytrace=False)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("checkov")

    def scan(objects: list[dict], name: str) -> dict[str, list[str]]:
        manifest = folder / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        proc = subprocess.run(
            [tool, "--config-file", str(CHECKOV_CONFIG), "-f", str(manifest), "-o", "json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: some check failed
        results = json.loads(proc.stdout)["results"]
        return {
            verdict: [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in results[f"{verdict}_checks"]]
            for verdict in ("failed", "passed")
        }

    return scan


@pytest.mark.slow  # a few seconds a scan
@pytest.mark.parametrize("overlay", ["kind", "local"])
def test_the_manifests_pass_checkov(checkov, overlay):
    verdict = checkov(render(overlay), overlay)
    print(f"\ncheckov on k8s/{overlay}: {len(verdict['passed'])} checks passed, {len(verdict['failed'])} failed")
    assert not verdict["failed"], verdict["failed"]
    assert len(verdict["passed"]) >= 50, verdict["passed"]  # it did scan the Deployment


@pytest.mark.slow
def test_checkov_fails_a_privileged_container(checkov, objects):
    """The scan is not vacuous: the same manifests with a privileged sidecar fail it."""
    broken = json.loads(json.dumps(objects))  # a deep copy
    pod = find(broken, "Deployment", "iris")["spec"]["template"]["spec"]
    pod["containers"][-1]["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    failed = checkov(broken, "privileged")["failed"]
    assert any(f.startswith("CKV_K8S_16 ") for f in failed), failed  # "Container should not be privileged"


def test_the_kind_node_image_is_the_validated_kubernetes_version_pinned_by_digest():
    (node,) = yaml.safe_load(KIND_CONFIG.read_text())["nodes"]
    assert re.fullmatch(rf"kindest/node:v{re.escape(KUBERNETES_VERSION)}@sha256:[0-9a-f]{{64}}", node["image"]), node
    (mapping,) = node["extraPortMappings"]
    assert mapping["listenAddress"] == "127.0.0.1" and mapping["containerPort"] == NODE_PORT
    assert mapping["hostPort"] == HOST_PORT == 8000, "stage 05 answers on 127.0.0.1:8000 like every stage"


def test_the_rendered_objects_are_the_ones_the_readme_describes(objects):
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ]
    )
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"iris-serving"}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "model-serving-layers", obj["metadata"]


def test_service_reaches_the_pods_by_label_and_named_port(objects, proxy):
    deployment, service = find(objects, "Deployment"), find(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector.items() <= pod_labels.items(), (selector, pod_labels)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"] for p in proxy["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names, "clients go through the nginx sidecar"
    (port,) = service["spec"]["ports"]
    assert port["nodePort"] == NODE_PORT  # the kind overlay; the base stays ClusterIP
    assert find(render("base"), "Service")["spec"]["type"] == "ClusterIP"


def test_hpa_and_pdb_point_at_the_deployment(objects):
    deployment = find(objects, "Deployment")
    hpa, pdb = find(objects, "HorizontalPodAutoscaler"), find(objects, "PodDisruptionBudget")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_network_policy_admits_only_the_proxy_port(objects, proxy):
    """Other pods reach the server through nginx, never gunicorn's port directly (where the plugin enforces it)."""
    deployment, policy = find(objects, "Deployment"), find(objects, "NetworkPolicy")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items(), "it selects the server's pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [p["name"] for p in proxy["ports"]], rule


def test_probes_ask_paths_the_app_serves_on_the_container_port(container, app):
    # The app is identical in every stage (test_stage_copies.py).
    flask_app, client = app, app.test_client()
    gets = {rule.rule for rule in flask_app.url_map.iter_rules() if "GET" in rule.methods}
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert get["path"] in gets, f"{kind} asks {get['path']}; the app serves GET {sorted(gets)}"
        assert 200 <= client.get(get["path"]).status_code < 400, kind
        assert get["port"] in port_names or get["port"] in port_names.values(), f"{kind} port {get['port']}"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_every_config_key_is_consumed_and_read_by_the_server(objects, container):
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    consumed = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
    consumed |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
    assert consumed == {config_map["metadata"]["name"]}, "every ConfigMap referenced exists, and only that one"
    # Every key names a variable that gunicorn.conf.py or app.py actually reads.
    code = "".join((STAGE / f).read_text() for f in ("gunicorn.conf.py", "app.py", "model.py"))
    unread = [key for key in config_map["data"] if f'"{key}"' not in code and f"'{key}'" not in code]
    assert not unread, f"settings no code reads: {unread}"
    env = container_env(objects, container)
    (port,) = container["ports"]
    assert int(env["PORT"]) == port["containerPort"] and env["HOST"] == "0.0.0.0"


def test_grace_period_covers_prestop_and_gunicorns_graceful_timeout(objects):
    budget = shutdown_budget(objects)
    assert budget["pre_stop"] >= 1, "without a preStop wait, SIGTERM can arrive before the endpoints are updated"
    assert budget["margin"] >= 1, (
        f"grace {budget['grace']} s < preStop + gunicorn's graceful timeout + margin: {budget}"
    )


def test_pod_meets_the_restricted_pod_security_standard(objects, pod):
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 10000
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert [c["name"] for c in pod["containers"]] == ["server", "proxy"]
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
    assert pod["automountServiceAccountToken"] is False
    labels = find(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_image_resources_and_rollout_settings(objects, pod, container):
    deployment = find(objects, "Deployment")
    repository, _, tag = container["image"].rpartition(":")
    assert repository == "iris-serving" and tag and tag != "latest", container["image"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
    workers = int(container_env(objects, container)["WEB_CONCURRENCY"])
    assert 1 <= workers <= cpu_cores(resources["limits"]["cpu"]), f"{workers} workers for {resources['limits']}"
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == (0, 1)
    assert deployment["spec"]["replicas"] >= 2
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= mounts, "gunicorn writes its control socket and heartbeat files there"


def test_the_nginx_sidecar_fronts_the_server_and_the_probes_still_ask_the_app(objects, container, proxy):
    """Clients reach gunicorn only through nginx; the server's own probes bypass it."""
    server_port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    (proxy_port,) = proxy["ports"]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert env["NGINX_UPSTREAM"] == f"127.0.0.1:{server_port}", "one network per pod: nginx reaches gunicorn locally"
    assert proxy_port["containerPort"] != server_port
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["port"] == "http", f"the server's {kind} must ask gunicorn itself"
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "proxy"}
    assert "httpGet" not in proxy["livenessProbe"], "a failing app must not restart the proxy"
    repository, _, tag = proxy["image"].rpartition(":")
    assert repository == "iris-proxy" and tag and tag != "latest", proxy["image"]
    assert {"cpu", "memory"} <= proxy["resources"]["limits"].keys()
    assert {m["mountPath"] for m in proxy["volumeMounts"]} == {"/tmp"}, "nginx writes only under /tmp"
    # nginx stops first, so nothing it forwards can meet a gunicorn that is gone (a 502)
    assert 0 < proxy["lifecycle"]["preStop"]["sleep"]["seconds"] < container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_metrics_server_is_pinned_and_patched_for_kind():
    kustomization = yaml.safe_load((K8S / "metrics-server" / "kustomization.yaml").read_text())
    (url,) = kustomization["resources"]
    assert re.search(r"/releases/download/v\d+\.\d+\.\d+/components\.yaml$", url), url
    assert "--kubelet-insecure-tls" in kustomization["patches"][0]["patch"]


def test_yaml_line_count(objects):
    """What the layer costs in configuration: reported, and bounded so it stays a tutorial."""
    lines = config_lines()
    files, total = list(lines), sum(lines.values())
    print(f"\nstage 05 configuration: {total} lines (no blanks or comments) in {len(files)} files, "
          f"{len(objects)} objects: {lines}")  # fmt: skip
    assert total < 300, lines  # 250 before the nginx sidecar (about 40 lines); the README shows the run's count


def test_shell_scripts_pass_shellcheck():
    scripts = [KIND_SCRIPT, ROOT / ".ci" / "run", *sorted((ROOT / "scripts").rglob("*.sh"))]
    result = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_kind_script_says_what_is_missing():
    result = subprocess.run(["bash", str(KIND_SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "usage" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", WORKFLOW), ("vendor.dependabot", DEPENDABOT)],
    ids=["ci", "dependabot"],
)
def test_github_configuration_is_valid(schema, path):
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_workflow_pins_every_action_by_commit_on_node_24():
    """Node 20 actions are retired on hosted runners; a tag can move, a commit cannot."""
    uses = re.findall(r"uses: (\S+)@(\S+)(?: # (\S+))?", WORKFLOW.read_text())
    assert uses
    for action, ref, tag in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", ref) and tag, f"{action}@{ref}: pin a commit, its tag in a comment"
        assert int(tag.lstrip("v").split(".")[0]) >= NODE_24_MAJOR[action], f"{action} {tag} runs on Node 20"


@pytest.mark.docker
def test_the_image_serves_as_the_deployment_specifies(objects, container, stage4_image, golden):
    """docker run with the pod's settings, probes run as the kubelet runs them, golden answers."""
    with run_as_deployed(objects, stage4_image) as (base, name):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            assert probe["httpGet"]["port"] == "http"  # the one published container port
            result = run_probe(base, probe)
            assert result["ok"], f"{kind}: {result}"
        response = requests.post(f"{base}/predict", json={"instances": golden["inputs"]}, timeout=10)
        assert response.status_code == 200, response.text
        assert not mismatches(response.json()["predictions"], golden)
        # SIGTERM as the kubelet sends it after preStop: gunicorn must be gone well within the grace period.
        stopped = terminate_like_kubelet(name, objects)
        assert (stopped["exit_code"], stopped["oom_killed"]) == (0, False), f"after SIGTERM: {stopped}"
        print(f"\nstage 05 spec in docker: probes 2xx, golden OK, clean SIGTERM exit: {stopped}")


@pytest.mark.docker
def test_the_upgrade_image_serves_model_v2(objects, stage4_image, model_v2):
    """What the rolling update ships: the stage-04 image with the v2 artifact in place of v1."""
    tag = f"iris-serving:k8s-test-v2-{uuid.uuid4().hex[:8]}"
    try:
        build_model_image(stage4_image, model_v2, tag)
        with run_as_deployed(objects, tag) as (base, _):
            body = requests.post(f"{base}/predict", json={"instances": [EXAMPLE_ROW]}, timeout=10).json()
        assert body["model_version"] == "2", body
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


@pytest.mark.docker
def test_kind_script_loads_a_unique_tag_and_applies_it(stage4_image, tmp_path):
    """kind.sh deploy with stand-ins for kind and kubectl: the tag it loads is the tag it applies."""
    log = tmp_path / "calls.log"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "kind").write_text(f'#!/bin/sh\necho "kind $*" >> {log}\n')
    # kubectl: record the call; for `apply -k DIR` render DIR with the real kubectl instead.
    (fake_bin / "kubectl").write_text(
        f'#!/bin/sh\necho "kubectl $*" >> {log}\n'
        f'if [ "$1" = apply ]; then exec {kubectl_path()} kustomize "$3" > {tmp_path / "rendered.yaml"}; fi\n'
    )
    for tool in ("kind", "kubectl"):
        (fake_bin / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "KUBECTL": "kubectl"}
    result = subprocess.run(
        ["bash", str(KIND_SCRIPT), "deploy", stage4_image], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    loads = [line for line in log.read_text().splitlines() if line.startswith("kind load")]
    loaded = [load.split()[3] for load in loads]
    try:
        assert len(loaded) == 2, loads
        assert re.fullmatch(r"iris-serving:[0-9a-f]{12}", loaded[0]), loads
        assert re.fullmatch(r"iris-proxy:[0-9a-f]{12}", loaded[1]), loads
        images = [c["image"] for c in find(list(yaml.safe_load_all((tmp_path / "rendered.yaml").read_text())),
                                          "Deployment")["spec"]["template"]["spec"]["containers"]]  # fmt: skip
        assert images == loaded, "the server and its nginx sidecar run the tags just loaded"
        assert "kubectl rollout status deployment/iris -n iris-serving --timeout=180s" in log.read_text()
    finally:
        if loaded and loaded[0] != stage4_image:
            subprocess.run(["docker", "rmi", loaded[0]], capture_output=True)
