"""An ASGI app served under uvicorn beside a service's gRPC server, with the kit's mTLS.

Some of what a service offers is plain HTTP: the agent's MCP catalog (streamable HTTP),
auth's form-encoded OAuth token endpoint. Each runs on a listener of its own in the
service's event loop, started before the gRPC port serves and stopped before it stops
(the service's ``on_start`` and ``on_stop`` hooks). Under the kit's mTLS the listener
requires a client certificate of the mesh's CA (the gateway's); behind Istio's sidecar it
is plaintext to the sidecar, as the gRPC server is.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Literal

import uvicorn

from services.kit.mtls import TlsFiles

#: Seconds requests in progress get to finish when the listener stops.
GRACE_SECONDS = 2


class HttpListener:
    """Serves ``app`` on ``listen`` under uvicorn, with mTLS when ``tls`` is given.

    Args:
        name: What it is, in errors and the asyncio task's name (``"MCP catalog server"``).
        app: The ASGI application.
        listen: ``host:port`` to bind (port 0: any free one, see :attr:`port`).
        tls: The service's workload certificate; clients must present one of the same CA.
        lifespan: Whether uvicorn runs the app's lifespan events (``"on"``) or not (``"off"``).
    """

    def __init__(
        self, name: str, app: Any, listen: str, tls: TlsFiles | None, lifespan: Literal["on", "off"] = "off"
    ) -> None:
        host, _, port = listen.rpartition(":")
        options: dict[str, Any] = {}
        if tls is not None:
            options = {
                "ssl_certfile": str(tls.cert),
                "ssl_keyfile": str(tls.key),
                "ssl_ca_certs": str(tls.ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
            }
        config = uvicorn.Config(
            app,
            host=host,
            port=int(port),
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=GRACE_SECONDS,
            **options,
        )
        self._name = name
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts serving and returns once the port is bound.

        Raises:
            RuntimeError: The server did not start (the port is taken).
        """
        self._task = asyncio.create_task(self._server.serve(), name=self._name)
        while not self._server.started:
            if self._task.done():
                raise RuntimeError(f"the {self._name} did not start") from self._task.exception()
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        sockets = [s for server in self._server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stops serving, letting requests in progress finish (up to :data:`GRACE_SECONDS`)."""
        if self._task is not None:
            self._server.should_exit = True
            await self._task
