"""The stacks the figures measure, and the baseline echo server, as real processes.

A :class:`MeshUnderTest` is :class:`services.cli.stack.Stack` (five services and
Envoy; no model server: its URL points at a closed port, and no measured RPC
calls a model; the gateway's per-tenant rate limit lifted) with everything the
figures need made once: a tenant signed up through REST with a bearer token, an
agent and a flag. Every process starts on
:data:`~benchmark.harness.OTHER_CORE`; a figure moves the process it measures
to :data:`~benchmark.harness.MEASURED_CORE` for the length of a run
(:func:`measured`).

On PostgreSQL the backend processes that serve the benchmark's connections are
moved to the other core too, by :class:`BackendPinner`, so the database's work
does not run beside the measured service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
from google.protobuf import struct_pb2

from benchmark import echo
from benchmark.harness import MEASURED_CORE, OTHER_CORE, local_ports_to, pin, pinned
from benchmark.loadgen import Plan
from gateway.envoy.settings import GatewaySettings
from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from orchestrall.flag.v1 import resources_pb2 as flag_res
from services.cli.stack import CLI_IDENTITY, Stack, StackConfig, free_port
from services.kit import mtls

TENANT = "bench"
AGENT = f"tenants/{TENANT}/agents/bench"
FLAG = f"tenants/{TENANT}/flags/bench"
POSTGRES_PORT = 5432
#: The gateway's per-tenant bucket while benchmarking: the filter still runs and counts
#: every request, but no figure here comes near a million requests per second.
UNLIMITED_RATE = 1_000_000
#: Calls one tenant may have in progress on a service while benchmarking: the bench's one
#: tenant keeps more in flight than the per-tenant bound (TENANT_BUSY) lets a real tenant.
UNLIMITED_TENANT_CONCURRENCY = 1_000_000


@contextmanager
def measured(pid: int) -> Iterator[None]:
    """Moves process ``pid`` to the measured core for the block, and back to the other core after."""
    pin(pid, MEASURED_CORE)
    try:
        yield
    finally:
        pin(pid, OTHER_CORE)


def plain_url(url: str) -> str:
    """Returns a SQLAlchemy PostgreSQL URL as libpq takes it (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def drop_schemas(database_url: str, prefix: str) -> None:
    """Drops every schema whose name starts with ``prefix`` (what a benchmark run created)."""
    with psycopg.connect(plain_url(database_url), autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (prefix.replace("_", r"\_") + "%",),
        ).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class BackendPinner:
    """Keeps the PostgreSQL backends serving some processes on the other core.

    PostgreSQL forks one backend per connection, and pools open connections
    while a figure runs, so a thread looks for new ones every ``interval``
    seconds while active (:meth:`active`): it maps each watched process's
    connections to the server port to their client ports, and those to backend
    PIDs through ``pg_stat_activity``. Needs permission to change those
    processes' affinity (root, or the ``postgres`` user).

    Args:
        database_url: An admin URL of the server.
        interval: Seconds between looks.
    """

    def __init__(self, database_url: str, interval: float = 0.2) -> None:
        self._conn = psycopg.connect(plain_url(database_url), autocommit=True)
        self._interval = interval
        self._watched: set[int] = set()
        self._pinned: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        (own,) = self._conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        pin(own, OTHER_CORE)

    def watch(self, pids: Iterable[int]) -> None:
        """Adds processes whose backends are to be kept on the other core, and pins those now."""
        with self._lock:
            self._watched.update(pids)
        self.scan()

    def scan(self) -> None:
        """Pins the backends of the watched processes that are not pinned yet."""
        with self._lock:
            ports = [port for pid in self._watched for port in local_ports_to(pid, POSTGRES_PORT)]
            if not ports:
                return
            rows = self._conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
            ).fetchall()
            for (backend,) in rows:
                if backend not in self._pinned:
                    try:
                        pin(backend, OTHER_CORE)
                    except OSError:
                        continue
                    self._pinned.add(backend)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Scans in a background thread for the block, so backends opened meanwhile move too."""
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self._interval):
                self.scan()

        thread = threading.Thread(target=loop, name="backend-pinner", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self.scan()

    def close(self) -> None:
        """Closes the pinner's connection."""
        self._conn.close()


class EchoServer:
    """The baseline: :mod:`benchmark.echo` in its own process, with a service's workload certificate.

    Args:
        tls_dir: The stack's TLS folder (CA and workload certificates).
        identity: Whose certificate the echo presents (the services' mTLS setup, another name).
    """

    def __init__(self, tls_dir: Path, identity: str = "agent") -> None:
        self.tls_dir = tls_dir
        self.identity = identity
        self.port = free_port()
        argv = [sys.executable, "-m", "services.cli.die_with_parent", str(os.getpid())]
        argv += [sys.executable, "-m", "benchmark.echo", str(tls_dir), identity, str(self.port)]
        self._process = subprocess.Popen(pinned(argv, OTHER_CORE))
        self.pid = self._process.pid
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        files = mtls.TlsFiles.of(self.tls_dir, CLI_IDENTITY)
        options = [("grpc.ssl_target_name_override", self.identity)]
        with grpc.secure_channel(
            f"127.0.0.1:{self.port}", mtls.channel_credentials(files), options=options
        ) as channel:
            call = channel.unary_unary(echo.METHOD)
            deadline = time.monotonic() + timeout
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"the echo server exited with code {self._process.returncode}")
                try:
                    if call(b"ping", timeout=1) == b"ping":
                        return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def plan(self, request: bytes, **options: Any) -> Plan:
        """A load generator plan that calls the echo over mTLS as the CLI identity."""
        return Plan(
            target=f"127.0.0.1:{self.port}",
            method=echo.METHOD,
            tls=tls_plan(self.tls_dir, CLI_IDENTITY, self.identity),
            request=request.hex(),
            watch_pids=[self.pid],
            **options,
        )

    def stop(self) -> None:
        """Stops the echo process."""
        self._process.terminate()
        self._process.wait(10)


def tls_plan(tls_dir: Path, identity: str, server: str) -> dict[str, str]:
    """The ``tls`` entry of a load generator plan: present ``identity``'s certificate to ``server``."""
    files = mtls.TlsFiles.of(tls_dir, identity)
    return {"ca": str(files.ca), "cert": str(files.cert), "key": str(files.key), "server_name": server}


class MeshUnderTest:
    """One stack of real processes with a signed-up tenant, an agent and a flag.

    Args:
        label: ``sqlite`` or ``postgres``, for messages.
        state_dir: The stack's state folder (SQLite files, TLS material, logs).
        database_url: PostgreSQL admin URL, or None for SQLite.
        schema_prefix: Prefix of the stack's PostgreSQL schemas.
    """

    def __init__(
        self, label: str, state_dir: Path, database_url: str | None = None, schema_prefix: str = ""
    ) -> None:
        self.label = label
        self.config = StackConfig.ephemeral(
            state_dir,
            database_url=database_url,
            schema_prefix=schema_prefix,
            openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
            gateway=GatewaySettings(tenant_rate=UNLIMITED_RATE, tenant_burst=UNLIMITED_RATE),
            # The free plan's rate would refuse the load; the figures are of the services.
            plan_rate_limit=False,
        )
        self.stack = Stack(self.config, log=lambda _line: None)
        self.token = ""
        self.pinner: BackendPinner | None = None

    def start(self) -> None:
        """Starts the stack, pins its processes to the other core and makes the tenant, agent and flag."""
        # The services read it from the environment StackConfig.environment hands them.
        os.environ["ORCHESTRALL_TENANT_CONCURRENCY"] = str(UNLIMITED_TENANT_CONCURRENCY)
        self.stack.start()
        for pid in self.stack.pids.values():
            pin(pid, OTHER_CORE)
        if self.config.database_url:
            self.pinner = BackendPinner(self.config.database_url)
            self.pinner.watch(self.stack.pids.values())
        self.token = self._sign_up()
        with self.channel("agent") as channel:
            agent_grpc.AgentServiceStub(channel).CreateAgent(
                agent_pb.CreateAgentRequest(
                    parent=f"tenants/{TENANT}",
                    agent_id=AGENT.rsplit("/", 1)[1],
                    agent=agent_res.Agent(display_name="Bench", instructions="Answer briefly."),
                ),
                metadata=self.metadata,
                timeout=10,
            )
        with self.channel("flag") as channel:
            flags = flag_grpc.FlagServiceStub(channel)
            flags.CreateFlag(
                flag_pb.CreateFlagRequest(
                    parent=f"tenants/{TENANT}",
                    flag_id=FLAG.rsplit("/", 1)[1],
                    flag=flag_res.Flag(
                        state=flag_res.Flag.STATE_ENABLED,
                        variants={
                            "on": struct_pb2.Value(bool_value=True),
                            "off": struct_pb2.Value(bool_value=False),
                        },
                        default_variant="on",
                    ),
                ),
                metadata=self.metadata,
                timeout=10,
            )
            # The figures check status codes only: make sure an evaluation is a real one.
            answer = flags.EvaluateFlag(
                flag_pb.EvaluateFlagRequest(name=FLAG), metadata=self.metadata, timeout=10
            )
            if answer.variant != "on" or answer.error_code:
                raise RuntimeError(f"the benchmark flag does not evaluate: {answer}")

    def _sign_up(self) -> str:
        url = self.config.gateway_url
        with httpx.Client(base_url=url, timeout=30) as http:
            created = http.post(f"/v1/tenants?tenantId={TENANT}", json={"displayName": "Bench"})
            created.raise_for_status()
            token = http.post(
                "/v1/oauth2/token",
                json={"grant_type": "client_credentials", "client_secret": created.json()["apiKeySecret"]},
            )
            token.raise_for_status()
            return str(token.json()["access_token"])

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """The tenant's bearer token as gRPC metadata."""
        return [("authorization", f"Bearer {self.token}")]

    @property
    def pids(self) -> dict[str, int]:
        """PID of each process of the stack (services and ``gateway``)."""
        return self.stack.pids

    def channel(self, service: str, identity: str = CLI_IDENTITY) -> grpc.Channel:
        """A sync mTLS channel to ``service`` presenting ``identity``'s certificate (for setup calls)."""
        files = mtls.TlsFiles.of(self.config.tls_dir, identity)
        return grpc.secure_channel(
            f"127.0.0.1:{self.config.service_ports[service]}",
            mtls.channel_credentials(files),
            options=[("grpc.ssl_target_name_override", service)],
        )

    def plan(
        self,
        service: str,
        method: str,
        request: bytes | None,
        *,
        identity: str = CLI_IDENTITY,
        token: bool = True,
        **options: Any,
    ) -> Plan:
        """A load generator plan calling ``service`` directly over mTLS as ``identity``.

        Args:
            service: The service called; its process's CPU use is watched.
            method: ``/package.Service/Method``.
            request: The serialised request (timed mode); None for the each-once mode, with
                ``requests_file`` in ``options``.
            identity: The client certificate presented.
            token: Send the tenant's bearer token.
            options: Further :class:`~benchmark.loadgen.Plan` fields.
        """
        return Plan(
            target=f"127.0.0.1:{self.config.service_ports[service]}",
            method=method,
            tls=tls_plan(self.config.tls_dir, identity, service),
            metadata=self.metadata if token else [],
            request=None if request is None else request.hex(),
            watch_pids=[self.pids[service]],
            **options,
        )

    @contextmanager
    def database_work_elsewhere(self) -> Iterator[None]:
        """On PostgreSQL, keeps the backends of this stack's connections on the other core for the block."""
        if self.pinner is None:
            yield
            return
        with self.pinner.active():
            yield

    def stop(self) -> None:
        """Stops the stack."""
        if self.pinner is not None:
            self.pinner.close()
        self.stack.stop()


@dataclass(frozen=True)
class Settings:
    """How long and how hard the figures run.

    Attributes:
        runs: Runs per throughput figure; the table shows the median run.
        seconds: Counted seconds of each run.
        warmup_seconds: Uncounted seconds before each run (connections, caches, JIT-less warm paths).
        concurrency: Calls in flight for the RPC figures.
        database_url: PostgreSQL admin URL of the PostgreSQL figures.
        schema_prefix: Prefix of the schemas this run creates (and drops).
        ingest_batch: Events per ``IngestUsageEvents`` call and per raw ``executemany``.
        ingest_concurrency: Batches in flight for ingestion, service and raw alike.
        flag_changes: Flag changes timed for the propagation figure.
        only: The figure groups measured, by module name; empty for all.
    """

    runs: int = 3
    seconds: float = 3.0
    warmup_seconds: float = 1.0
    concurrency: int = 64
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    schema_prefix: str = "bench_"
    ingest_batch: int = 500
    ingest_concurrency: int = 4
    flag_changes: int = 30
    only: tuple[str, ...] = ()


@dataclass
class Bench:
    """What every figure group is given: the settings and the running processes.

    Attributes:
        settings: Lengths and loads.
        work_dir: A scratch folder that lives as long as the run.
        echo: The baseline echo server.
        sqlite: The stack on SQLite.
        postgres: The stack on PostgreSQL.
        traced: The stack on SQLite with tracing on (:mod:`benchmark.telemetry`).
    """

    settings: Settings
    work_dir: Path
    echo: EchoServer
    sqlite: MeshUnderTest
    postgres: MeshUnderTest
    traced: MeshUnderTest
