"""Static security scans: checkov on the built manifests and the Containerfile, hadolint on the latter.

Both run offline (``--skip-download``, and in a network namespace of their own where the machine
allows one). A check may be skipped only by an annotation or comment on the object it concerns,
with its reason (``deploy/cluster.py`` CHECKOV_SKIPS, the Containerfile's ``checkov:skip``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy import cluster
from tests.deploy.conftest import ROOT, checkov, offline, tool

CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def run_checkov(target: list[str]) -> dict[str, Any]:
    """Runs checkov with JSON output and returns its report (one framework's)."""
    result = subprocess.run(
        offline([str(checkov()), *target, "--skip-download", "--compact", "-o", "json"]),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert isinstance(report, dict), report
    return report


def test_checkov_passes_on_the_manifests(built: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    for overlay, objects in built.items():
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    report = run_checkov(["-d", str(tmp_path), "--framework", "kubernetes"])
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 500
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == set(cluster.CHECKOV_SKIPS)
    for check in skipped:
        assert check["check_result"]["suppress_comment"] == cluster.CHECKOV_SKIPS[check["check_id"]]


def test_checkov_passes_on_the_containerfile(tmp_path: Path) -> None:
    # checkov recognises Dockerfiles by name.
    shutil.copy(CONTAINERFILE, tmp_path / "Dockerfile")
    report = run_checkov(["--file", str(tmp_path / "Dockerfile"), "--framework", "dockerfile"])
    assert report["results"]["failed_checks"] == []
    assert report["summary"]["passed"] > 20
    assert [c["check_id"] for c in report["results"]["skipped_checks"]] == ["CKV_DOCKER_2"]


def test_hadolint_finds_nothing_in_the_containerfile() -> None:
    result = subprocess.run(
        offline(
            [
                str(tool("hadolint")),
                "--format",
                "json",
                "--failure-threshold",
                "style",
                "--trusted-registry",
                "docker.io",
                str(CONTAINERFILE),
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert json.loads(result.stdout or "[]") == [] and result.returncode == 0, result.stdout + result.stderr
