"""Update masks of standard ``Update`` methods (AIP-134)."""

from __future__ import annotations

from collections.abc import Collection

from google.protobuf import field_mask_pb2

from services.kit.errors import invalid


def update_paths(
    mask: field_mask_pb2.FieldMask, mutable: tuple[str, ...], ignored: Collection[str] = ()
) -> tuple[str, ...]:
    """Returns the mutable fields an update mask names, in ``mutable``'s order.

    An empty mask or ``*`` means every mutable field (AIP-134); output-only fields
    named in ``ignored`` are skipped (AIP-203).

    Raises:
        InvalidArgument: A path is neither mutable nor ignored (field ``update_mask``).
    """
    paths = list(mask.paths)
    if not paths or paths == ["*"]:
        return mutable
    unknown = sorted(set(paths) - set(mutable) - set(ignored))
    if unknown:
        raise invalid("update_mask", f"unknown fields {unknown}; mutable fields: {', '.join(mutable)}")
    return tuple(p for p in mutable if p in paths)
