"""What one request costs Envoy itself: its CPU time per call, read from the kernel.

Starts its own stack (no model server: the RPC is ``GetAgent``, which calls no
model), sends a fixed number of ``GetAgent`` calls through the gateway at a fixed
pace, one client, and reads Envoy's user + system CPU time (``utime`` + ``stime``
of ``/proc/<pid>/stat``, all its threads, see proc(5)) before and after. The
result is microseconds of Envoy CPU per call, with Envoy's idle CPU over the same
time subtracted. Latency is not the point here (see ``benchmark.gateway_overhead``):
CPU per call is what bounds an Envoy replica's throughput, and it barely depends on
what else the machine runs.

The pace stays under the default per-tenant rate limit (500/s), so no call is
refused; any answer but success stops the run.

Rounds of the two paths alternate; the median and the lowest round are printed
(CPU time only grows with interference, so the lowest is the least disturbed).

Usage: ``python -m benchmark.envoy_cpu [--calls 2000] [--rate 300] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from services.cli.stack import Stack, StackConfig

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Returns the CPU time (user + system, every thread) a process has used so far, in seconds.

    Reads fields 14 (``utime``) and 15 (``stime``) of ``/proc/<pid>/stat`` (proc(5)),
    counted in clock ticks of ``SC_CLK_TCK`` (10 ms on most kernels).
    """
    # The command name (field 2) may hold spaces; fields after it start at 3 (state).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def _paced(call: Callable[[], None], calls: int, rate: float) -> float:
    """Makes ``calls`` calls, the i-th no earlier than i / rate seconds in; returns the elapsed seconds."""
    began = time.perf_counter()
    for i in range(calls):
        wait = began + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        call()
    return time.perf_counter() - began


def envoy_us_per_call(pid: int, call: Callable[[], None], calls: int, rate: float, idle: float) -> float:
    """Returns Envoy's CPU microseconds per call, less ``idle`` (its CPU seconds per second at rest)."""
    before = cpu_seconds(pid)
    elapsed = _paced(call, calls, rate)
    used = cpu_seconds(pid) - before - idle * elapsed
    return used / calls * 1e6


def main() -> None:
    """Runs the measurement and prints one line per path."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="Calls per path and round (default 2000).")
    parser.add_argument("--rate", type=float, default=300, help="Calls per second (default 300).")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per path (default 5).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.ephemeral(Path(tmp), openai_base_url="http://127.0.0.1:9/v1")
        with Stack(config, log=lambda _line: None) as stack:
            url = config.gateway_url
            created = httpx.post(f"{url}/v1/tenants?tenantId=bench", json={"displayName": "Bench"}).json()
            token = httpx.post(
                f"{url}/v1/oauth2/token",
                json={"grant_type": "client_credentials", "client_secret": created["apiKeySecret"]},
            ).json()["access_token"]
            metadata = (("authorization", f"Bearer {token}"),)
            name = "tenants/bench/agents/bench"
            rest = httpx.Client(base_url=url, headers=dict(metadata))
            rest.post("/v1/tenants/bench/agents?agentId=bench", json={"instructions": "x"}).raise_for_status()
            channel = grpc.insecure_channel(f"127.0.0.1:{config.http_port}")
            stub = pb_grpc.AgentServiceStub(channel)

            def rest_get() -> None:
                rest.get(f"/v1/{name}").raise_for_status()

            def grpc_get() -> None:
                stub.GetAgent(pb.GetAgentRequest(name=name), metadata=metadata)

            paths = {"REST GetAgent": rest_get, "gRPC GetAgent": grpc_get}
            pid = stack.pid("gateway")
            for call in paths.values():  # warm up: connections, JWKS, caches
                for _ in range(200):
                    call()
            time.sleep(1)
            rest_began, cpu_began = time.perf_counter(), cpu_seconds(pid)
            time.sleep(5)
            idle = (cpu_seconds(pid) - cpu_began) / (time.perf_counter() - rest_began)
            results: dict[str, list[float]] = {label: [] for label in paths}
            for _ in range(args.rounds):
                for label, call in paths.items():
                    results[label].append(envoy_us_per_call(pid, call, args.calls, args.rate, idle))
            print(
                f"Envoy CPU per call: {args.calls} calls x {args.rounds} rounds per path at "
                f"{args.rate:.0f}/s, one client (idle Envoy: {idle * 1e3:.1f} ms CPU/s, subtracted)"
            )
            print(f"{'path':<16}{'median us':>11}{'lowest us':>11}   rounds")
            for label, samples in results.items():
                rounds = " ".join(f"{s:.0f}" for s in samples)
                print(f"{label:<16}{statistics.median(samples):>11.0f}{min(samples):>11.0f}   {rounds}")
            channel.close()
            rest.close()


if __name__ == "__main__":
    main()
