"""What the kit's interceptors cost per call: the same servicer with and without them.

* bare: the agent servicer on a gRPC server over mTLS with no interceptors (the baseline);
* kit: the same servicer as ``services.kit.server.start`` serves it: error mapping,
  audit context, JWT verification (EdDSA signature, claims) and the permission check.

Usage: ``python -m benchmark.auth_overhead [--calls 2000]``. The RPC is
``ListTools``, which touches no database and no model, so the difference is the
interceptors. Both servers run in this process, measured in the same run, and
the result is printed as calls/s, the ratio to the baseline and the added
microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.auth.v1 import auth_service_pb2 as auth_pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as auth_grpc
from orchestrall.auth.v1 import resources_pb2 as auth_res
from services.agent.server import AgentSettings
from services.agent.server import build as build_agent
from services.auth.server import AuthSettings
from services.auth.server import build as build_auth
from services.cli.stack import StackConfig
from services.kit import migrate, mtls
from services.kit.config import SERVICES
from services.kit.server import start


async def _rate(stub: pb_grpc.AgentServiceStub, metadata: tuple[tuple[str, str], ...], calls: int) -> float:
    for _ in range(50):
        await stub.ListTools(pb.ListToolsRequest(), metadata=metadata)
    began = time.perf_counter()
    for _ in range(calls):
        await stub.ListTools(pb.ListToolsRequest(), metadata=metadata)
    return calls / (time.perf_counter() - began)


async def run(calls: int) -> None:
    """Starts auth, the agent service twice (with and without interceptors) and measures."""
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        mtls.ensure_ca(config.tls_dir, "orchestrall.local")
        for name in (*SERVICES, "gateway"):
            mtls.issue_workload_cert(config.tls_dir, name, "orchestrall.local", "orchestrall")
        for name in ("auth", "agent"):
            migrate.upgrade(config.settings(name), name)
        auth = await start(*(await build_auth(AuthSettings(**config.settings("auth").model_dump()))))
        service, settings = await build_agent(AgentSettings(**config.settings("agent").model_dump()))
        with_kit = await start(service, settings)
        bare = grpc.aio.server()
        service.register(bare)
        bare_port = bare.add_secure_port(
            "127.0.0.1:0", mtls.server_credentials(mtls.TlsFiles.of(config.tls_dir, "agent"))
        )
        await bare.start()
        credentials = mtls.channel_credentials(mtls.TlsFiles.of(config.tls_dir, "gateway"))
        options = [("grpc.ssl_target_name_override", "auth")]
        async with grpc.aio.secure_channel(f"127.0.0.1:{auth.port}", credentials, options=options) as channel:
            stub = auth_grpc.AuthServiceStub(channel)
            created = await stub.CreateTenant(
                auth_pb.CreateTenantRequest(tenant_id="bench", tenant=auth_res.Tenant(display_name="Bench"))
            )
            token = await stub.IssueToken(
                auth_pb.IssueTokenRequest(
                    grant_type="client_credentials", client_secret=created.api_key_secret
                )
            )
        metadata = (("authorization", f"Bearer {token.access_token}"),)
        options = [("grpc.ssl_target_name_override", "agent")]
        rates = {}
        for label, port in (("bare (no interceptors)", bare_port), ("kit interceptors", with_kit.port)):
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
                rates[label] = await _rate(pb_grpc.AgentServiceStub(channel), metadata, calls)
        base = rates["bare (no interceptors)"]
        print(f"{calls} sequential ListTools calls over mTLS, one client, same process")
        print(f"{'server':<24}{'calls/s':>10}{'ratio':>8}{'added us/call':>15}")
        for label, rate in rates.items():
            print(f"{label:<24}{rate:>10.0f}{rate / base:>8.2f}{(1 / rate - 1 / base) * 1e6:>15.0f}")
        await bare.stop(0)
        await with_kit.stop(0)
        await auth.stop(0)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(run(parser.parse_args().calls))


if __name__ == "__main__":
    main()
