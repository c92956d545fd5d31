"""A stored flag as flagd's flag definition JSON, and back.

A flag definition is the value of a flag key under ``flags`` in a flagd document
(https://flagd.dev/reference/flag-definitions/): ``state``, ``variants``,
``defaultVariant``, optionally ``targeting`` and ``metadata``. A flag's
description travels as the definition's ``metadata.description`` and its flag
set as ``metadata.flagSetId`` (flagd's flag metadata holds strings, numbers and
booleans). Revisions store this form, and
export and import read and write it.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from services.flag.models import FlagRow

#: A flag key: 1-63 of ``A-Za-z0-9-_.``, starting with a letter (flagd allows any non-empty string; a key
#: here is also the last segment of a resource name). Keys are case-sensitive, as OpenFeature's are.
FLAG_ID = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,62}$")
#: A flag set ID (flagd's ``flagSetId``, e.g. ``sso/dev``): 1-63 of ``A-Za-z0-9._/:@-``, starting with a
#: letter or digit (no ``,`` or ``=``, which selectors separate with).
FLAG_SET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,62}$")
#: :data:`FLAG_SET_ID` in words.
FLAG_SET_RULE = "must be 1-63 of A-Z, a-z, 0-9 and '._/:@-', starting with a letter or digit"


class FlagFields(TypedDict):
    """The mutable fields of a flag, as columns of ``flags``."""

    state: str
    variants: dict[str, Any]
    default_variant: str
    targeting: dict[str, Any] | None
    description: str
    flag_set: str


def fields_of_row(flag: FlagRow) -> FlagFields:
    """Returns the mutable fields of a stored flag."""
    return FlagFields(
        state=flag.state,
        variants=flag.variants,
        default_variant=flag.default_variant,
        targeting=flag.targeting,
        description=flag.description,
        flag_set=flag.flag_set,
    )


def to_definition(fields: FlagFields) -> dict[str, Any]:
    """Returns a flag's flagd flag definition; ``targeting`` and ``metadata`` only when the flag has them."""
    definition: dict[str, Any] = {
        "state": fields["state"],
        "variants": fields["variants"],
        "defaultVariant": fields["default_variant"],
    }
    if fields["targeting"]:
        definition["targeting"] = fields["targeting"]
    metadata = {}
    if fields["description"]:
        metadata["description"] = fields["description"]
    if fields["flag_set"]:
        metadata["flagSetId"] = fields["flag_set"]
    if metadata:
        definition["metadata"] = metadata
    return definition


def from_definition(definition: dict[str, Any], flag_set: str = "") -> FlagFields:
    """Returns the flag fields of a flagd flag definition (as :func:`to_definition` writes them).

    A missing ``state`` is ``ENABLED`` (flagd's schema requires it; imports check it first); flag
    metadata other than ``description`` and ``flagSetId`` is not kept. ``flag_set`` is the set of a
    definition without a ``flagSetId`` of its own (an imported document's).
    """
    metadata = definition.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    description = metadata.get("description")
    own_set = metadata.get("flagSetId")
    return FlagFields(
        state=definition.get("state", "ENABLED"),
        variants=definition.get("variants", {}),
        default_variant=definition.get("defaultVariant", ""),
        targeting=definition.get("targeting") or None,
        description=description if isinstance(description, str) else "",
        flag_set=own_set if isinstance(own_set, str) else flag_set,
    )
