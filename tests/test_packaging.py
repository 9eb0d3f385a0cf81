"""Release files agree with each other: version, licence, citation, Python versions and the torch window."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

import region_attention

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def test_one_version_everywhere():
    version = _pyproject()["version"]
    assert region_attention.__version__ == version
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(version)}$", citation, flags=re.M), "CITATION.cff version"
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text() or version.endswith(".dev0"), (
        f"CHANGELOG.md has no section for {version}"
    )


def test_license_file_and_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 region-attention developers" in text
    project = _pyproject()
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_citation_cites_the_paper():
    citation = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in citation
    assert "preferred-citation:" in citation
    assert "title: Region Attention Networks for Pose and Occlusion Robust Facial Expression Recognition" in citation
    assert "journal: IEEE Transactions on Image Processing" in citation


def test_urls_point_to_one_repository():
    urls = _pyproject()["urls"]
    assert {"Homepage", "Source", "Documentation", "Issues", "Changelog"} <= set(urls)
    repo = "https://github.com/region-attention/region-attention"
    assert all(url.startswith(repo) for name, url in urls.items() if name != "Documentation")


def test_python_classifiers_match_the_ci_matrix():
    project = _pyproject()
    pattern = r"Programming Language :: Python :: 3\.\d+"
    classified = sorted(c.rsplit(" ", 1)[-1] for c in project["classifiers"] if re.fullmatch(pattern, c))
    assert classified == ["3.10", "3.11", "3.12", "3.13"]
    assert project["requires-python"] == f">={classified[0]}"
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    assert sorted(set(re.findall(r'python: "(3\.\d+)"', workflow))) == classified


def test_torch_window_is_the_same_everywhere():
    """The lowest torch in the dependencies is the oldest end the window script and the CI matrix test."""
    project = _pyproject()
    (torch_req,) = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    lowest = re.fullmatch(r"torch>=(\d+\.\d+)", torch_req)
    assert lowest, f"expected torch>=X.Y without an upper cap, got {torch_req!r}"
    script = (ROOT / "scripts" / "check_torch_window.sh").read_text()
    oldest = re.search(r"\[oldest\]=(\d+\.\d+)\.\d+", script)
    newest = re.search(r"TORCH=\(\[oldest\]=[\d.]+ \[newest\]=([\d.]+)\)", script)
    assert oldest and newest
    assert oldest.group(1) == lowest.group(1)
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    assert f'torch: "{oldest.group(0).split("=")[1]}"' in workflow
    assert f'torch: "{newest.group(1)}"' in workflow
    for extra in project["optional-dependencies"].values():  # no caps that would downgrade a newer torch
        assert not [d for d in extra if re.match(r"torch(vision)?\b.*(<|==)", d)], extra
