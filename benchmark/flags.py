"""Flag change propagation between two flag service replicas on one PostgreSQL database.

The PostgreSQL stack's flag service is replica 1; this module starts replica 2,
the same program with the same environment on another port
(:meth:`services.cli.stack.StackConfig.environment`). Each change switches the
benchmark flag's ``default_variant`` through replica 1 (``UpdateFlag``); the
latency runs from ``UpdateFlag``'s reply (the change is committed) to the first
``EvaluateFlag`` on replica 2 that returns the new variant, evaluations
back to back. Changes start at random moments (0-200 ms apart), so a periodic
refresh in the service is met at every phase. Replica 2 runs on core 0.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence

import grpc
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmark.harness import OTHER_CORE, Goal, Row, Throughput, percentile, pin, pinned
from benchmark.mesh import FLAG, Bench, measured
from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.cli.stack import ROOT, free_port
from services.kit import mtls

#: A change not visible after this long counts as this long (and fails the goal).
GIVE_UP_SECONDS = 10.0


class FlagPropagation:
    """Latency from a flag change on one replica to its first evaluation on another.

    Args:
        bench: The running stacks; the PostgreSQL one is used.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: this figure is a latency, measured in :meth:`rows`."""
        return []

    def _start_replica(self) -> tuple[subprocess.Popen[bytes], int]:
        config = self._bench.postgres.config
        port = free_port()
        env = config.environment("flag")
        env["ORCHESTRALL_LISTEN"] = f"127.0.0.1:{port}"
        env["ORCHESTRALL_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
        log = open(config.state_dir / "logs" / "flag-replica-2.log", "ab")  # noqa: SIM115
        argv = [sys.executable, "-m", "services.cli.die_with_parent", str(os.getpid()), sys.executable]
        process = subprocess.Popen(
            pinned([*argv, "-m", "services.flag"], OTHER_CORE), cwd=ROOT, env=env, stdout=log, stderr=log
        )
        log.close()
        return process, port

    def _channel(self, port: int) -> grpc.Channel:
        files = mtls.TlsFiles.of(self._bench.postgres.config.tls_dir, mtls.CLI_IDENTITY)
        return grpc.secure_channel(
            f"127.0.0.1:{port}",
            mtls.channel_credentials(files),
            options=[("grpc.ssl_target_name_override", "flag")],
        )

    def _latencies(self, update: pb_grpc.FlagServiceStub, evaluate: pb_grpc.FlagServiceStub) -> list[float]:
        metadata = self._bench.postgres.metadata
        rng = random.Random(7)
        found = []
        mask = field_mask_pb2.FieldMask(paths=["default_variant"])
        for change in range(self._bench.settings.flag_changes):
            variant = "off" if change % 2 == 0 else "on"
            time.sleep(rng.uniform(0.0, 0.2))
            update.UpdateFlag(
                pb.UpdateFlagRequest(flag=res.Flag(name=FLAG, default_variant=variant), update_mask=mask),
                metadata=metadata,
                timeout=10,
            )
            changed = time.perf_counter()
            while True:
                answer = evaluate.EvaluateFlag(
                    pb.EvaluateFlagRequest(name=FLAG), metadata=metadata, timeout=10
                )
                elapsed = time.perf_counter() - changed
                if answer.variant == variant or elapsed > GIVE_UP_SECONDS:
                    found.append(min(elapsed, GIVE_UP_SECONDS))
                    break
        return found

    def rows(self) -> Sequence[Row]:
        """Starts replica 2, times the changes and returns the figure's row."""
        mesh = self._bench.postgres
        replica, port = self._start_replica()
        try:
            with self._channel(port) as channel:
                _wait_serving(channel, replica)
                pin(replica.pid, OTHER_CORE)
                if mesh.pinner is not None:
                    mesh.pinner.watch([replica.pid])
                with (
                    self._channel(mesh.config.service_ports["flag"]) as first,
                    mesh.database_work_elsewhere(),
                    measured(replica.pid),
                ):
                    latencies = self._latencies(
                        pb_grpc.FlagServiceStub(first), pb_grpc.FlagServiceStub(channel)
                    )
        finally:
            replica.terminate()
            replica.wait(10)
        p50, p99 = percentile(latencies, 0.50) * 1e3, percentile(latencies, 0.99) * 1e3
        return [
            Row(
                f"flag change -> seen on replica 2, PG, {len(latencies)}×",
                p99,
                "ms",
                goal=Goal("p99 < 1 s", max_value=1000),
                shown=f"p50 {p50:.1f}, p99 {p99:.1f} ms",
            )
        ]


def _wait_serving(channel: grpc.Channel, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Waits until the replica's health check answers SERVING.

    Raises:
        RuntimeError: The replica exited or did not become healthy in ``timeout`` seconds.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"flag replica 2 exited with code {process.returncode}")
        try:
            if (
                stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("flag replica 2 did not become SERVING in time")
        time.sleep(0.1)
