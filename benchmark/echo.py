"""The baseline server: a bare grpc.aio echo over mTLS, no interceptors, no protobuf.

``python -m benchmark.echo TLS_DIR IDENTITY PORT`` serves :data:`METHOD`, which
returns the request's bytes, with the same mTLS setup as the services
(:func:`services.kit.mtls.server_credentials`: the workload certificate of
``IDENTITY``, client certificates required). Whatever a service does beyond
this is overhead that a figure's ratio to the echo shows.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from services.kit import mtls

SERVICE = "orchestrall.bench.v1.EchoService"
METHOD = f"/{SERVICE}/Echo"


async def _echo(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
    return request


async def serve(tls_dir: Path, identity: str, port: int) -> None:
    """Serves the echo on ``127.0.0.1:port`` until the process is killed."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})])
    server.add_secure_port(f"127.0.0.1:{port}", mtls.server_credentials(mtls.TlsFiles.of(tls_dir, identity)))
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    """Command-line entry point: ``TLS_DIR IDENTITY PORT``."""
    tls_dir, identity, port = sys.argv[1:4]
    asyncio.run(serve(Path(tls_dir), identity, int(port)))


if __name__ == "__main__":
    main()
