"""Errors of the flag service."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from services.kit.errors import AlreadyExists, DomainError, FieldViolation, InvalidArgument, NotFound


def flag_exists(name: str) -> AlreadyExists:
    """Return the error for a flag key that the tenant uses already."""
    return AlreadyExists("FLAG_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def flag_not_found(name: str) -> NotFound:
    """Return the error for a flag that the caller's tenant does not have."""
    return NotFound("FLAG_NOT_FOUND", f"{name} not found", metadata={"name": name})


def revision_not_found(name: str) -> NotFound:
    """Return the error for a flag revision that the caller's tenant does not have."""
    return NotFound("FLAG_REVISION_NOT_FOUND", f"{name} not found", metadata={"name": name})


def invalid_definition(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a flag that is no valid flagd flag definition.

    See https://flagd.dev/reference/flag-definitions/.
    """
    return InvalidArgument(violations, reason="INVALID_FLAG_DEFINITION")


#: flagd's error code -> gRPC status of its evaluation services (flagd's ``errFormat``:
#: flagd/pkg/service/flag-evaluation/flag_evaluator.go). Codes flagd does not map (``INVALID_CONTEXT``,
#: ``TARGETING_KEY_MISSING``) are UNKNOWN there too; flagd providers read GENERAL from UNKNOWN.
FLAGD_STATUS: dict[str, grpc.StatusCode] = {
    "FLAG_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "FLAG_DISABLED": grpc.StatusCode.NOT_FOUND,
    "TYPE_MISMATCH": grpc.StatusCode.INVALID_ARGUMENT,
    "PARSE_ERROR": grpc.StatusCode.DATA_LOSS,
    "GENERAL": grpc.StatusCode.UNKNOWN,
}


class FlagdError(DomainError):
    """A flagd evaluation that failed, under the gRPC status flagd gives its error code.

    Args:
        error_code: OpenFeature/flagd error code (``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``...),
            also the ``ErrorInfo`` reason.
        key: The flag key evaluated.
    """

    def __init__(self, error_code: str, key: str) -> None:
        super().__init__(
            error_code, f"flag {key!r}: {error_code.lower().replace('_', ' ')}", metadata={"flag_key": key}
        )
        self.code = FLAGD_STATUS.get(error_code, grpc.StatusCode.UNKNOWN)
