"""`make sbom`: the stage-04 image's Python packages as a CycloneDX bill of materials, every pin in it."""

from __future__ import annotations

import json
import subprocess

from harness.layers import ROOT
from harness.layers import STAGES
from tests.test_stage_copies import pins


def test_make_sbom_lists_exactly_what_the_image_installs(tmp_path):
    out = tmp_path / "sbom.json"
    result = subprocess.run(
        ["make", "--no-print-directory", "sbom", f"SBOM={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bom = json.loads(out.read_text())
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    listed = {c["name"].lower(): c["version"] for c in bom["components"]}
    assert listed == pins(STAGES[4] / "requirements.txt")
    assert all(c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}" for c in bom["components"])
    # the hashes uv.lock gives each pin's files (requirements.txt is its export) travel into the SBOM
    for component in bom["components"]:
        hashes = [h for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])]
        assert hashes and all(h["alg"] == "SHA-256" for h in hashes), component["name"]
