"""flagd's own schema test cases (``tests/flagd_schema_cases``) through import validation and write checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.flag import documents, evaluator, schema
from services.flag.models import FlagRow
from services.kit.errors import InvalidArgument
from services.kit.timestamps import utcnow

CASES = Path(__file__).parents[1] / "flagd_schema_cases"
#: flagd lets a flag have no default variant (the code default is served); a flag here needs one.
NEEDS_DEFAULT_VARIANT = {
    "no-default-variant.json",
    "null-default-variant.json",
    "undefined-default-variant.json",
}
#: Negative for providers' map-only form, but flagd's daemon reads flags as an array too, and so do imports.
ARRAY_FORM = "with-array-flags.json"


def cases(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (CASES / folder).glob("*.json"))


def violations_of(path: Path) -> list[str]:
    try:
        documents.read("t", path.read_bytes())
    except InvalidArgument as error:
        assert {v.field for v in error.violations} == {"body"}
        return [v.description for v in error.violations]
    return []


@pytest.mark.parametrize("path", cases("flags/positive", "flagd/positive"), ids=lambda p: p.name)
def test_valid_documents_import(path: Path) -> None:
    found = violations_of(path)
    if path.name in NEEDS_DEFAULT_VARIANT:
        assert len(found) == 1 and found[0].startswith("/flags/myBoolFlag/defaultVariant: ")
    else:
        assert found == []


@pytest.mark.parametrize("path", cases("flags/negative"), ids=lambda p: p.name)
def test_invalid_documents_are_refused_with_a_pointer(path: Path) -> None:
    found = violations_of(path)
    if path.name == ARRAY_FORM:
        assert found == []
        return
    assert found and all(v.startswith(("/flags/", "/metadata/")) and "flagd's schema" in v for v in found)


def flag_with(rule: object) -> FlagRow:
    now = utcnow()
    names = ("clubs", "diamonds", "hearts", "spades", "yes", "no", "true", "false")
    variants = {name: name for name in names}
    return FlagRow("t", "f", "ENABLED", variants, "no", rule, "", now, now)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", cases("targeting/positive"), ids=lambda p: p.name)
def test_valid_targeting_rules_pass_the_schema(path: Path) -> None:
    assert schema.targeting_problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", cases("targeting/negative"), ids=lambda p: p.name)
def test_invalid_targeting_rules_are_refused_when_written(path: Path) -> None:
    found = evaluator.violations(flag_with(json.loads(path.read_text())))
    assert found and {v.field for v in found} == {"flag.targeting"}
    assert all("flagd's schema" in v.description for v in found)
