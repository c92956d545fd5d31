"""Typed exceptions for failed calls, from the ``google.rpc.Status`` the services answer with.

Every service answers a failed call with a status code and, in the ``grpc-status-details-bin``
trailer, a ``google.rpc.Status`` carrying exactly one ``google.rpc.ErrorInfo`` (reason in
UPPER_SNAKE, domain ``<svc>.orchestrall.dev``) and, for bad input, a ``google.rpc.BadRequest``
with one violation per field (Google AIP-193). :func:`from_status` turns them into one
exception class per status code, all subclasses of :class:`OrchestrallError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import betterproto2
from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase

from .proto.google.rpc import BadRequest, ErrorInfo
from .proto.google.rpc import Status as StatusProto
from .proto.message_pool import default_message_pool


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (``google.rpc.BadRequest.FieldViolation``).

    Attributes:
        field: Path of the field, e.g. ``agent.display_name``.
        description: Why it is bad, for people.
        reason: Machine-readable reason, when the service gives one.
    """

    field: str
    description: str
    reason: str = ""


@dataclass(eq=False)
class OrchestrallError(Exception):
    """A call failed. Subclasses name the gRPC status code.

    Attributes:
        code: The gRPC status code.
        message: The status message, for people.
        reason: ``ErrorInfo.reason`` (UPPER_SNAKE), or ``""`` when the answer carried none
            (a failure of the network or of a proxy rather than of a service).
        domain: ``ErrorInfo.domain``, e.g. ``agent.orchestrall.dev``.
        metadata: ``ErrorInfo.metadata``: the values the reason is about.
        field_violations: ``BadRequest``'s violations, one per bad field.
        details: Every detail message of the status, as betterproto2 messages.
    """

    code: Status
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    details: list[betterproto2.Message] = field(default_factory=list)

    def __str__(self) -> str:
        reason = f" [{self.reason}]" if self.reason and self.reason != self.code.name else ""
        return f"{self.code.name}: {self.message}{reason}"


class Cancelled(OrchestrallError):
    """The call was cancelled (``CANCELLED``)."""


class Unknown(OrchestrallError):
    """An error without a better code (``UNKNOWN``)."""


class InvalidArgument(OrchestrallError):
    """The request is malformed; see :attr:`field_violations` (``INVALID_ARGUMENT``)."""


class DeadlineExceeded(OrchestrallError):
    """The deadline passed before the call finished (``DEADLINE_EXCEEDED``)."""


class NotFound(OrchestrallError):
    """The resource does not exist, or is not visible to the caller (``NOT_FOUND``)."""


class AlreadyExists(OrchestrallError):
    """A resource of that name exists (``ALREADY_EXISTS``)."""


class PermissionDenied(OrchestrallError):
    """The caller lacks the permission the RPC declares (``PERMISSION_DENIED``)."""


class ResourceExhausted(OrchestrallError):
    """A quota or rate limit is used up (``RESOURCE_EXHAUSTED``)."""


class FailedPrecondition(OrchestrallError):
    """The resource is not in a state that allows the call (``FAILED_PRECONDITION``)."""


class Aborted(OrchestrallError):
    """A concurrency conflict, e.g. a stale etag (``ABORTED``)."""


class OutOfRange(OrchestrallError):
    """A value is past the valid range (``OUT_OF_RANGE``)."""


class Unimplemented(OrchestrallError):
    """The server does not offer the RPC (``UNIMPLEMENTED``)."""


class Internal(OrchestrallError):
    """A server bug (``INTERNAL``)."""


class Unavailable(OrchestrallError):
    """The service cannot be reached now; retrying may help (``UNAVAILABLE``)."""


class DataLoss(OrchestrallError):
    """Unrecoverable data loss (``DATA_LOSS``)."""


class Unauthenticated(OrchestrallError):
    """The credentials are missing, invalid or expired (``UNAUTHENTICATED``)."""


ERRORS: dict[Status, type[OrchestrallError]] = {
    Status.CANCELLED: Cancelled,
    Status.UNKNOWN: Unknown,
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.DEADLINE_EXCEEDED: DeadlineExceeded,
    Status.NOT_FOUND: NotFound,
    Status.ALREADY_EXISTS: AlreadyExists,
    Status.PERMISSION_DENIED: PermissionDenied,
    Status.RESOURCE_EXHAUSTED: ResourceExhausted,
    Status.FAILED_PRECONDITION: FailedPrecondition,
    Status.ABORTED: Aborted,
    Status.OUT_OF_RANGE: OutOfRange,
    Status.UNIMPLEMENTED: Unimplemented,
    Status.INTERNAL: Internal,
    Status.UNAVAILABLE: Unavailable,
    Status.DATA_LOSS: DataLoss,
    Status.UNAUTHENTICATED: Unauthenticated,
}


def from_status(
    code: Status, message: str | None, details: Sequence[betterproto2.Message] = ()
) -> OrchestrallError:
    """Returns the exception for a failed call's status and its decoded detail messages.

    Args:
        code: The status code; ``OK`` is not an error and is not expected here.
        message: The status message.
        details: The ``google.rpc.Status`` details (:class:`StatusDetails` decodes them).

    Returns:
        An instance of the code's subclass of :class:`OrchestrallError` (``Unknown`` for
        a code outside the table) with the first ``ErrorInfo``'s reason, domain and
        metadata and every ``BadRequest`` violation.
    """
    info = next((d for d in details if isinstance(d, ErrorInfo)), None)
    violations = [
        FieldViolation(v.field, v.description, v.reason)
        for d in details
        if isinstance(d, BadRequest)
        for v in d.field_violations
    ]
    return ERRORS.get(code, Unknown)(
        code=code,
        message=message or "",
        reason=info.reason if info else "",
        domain=info.domain if info else "",
        metadata=dict(info.metadata) if info else {},
        field_violations=violations,
        details=list(details),
    )


class StatusDetails(StatusDetailsCodecBase):
    """Decodes the ``grpc-status-details-bin`` trailer into betterproto2 messages (grpclib's hook).

    Detail types the SDK does not know (not in its generated message pool) are left out.
    """

    def encode(self, status: Status, message: str | None, details: object) -> bytes:
        """Clients never send status details.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("status details are only decoded by the SDK")

    def decode(self, status: Status, message: str | None, data: bytes) -> list[betterproto2.Message]:
        """Returns the detail messages of a serialized ``google.rpc.Status``."""
        decoded = []
        for packed in StatusProto.parse(data).details:
            known = default_message_pool.url_to_type.get(packed.type_url)
            if known is not None:
                decoded.append(known.parse(packed.value))
        return decoded
