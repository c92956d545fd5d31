"""The SDK's entry point: one connection, to the gateway or straight to a service."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

from grpclib.client import Channel
from grpclib.config import Configuration

from ._calls import RetryPolicy, Session
from ._credentials import ApiKeyCredentials
from .errors import StatusDetails
from .services import AgentService, AuthService, BillingService, FlagService, WorkflowService


def _split(address: str) -> tuple[str, int, bool | None]:
    """Returns host, port and whether the scheme asked for TLS (None: no scheme) of ``address``."""
    scheme, _, rest = address.rpartition("://")
    tls = {"": None, "http": False, "https": True, "grpc": False, "grpcs": True}.get(scheme)
    if scheme and tls is None:
        raise ValueError(f"unknown scheme in {address!r}: use host:port, http:// or https://")
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not host:port: {address!r}")
    return host.strip("[]"), int(port), tls


def tls_context(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> ssl.SSLContext:
    """Returns a client TLS context for HTTP/2 (ALPN ``h2``), TLS 1.2 or later.

    Args:
        ca_file: PEM of the CAs that may sign the server's certificate (the project's local CA,
            ``<state>/tls/ca.pem``); None: the system's.
        cert_file: PEM of a client certificate, for mutual TLS (a workload certificate of
            that CA, e.g. ``<state>/tls/cli.pem``).
        key_file: Its private key.

    Raises:
        ValueError: Only one of ``cert_file`` and ``key_file`` is given.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("mutual TLS needs both cert_file and key_file")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


class Client:
    """An async client of Orchestrall: typed stubs of the five services over one HTTP/2 connection.

    Give it the gateway's gRPC address (Envoy serves gRPC and REST on one port), or a service's
    address with the local CA and a workload certificate for mutual TLS. Calls carry a bearer
    token: a fixed ``token``, or one exchanged for ``api_key`` at auth's ``IssueToken`` and renewed
    before it expires. Each call has a deadline; idempotent calls are retried on ``UNAVAILABLE``
    (:class:`~orchestrall.sdk.RetryPolicy`); failures raise :mod:`orchestrall.sdk.errors`' typed
    exceptions, with the ``ErrorInfo`` reason and the field violations of the answer::

        async with Client("127.0.0.1:8080", api_key=secret) as client:
            agents = await client.agents.list_agents(agent.ListAgentsRequest(parent="tenants/acme"))

    Args:
        address: ``host:port``; ``https://host:port`` turns TLS on, ``http://`` keeps it off.
        api_key: An API key's secret, exchanged for tokens (client credentials grant).
        token: A bearer token to send as it is (not renewed).
        tls: TLS with the system's CAs (True), a context of the caller's, or off (False, the
            default unless the address says ``https://`` or a file below is given).
        ca_file: The CA that signs the server's certificate (implies TLS).
        cert_file: A client certificate, for mutual TLS (with ``key_file``).
        key_file: The client certificate's key.
        server_name: The name to verify the server's certificate for, when it is not the host
            of ``address`` (e.g. ``agent`` for a service's workload certificate).
        scope: Roles to ask for with ``api_key``, space-separated; empty: all the key's.
        timeout: Deadline of each unary call, retries included, in seconds.
        stream_timeout: Deadline of each server stream, in seconds; None for none.
        retry: When idempotent calls are repeated.
        refresh_before: Seconds before a token's expiry at which it is renewed.
        clock: Monotonic time in seconds, for token renewal (injectable for tests).
        sleep: Waits between retries (injectable for tests).

    Raises:
        ValueError: Both ``api_key`` and ``token``, or a malformed address.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        tls: bool | ssl.SSLContext | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
        scope: str = "",
        timeout: float = 30.0,
        stream_timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        refresh_before: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if api_key and token:
            raise ValueError("give api_key or token, not both")
        host, port, scheme_tls = _split(address)
        files = ca_file is not None or cert_file is not None
        if isinstance(tls, ssl.SSLContext):
            context: ssl.SSLContext | None = tls
        elif tls or scheme_tls or files:
            context = tls_context(ca_file, cert_file, key_file)
        else:
            context = None
        self.address = address
        self.channel = Channel(
            host,
            port,
            ssl=context,
            status_details_codec=StatusDetails(),
            config=Configuration(ssl_target_name_override=server_name) if server_name else None,
        )
        self.session = Session(timeout=timeout, stream_timeout=stream_timeout, retry=retry or RetryPolicy())
        self.session.sleep = sleep
        #: ``orchestrall.auth.v1.AuthService``.
        self.auth = AuthService(self.channel, self.session)
        #: ``orchestrall.agent.v1.AgentService``.
        self.agents = AgentService(self.channel, self.session)
        #: ``orchestrall.workflow.v1.WorkflowService``.
        self.workflows = WorkflowService(self.channel, self.session)
        #: ``orchestrall.flag.v1.FlagService``.
        self.flags = FlagService(self.channel, self.session)
        #: ``orchestrall.billing.v1.BillingService``.
        self.billing = BillingService(self.channel, self.session)
        #: The API key's token source, or None with a fixed token.
        self.credentials: ApiKeyCredentials | None = None
        if api_key:
            self.credentials = ApiKeyCredentials(
                api_key, self.auth.issue_token, scope=scope, refresh_before=refresh_before, clock=clock
            )
            self.session.token = self.credentials.token
        elif token:
            fixed = token

            async def constant() -> str:
                return fixed

            self.session.token = constant

    async def token(self) -> str | None:
        """Returns the bearer token the next call sends (exchanging or renewing it if due), or None."""
        return await self.session.token() if self.session.token else None

    def close(self) -> None:
        """Closes the connection."""
        self.channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
