"""How every call of the SDK is made: credentials, deadlines, retries and typed errors.

betterproto2's async stubs send each call through ``ServiceStub._unary_unary`` and
``ServiceStub._unary_stream``; :class:`Resilient` overrides those two, so each generated
method of a service class built on it (:mod:`orchestrall.sdk.services`) gets the policy of
its :class:`Session` without a wrapper per RPC.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import betterproto2
from betterproto2.grpclib.grpclib_client import MetadataLike, ServiceStub
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline

from .errors import OrchestrallError, from_status

if TYPE_CHECKING:
    from grpclib.client import Channel

T = TypeVar("T", bound=betterproto2.Message)

#: RPC name prefixes of calls that change nothing, so a repeat is harmless (AIP-131, -132, and
#: the read-only custom methods: ``WaitRun``, ``StreamRunEvents``, ``EvaluateFlag``...).
READ_ONLY_PREFIXES = ("Get", "List", "Query", "Search", "Export", "Preview", "Evaluate", "Wait", "Stream")
#: The token exchange: anonymous (no ``authorization`` header) and safe to repeat.
ISSUE_TOKEN = "/orchestrall.auth.v1.AuthService/IssueToken"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often an idempotent call is repeated after ``UNAVAILABLE``.

    A call is idempotent when its RPC only reads (:data:`READ_ONLY_PREFIXES`) or its request
    carries a ``request_id`` (AIP-155: the service answers a repeat with the first result).
    Waits grow exponentially with full jitter ("Exponential Backoff And Jitter", AWS
    Architecture Blog, 2015) and never outlast the call's deadline.

    Attributes:
        attempts: Tries in all, the first included; 1 turns retries off.
        initial_backoff: Upper bound of the first wait, in seconds.
        max_backoff: Upper bound of any wait, in seconds.
        multiplier: Growth of the bound per attempt.
    """

    attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def backoff(self, retry: int) -> float:
        """Returns the wait before retry number ``retry`` (1 for the first), in seconds."""
        bound = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return random.uniform(0, bound)


def is_idempotent(route: str, request: betterproto2.Message) -> bool:
    """Returns whether repeating the call ``route`` with ``request`` is harmless.

    Args:
        route: ``/package.Service/Method``.
        request: The request message.
    """
    method = route.rsplit("/", 1)[-1]
    return (
        route == ISSUE_TOKEN
        or method.startswith(READ_ONLY_PREFIXES)
        or bool(getattr(request, "request_id", ""))
    )


def _status_of(error: BaseException) -> tuple[Status, str | None, list[betterproto2.Message]] | None:
    """Returns the status of a failed attempt, or None when ``error`` is not a call failure."""
    if isinstance(error, GRPCError):
        return error.status, error.message, list(error.details or [])
    if isinstance(error, TimeoutError):  # grpclib's deadline; an OSError since Python 3.11
        return Status.DEADLINE_EXCEEDED, "the deadline passed", []
    if isinstance(error, (OSError, StreamTerminatedError)):
        # Refused or reset connections: the peer is not there (yet), which gRPC calls UNAVAILABLE.
        return Status.UNAVAILABLE, f"{type(error).__name__}: {error}", []
    return None


@dataclass
class Session:
    """What every call of one client shares.

    Attributes:
        timeout: Deadline of a unary call, retries included, in seconds.
        stream_timeout: Deadline of a server stream, in seconds; None for none.
        retry: The retry policy.
        token: Returns the bearer token to send (refreshing it first when due), or None.
        sleep: Waits that many seconds (tests may make it instant).
    """

    timeout: float = 30.0
    stream_timeout: float | None = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    token: Callable[[], Awaitable[str | None]] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def metadata(self, route: str, metadata: MetadataLike | None) -> list[tuple[str, str | bytes]]:
        """Returns the call's metadata with ``authorization`` added (not for the token exchange)."""
        given = metadata.items() if isinstance(metadata, Mapping) else metadata or []
        pairs: list[tuple[str, str | bytes]] = [(str(key), value) for key, value in given]
        if route != ISSUE_TOKEN and self.token is not None:
            token = await self.token()
            if token:
                pairs.append(("authorization", f"Bearer {token}"))
        return pairs

    def deadline(
        self, timeout: float | None, deadline: Deadline | None, default: float | None
    ) -> Deadline | None:
        """Returns the call's deadline: the caller's, else from its timeout, else from ``default``."""
        if deadline is not None:
            return deadline
        seconds = timeout if timeout is not None else default
        return Deadline.from_timeout(seconds) if seconds is not None else None

    async def pause(self, retry: int, deadline: Deadline | None) -> bool:
        """Waits before retry number ``retry``; returns False when no retry is left or time is up."""
        if retry >= self.retry.attempts:
            return False
        wait = self.retry.backoff(retry)
        if deadline is not None and deadline.time_remaining() <= wait:
            return False
        await self.sleep(wait)
        return True


def _failure(error: BaseException) -> OrchestrallError | None:
    status = _status_of(error)
    return from_status(*status) if status else None


class Resilient(ServiceStub):
    """A betterproto2 async stub whose calls follow a :class:`Session`'s policy.

    Args:
        channel: The grpclib channel.
        session: Credentials, deadlines and retry policy.
    """

    def __init__(self, channel: Channel, session: Session) -> None:
        super().__init__(channel)
        self.session = session

    async def _unary_unary(
        self,
        route: str,
        request: Any,
        response_type: type[T],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: MetadataLike | None = None,
    ) -> T:
        session = self.session
        until = session.deadline(timeout, deadline, session.timeout)
        retry = 0
        while True:
            try:
                return await super()._unary_unary(
                    route,
                    request,
                    response_type,
                    deadline=until,
                    metadata=await session.metadata(route, metadata),
                )
            except (GRPCError, OSError, StreamTerminatedError) as error:
                failure = _failure(error)
                assert failure is not None
                retry += 1
                if not (
                    failure.code is Status.UNAVAILABLE
                    and is_idempotent(route, request)
                    and await session.pause(retry, until)
                ):
                    raise failure from error

    async def _unary_stream(
        self,
        route: str,
        request: Any,
        response_type: type[T],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: MetadataLike | None = None,
    ) -> AsyncIterator[T]:
        session = self.session
        until = session.deadline(timeout, deadline, session.stream_timeout)
        retry = 0
        while True:
            received = False
            try:
                async for message in super()._unary_stream(
                    route,
                    request,
                    response_type,
                    deadline=until,
                    metadata=await session.metadata(route, metadata),
                ):
                    received = True
                    yield message
                return
            except (GRPCError, OSError, StreamTerminatedError) as error:
                failure = _failure(error)
                assert failure is not None
                retry += 1
                # A stream is repeated only before its first message: a repeat would yield those again.
                if received or not (
                    failure.code is Status.UNAVAILABLE
                    and is_idempotent(route, request)
                    and await session.pause(retry, until)
                ):
                    raise failure from error
