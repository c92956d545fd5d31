"""What the gateway costs: one read RPC three ways, measured in the same run.

* direct: gRPC over mTLS straight to the agent service (the baseline);
* grpc-via-envoy: native gRPC through Envoy (JWT checked at the edge and again in the service);
* rest-via-envoy: REST/JSON through Envoy's transcoder.

Usage: ``python -m benchmark.gateway_overhead [--calls 400]``. Starts its own
stack (no model server: the RPC is ``GetAgent``, which calls no model) and
prints calls/s, p50/p99 latency and each path's ratio to the baseline, so the
figures hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.cli.stack import CLI_IDENTITY, Stack, StackConfig
from services.kit import mtls


def _measure(call: Callable[[], object], calls: int) -> tuple[float, float, float]:
    for _ in range(20):
        call()
    samples = []
    began = time.perf_counter()
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    samples.sort()
    return calls / elapsed, statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99) - 1] * 1e3


def main() -> None:
    """Runs the benchmark and prints a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.ephemeral(Path(tmp), openai_base_url="http://127.0.0.1:9/v1")
        with Stack(config, log=lambda _line: None) as stack:
            url = stack.config.gateway_url
            created = httpx.post(f"{url}/v1/tenants?tenantId=bench", json={"displayName": "Bench"}).json()
            token = httpx.post(
                f"{url}/v1/oauth2/token",
                json={"grant_type": "client_credentials", "client_secret": created["apiKeySecret"]},
            ).json()["access_token"]
            metadata = (("authorization", f"Bearer {token}"),)
            name = "tenants/bench/agents/bench"
            credentials = mtls.channel_credentials(mtls.TlsFiles.of(config.tls_dir, CLI_IDENTITY))
            direct = grpc.secure_channel(
                f"127.0.0.1:{config.service_ports['agent']}",
                credentials,
                options=[("grpc.ssl_target_name_override", "agent")],
            )
            pb_grpc.AgentServiceStub(direct).CreateAgent(
                pb.CreateAgentRequest(
                    parent="tenants/bench", agent_id="bench", agent=res.Agent(instructions="x")
                ),
                metadata=metadata,
            )
            via_envoy = grpc.insecure_channel(f"127.0.0.1:{config.http_port}")
            rest = httpx.Client(base_url=url, headers=dict(metadata))
            paths = {
                "direct gRPC (mTLS)": lambda: pb_grpc.AgentServiceStub(direct).GetAgent(
                    pb.GetAgentRequest(name=name), metadata=metadata
                ),
                "gRPC via Envoy": lambda: pb_grpc.AgentServiceStub(via_envoy).GetAgent(
                    pb.GetAgentRequest(name=name), metadata=metadata
                ),
                "REST via Envoy": lambda: rest.get(f"/v1/{name}").raise_for_status(),
            }
            results = {label: _measure(call, args.calls) for label, call in paths.items()}
            base_rate, base_p50, _ = results["direct gRPC (mTLS)"]
            print(f"{args.calls} sequential GetAgent calls per path, one client")
            header = ("path", "calls/s", "p50 ms", "p99 ms", "rate/direct", "p50/direct")
            print(f"{header[0]:<20}" + "".join(f"{h:>12}" for h in header[1:]))
            for label, (rate, p50, p99) in results.items():
                row = (
                    f"{rate:.0f}",
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    f"{rate / base_rate:.2f}",
                    f"{p50 / base_p50:.2f}",
                )
                print(f"{label:<20}" + "".join(f"{cell:>12}" for cell in row))
            direct.close()
            via_envoy.close()
            rest.close()


if __name__ == "__main__":
    main()
