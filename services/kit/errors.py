"""Domain errors and their one mapping to ``google.rpc.Status``.

Handlers raise :class:`DomainError` subclasses; the error interceptor turns
them into a ``google.rpc.Status`` with exactly one ``google.rpc.ErrorInfo``
(reason UPPER_SNAKE_CASE, domain ``<service>.orchestrall.dev``; AIP-193) and, for
invalid arguments, a ``google.rpc.BadRequest`` listing field violations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

#: Characters of an error's message a client gets at most; the rest is cut (messages may quote input).
MAX_MESSAGE = 1_000
#: Characters of an ``ErrorInfo.metadata`` value, a field path or a violation's description at most.
MAX_VALUE = 200


def clip(text: str, limit: int) -> str:
    """Returns ``text`` cut to ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def domain_of(service: str) -> str:
    """Returns the ``ErrorInfo.domain`` of a mesh service's errors: ``<service>.orchestrall.dev``."""
    return f"{service}.orchestrall.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``agent.display_name``) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a handler may raise on purpose.

    Args:
        reason: UPPER_SNAKE_CASE, stable, machine-readable cause (``AGENT_NOT_FOUND``).
        message: Human-readable text for the client; never includes SQL or stack traces.
        metadata: Extra ``ErrorInfo.metadata`` (resource names, limits).
        domain: ``ErrorInfo.domain``; filled in by the interceptor when empty.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self, reason: str, message: str, *, metadata: Mapping[str, str] | None = None, domain: str = ""
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.domain = domain

    def details(self) -> list[any_pb2.Any]:
        """Detail messages besides ErrorInfo; subclasses add their own."""
        return []

    def to_status(self, default_domain: str) -> status_pb2.Status:
        """Returns the ``google.rpc.Status`` sent to the client."""
        return error_status(
            self.code, self.reason, self.message, self.domain or default_domain, self.metadata, self.details()
        )


def error_status(
    code: grpc.StatusCode,
    reason: str,
    message: str,
    domain: str,
    metadata: Mapping[str, str] | None = None,
    details: Sequence[any_pb2.Any] = (),
) -> status_pb2.Status:
    """A ``google.rpc.Status`` with exactly one ``ErrorInfo`` first among its details (AIP-193).

    Used for errors sent to a client and for failures stored on resources (a run's ``error``).
    The message and metadata values are cut to :data:`MAX_MESSAGE` and :data:`MAX_VALUE`
    characters, so an error never echoes a large input whole.
    """
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain=domain, metadata={k: clip(v, MAX_VALUE) for k, v in (metadata or {}).items()}
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(
        code=code.value[0], message=clip(message, MAX_MESSAGE), details=[packed, *details]
    )


class InvalidArgument(DomainError):
    """The request is malformed; lists each bad field (``google.rpc.BadRequest``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation], reason: str = "INVALID_ARGUMENT") -> None:
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(reason, f"invalid request: {text}")
        self.violations = list(violations)

    def details(self) -> list[any_pb2.Any]:
        """Returns the ``BadRequest`` detail."""
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=clip(v.field, MAX_VALUE), description=clip(v.description, MAX_VALUE)
                )
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return [packed]


def invalid(field: str, description: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    """Shorthand for an :class:`InvalidArgument` about one field."""
    return InvalidArgument([FieldViolation(field, description)], reason=reason)


class NotFound(DomainError):
    """The named resource does not exist (for this caller)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The system is not in a state where the call can run (AIP-193)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """The caller could not be identified (no, bad or expired credentials)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    """A quota or entitlement is used up."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class QuotaViolation:
    """One quota a request would exceed, as ``google.rpc.QuotaFailure.Violation`` carries it.

    Attributes:
        subject: Who the quota is for, e.g. ``tenants/acme``.
        description: What was exceeded and by how much, for a human.
        quota_metric: The metered quantity, e.g. ``agent_runs``.
        quota_id: The quota's stable ID, e.g. ``free/agent_runs`` (plan and meter).
        quota_value: The limit, in the metric's unit.
    """

    subject: str
    description: str
    quota_metric: str
    quota_id: str
    quota_value: int


class QuotaExceeded(ResourceExhausted):
    """A request would exceed one or more quotas; carries ``google.rpc.QuotaFailure`` (AIP-193).

    Args:
        reason: The ErrorInfo reason, e.g. ``QUOTA_EXCEEDED``.
        message: Human-readable text.
        violations: One per quota exceeded.
        metadata: Extra ``ErrorInfo.metadata``.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        violations: Sequence[QuotaViolation],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, metadata=metadata)
        self.violations = list(violations)

    def details(self) -> list[any_pb2.Any]:
        """Returns the ``QuotaFailure`` detail."""
        failure = error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=clip(v.subject, MAX_VALUE),
                    description=clip(v.description, MAX_VALUE),
                    quota_metric=clip(v.quota_metric, MAX_VALUE),
                    quota_id=clip(v.quota_id, MAX_VALUE),
                    quota_value=v.quota_value,
                )
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(failure)
        return [packed]


class TooBusy(ResourceExhausted):
    """The caller has too much work in progress; it may retry after ``retry_after`` seconds.

    Carries ``google.rpc.RetryInfo`` (AIP-194) and a ``retry-after`` trailer, which the
    gateway passes to REST clients as the ``Retry-After`` header (RFC 9110 section 10.2.3).
    """

    def __init__(
        self, reason: str, message: str, retry_after: int, metadata: Mapping[str, str] | None = None
    ):
        super().__init__(reason, message, metadata=metadata)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        """Returns the ``RetryInfo`` detail."""
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=self.retry_after)))
        return [packed]


class Unavailable(DomainError):
    """A dependency is down; the client may retry with backoff."""

    code = grpc.StatusCode.UNAVAILABLE


def internal_status(message: str = "internal error") -> status_pb2.Status:
    """Status for an unexpected exception: no detail of the failure leaks."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)
