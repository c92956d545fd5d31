"""Fixtures of the deployment tests: the kustomize builds and the tools, all offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OVERLAYS = ("base", "istio")


def tool(name: str) -> Path:
    """A tool installed by a wheel of requirements.lock, beside this interpreter."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {BIN}; run `make venv` (it comes from requirements.lock)")
    return path


def checkov() -> Path:
    """The checkov of its own virtualenv (``make checkov``: it pins packaging<24, which pytest cannot share).

    Fails under ``CI=true`` when missing, skips otherwise.
    """
    path = Path(os.environ.get("ORCHESTRALL_CHECKOV", Path(sys.prefix) / "checkov" / "bin" / "checkov"))
    if not path.exists():
        message = f"checkov is not installed at {path}; run `make checkov`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def offline(argv: list[str]) -> list[str]:
    """``argv`` in a network namespace of its own (no network at all) when this machine allows one."""
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return ["unshare", "--net", *argv] if probe.returncode == 0 else argv


def kustomize(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/<overlay>``, as objects."""
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(ROOT / "deploy" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/{overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict[str, Any]]]:
    """Every overlay built with kustomize: overlay -> its objects."""
    return {overlay: kustomize(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def mesh(built: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The objects of ``deploy/istio``: the whole mesh as it is applied."""
    return built["istio"]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
