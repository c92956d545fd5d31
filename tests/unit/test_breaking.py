"""`make lint`'s buf breaking: the contracts as they are against another copy of them.

Each case compiles two copies of proto/ with protoc and runs the buf of the venv, as
`python -m services.kit.protogen --breaking HEAD~1` does against the previous commit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.kit import protogen
from services.kit.protogen import PROTO_DIR, check_breaking

RESOURCES = Path("orchestrall/agent/v1/resources.proto")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    copied = tmp_path / "proto"
    shutil.copytree(PROTO_DIR, copied)
    return copied


def test_the_same_contracts_do_not_break(copy: Path) -> None:
    result = check_breaking(copy, PROTO_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_removed_field_is_a_breaking_change(copy: Path) -> None:
    resources = copy / RESOURCES
    text = resources.read_text()
    before, agent = text.split("message Agent {\n", 1)
    # Agent's display_name (field 2) and its options, as if someone deleted it.
    without, removed = re.subn(r"\n  string display_name = 2 \[[^\]]*\];", "", agent, count=1)
    assert removed == 1
    resources.write_text(f"{before}message Agent {{\n{without}")
    result = check_breaking(copy, PROTO_DIR)
    assert result.returncode != 0
    assert 'field "2" with name "display_name" on message "Agent" was deleted' in result.stdout, result.stdout
    # A field added is no break: the same copy with a new field passes against the original.
    added = text.replace(
        "message Agent {\n",
        "message Agent {\n  string added_later = 9999 [(google.api.field_behavior) = OPTIONAL];\n",
    )
    resources.write_text(added)
    assert check_breaking(copy, PROTO_DIR).returncode == 0


def test_a_commit_missing_from_the_clone_compares_against_head(capsys: pytest.CaptureFixture[str]) -> None:
    missing = "0" * 40  # in no clone: as HEAD~1 of a shallow clone or the first commit
    protogen.breaking(missing)
    out = capsys.readouterr().out
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=protogen.ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert f"{missing} is not in this clone" in out
    assert f"({head[:12]})" in out
