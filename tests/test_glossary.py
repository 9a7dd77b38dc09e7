"""Every term a learner meets is explained in GLOSSARY.md, and each page links it where it first uses it."""

from __future__ import annotations

import json
import re

import pytest

from harness import glossary
from harness.paths import ROOT

PAGES = list(glossary.pages())


def test_every_maintained_term_has_an_entry_and_every_entry_is_maintained():
    assert glossary.headings() == list(glossary.TERMS)


def test_every_entry_explains_and_links_to_official_docs():
    entries = re.split(r"^### .+$", glossary.GLOSSARY.read_text(), flags=re.M)[1:]
    for heading, body in zip(glossary.headings(), entries):
        text = body.split("\n## ", 1)[0]
        # the official documentation, or for this repository's own ideas (the golden predictions, a stall) its code
        own = [t for t in re.findall(r"\]\(([^)#\s:]+)\)", text) if (glossary.GLOSSARY.parent / t).exists()]
        assert "](https://" in text or own, f"{heading}: no link to its documentation"
        sentences = len(re.findall(r"[.!?](?:\s|$)", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)))
        assert len(text.split()) >= 20 and sentences >= 2, f"{heading}: explain it in two or three sentences"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_page_links_a_term_where_it_first_uses_it(page):
    problems = glossary.unlinked(page)
    assert not problems, "\n".join(
        [f"{u.text}: first use of '{u.term}' not linked" for u in problems] + ["(`make glossary` links them)"]
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_glossary_links_point_at_an_entry(page):
    anchors = {glossary.anchor(h) for h in glossary.headings()}
    for text in glossary.texts(page):
        for target in re.findall(r"GLOSSARY\.md#([\w\-]+)", text):
            assert target in anchors, f"{page.name} links to a missing entry #{target}"


def test_the_check_sees_a_first_use_that_is_not_linked():
    page = ROOT / "README.md"
    linked = f"A [pod](GLOSSARY.md#{glossary.anchor('Pod')}) runs containers."
    assert glossary.unlinked(page, [linked]) == [
        glossary.Use("README.md", 0, "container", "line 1: 'containers'")
    ]  # the pod is linked, the container is not
    late = "Two pods.\n\nA [pod](GLOSSARY.md#pod) is ..."
    assert [u.term for u in glossary.unlinked(page, [late])] == ["Pod"]
    # code, other links, headings, URLs, comments, generated blocks and quotations are not prose
    quiet = ("# Pods\n`kubectl get pods`\n```\npods\n```\n[the pods](https://kubernetes.io/pods)\n"
             "<!-- figures:x -->\npods\n<!-- /figures:x -->\nhttps://example.org/pod\n> pods, quoted\n")  # fmt: skip
    assert glossary.unlinked(page, [quiet]) == []
    # the longest use at a place wins, and a link to one term does not count for a term inside it
    assert [u.term for u in glossary.unlinked(page, ["a sync worker"])] == ["sync worker"]
    nested = f"a [sync worker](GLOSSARY.md#{glossary.anchor('sync worker')}), then a worker"
    assert [u.term for u in glossary.unlinked(page, [nested])] == ["worker"]


def test_a_mutated_readme_fails_the_check(tmp_path):
    text = (ROOT / "README.md").read_text()
    first = re.search(r"\[([^\]]+)\]\(GLOSSARY\.md#[\w\-]+\)", text)
    assert first, "the README links no term"
    mutated = text[: first.start()] + first.group(1) + text[first.end() :]
    assert glossary.unlinked(ROOT / "README.md", [mutated]), "unlinking a first use went unnoticed"


def test_fixing_links_each_first_use_once(tmp_path, monkeypatch):
    """--fix on a notebook stripped of its glossary links links every first use, and a second pass adds none."""
    notebook = tmp_path / "notebooks" / "n.ipynb"
    notebook.parent.mkdir()
    content = json.loads((ROOT / "notebooks" / "00_scorecard.ipynb").read_text())
    for cell in content["cells"]:
        if cell["cell_type"] == "markdown":
            stripped = re.sub(r"\[([^\]]+)\]\(\.\./GLOSSARY\.md#[\w\-]+\)", r"\1", "".join(cell["source"]))
            cell["source"] = stripped.splitlines(keepends=True)
    notebook.write_text(json.dumps(content))
    monkeypatch.setattr(glossary, "ROOT", tmp_path)
    assert glossary.unlinked(notebook), "the stripped copy should have terms to link"
    assert glossary.link_first_uses(notebook) > 0
    assert glossary.unlinked(notebook) == []
    assert glossary.link_first_uses(notebook) == 0, "a second pass links nothing more"
    assert len(json.loads(notebook.read_text())["cells"]) == len(content["cells"])
