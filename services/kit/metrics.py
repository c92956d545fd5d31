"""Metrics: each service's Prometheus registry, served at ``/metrics``.

``rpc_server_call_duration_seconds``, a histogram by ``rpc_method`` and
``rpc_grpc_status_code`` (OpenTelemetry's ``rpc.server.call.duration``, in
seconds, as Prometheus names it); the database's connections
(``db_client_connection_*``); the process's CPU and memory (``process_*``).
Each service has a registry of its own (:class:`RpcMetrics`), served over HTTP
when it has a ``metrics_listen`` address.

Services add their domain's metrics to that registry: model calls
(:class:`ModelMetrics`, the OpenTelemetry GenAI client metrics
``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``) and the
outcomes of runs (:class:`RunOutcomes`, ``orchestrall_<kind>_runs_ended_total`` by
``state``). Names follow OpenTelemetry's Prometheus compatibility rules: dots become
underscores, the unit is a suffix (``_seconds``), a unit in braces (``{token}``) is
dropped, counters end in ``_total``.
"""

from __future__ import annotations

from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import prometheus_client

#: Histogram buckets of RPC durations, in seconds: 0.5 ms to 10 s.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets of ``gen_ai.client.token.usage``, the semantic conventions' advice (powers of 4).
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))
#: Buckets of ``gen_ai.client.operation.duration`` in seconds, the conventions' advice (10 ms doubling).
MODEL_DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))
#: Labels of both GenAI metrics (attribute names with ``_`` for ``.``).
_GEN_AI_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "server_address",
)


class ConnectionCounts(Protocol):
    """What :meth:`RpcMetrics.watch_database` reads: a database's connection counts."""

    def connection_counts(self) -> tuple[int, int, int]:
        """Returns the connections in use, the idle ones, and the units of work waiting."""
        ...


class RpcMetrics:
    """A service's RPC metrics, in a registry of its own.

    Args:
        service: The service's name, the ``rpc_service`` of every series.
    """

    def __init__(self, service: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._duration = prometheus_client.Histogram(
            "rpc_server_call_duration",
            "Duration of RPCs this server handled (rpc.server.call.duration).",
            ["rpc_service", "rpc_method", "rpc_grpc_status_code"],
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._service = service
        self._children: dict[tuple[str, str], Any] = {}
        # CPU, memory and file descriptors of the process (process_*), for saturation.
        prometheus_client.ProcessCollector(registry=self.registry)

    def watch_database(self, database: ConnectionCounts) -> None:
        """Exports the database's connections in use and idle, and the work waiting for one.

        ``db_client_connection_count`` by ``state`` (``used``, ``idle``) and
        ``db_client_connection_pending_requests``, OpenTelemetry's ``db.client.connection.*``
        names; read when Prometheus scrapes.
        """
        count = prometheus_client.Gauge(
            "db_client_connection_count",
            "Database connections by state (db.client.connection.count).",
            ["rpc_service", "state"],
            registry=self.registry,
        )
        count.labels(self._service, "used").set_function(lambda: database.connection_counts()[0])
        count.labels(self._service, "idle").set_function(lambda: database.connection_counts()[1])
        pending = prometheus_client.Gauge(
            "db_client_connection_pending_requests",
            "Units of work waiting for a connection (db.client.connection.pending_requests).",
            ["rpc_service"],
            registry=self.registry,
        )
        pending.labels(self._service).set_function(lambda: database.connection_counts()[2])

    def observe(self, method: str, code: str, seconds: float) -> None:
        """Records one RPC: its full method name, status code name (``OK``) and duration."""
        child = self._children.get((method, code))
        if child is None:
            child = self._children[(method, code)] = self._duration.labels(self._service, method, code)
        child.observe(seconds)

    def model_calls(self, provider: str = "openai") -> ModelMetrics:
        """Returns the GenAI client metrics of this service's model calls (in its registry)."""
        return ModelMetrics(self.registry, provider)

    def run_outcomes(self, kind: str) -> RunOutcomes:
        """Returns the counter of ended runs of ``kind`` (``agent``, ``workflow``) in this registry."""
        return RunOutcomes(self.registry, self._service, kind)

    def serve(self, listen: str) -> WSGIServer:
        """Serves ``/metrics`` on ``host:port`` in a thread; returns the server (``shutdown()`` stops it)."""
        host, _, port = listen.rpartition(":")
        server, _thread = prometheus_client.start_http_server(int(port), host, registry=self.registry)
        return server


class ModelMetrics:
    """Model calls as OpenTelemetry's GenAI client metrics (semantic conventions, gen-ai-metrics).

    ``gen_ai_client_operation_duration_seconds`` (``gen_ai.client.operation.duration``, s): a
    histogram of each call's duration, with ``error_type`` on failed calls (empty otherwise);
    ``gen_ai_client_token_usage`` (``gen_ai.client.token.usage``, ``{token}``): a histogram of
    the tokens of each answered call by ``gen_ai_token_type`` (``input``, ``output``). Both
    carry ``gen_ai_operation_name``, ``gen_ai_provider_name``, ``gen_ai_request_model``,
    ``gen_ai_response_model`` and ``server_address``.

    Args:
        registry: The service's registry.
        provider: ``gen_ai.provider.name`` of the endpoints (``openai``: the OpenAI API).
    """

    def __init__(self, registry: prometheus_client.CollectorRegistry, provider: str) -> None:
        self._provider = provider
        self._duration = prometheus_client.Histogram(
            "gen_ai_client_operation_duration",
            "Duration of model calls (gen_ai.client.operation.duration).",
            [*_GEN_AI_LABELS, "error_type"],
            unit="seconds",
            buckets=MODEL_DURATION_BUCKETS,
            registry=registry,
        )
        self._tokens = prometheus_client.Histogram(
            "gen_ai_client_token_usage",
            "Tokens of model calls by gen_ai.token.type (gen_ai.client.token.usage, {token}).",
            [*_GEN_AI_LABELS, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )

    def answered(
        self,
        *,
        request_model: str,
        response_model: str,
        server_address: str,
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        operation: str = "chat",
    ) -> None:
        """Records a call that answered: its duration and its input and output tokens."""
        labels = (operation, self._provider, request_model, response_model, server_address)
        self._duration.labels(*labels, "").observe(seconds)
        self._tokens.labels(*labels, "input").observe(input_tokens)
        self._tokens.labels(*labels, "output").observe(output_tokens)

    def failed(
        self,
        *,
        request_model: str,
        server_address: str,
        seconds: float,
        error_type: str,
        operation: str = "chat",
    ) -> None:
        """Records a call that failed (``error_type``: the error's reason) after ``seconds``."""
        self._duration.labels(
            operation, self._provider, request_model, "", server_address, error_type
        ).observe(seconds)


class RunOutcomes:
    """How runs ended: ``orchestrall_<kind>_runs_ended_total`` by ``state``.

    The state is the run's as the API names it, lower case (``succeeded``, ``failed``,
    ``cancelled``; agent runs also ``requires_action`` when a stretch of work stops for
    approvals). Counted once per ended stretch on the replica that wrote it; a run whose
    replica died is counted as failed by the replica that sweeps it.

    Args:
        registry: The service's registry.
        service: The service's name, the ``rpc_service`` label.
        kind: What runs (``agent``, ``workflow``).
    """

    def __init__(self, registry: prometheus_client.CollectorRegistry, service: str, kind: str) -> None:
        self._counter = prometheus_client.Counter(
            f"orchestrall_{kind}_runs_ended",
            f"{kind.capitalize()} runs that ended, by state.",
            ["rpc_service", "state"],
            registry=registry,
        )
        self._service = service

    def ended(self, state: str, runs: int = 1) -> None:
        """Counts ``runs`` runs that ended in ``state`` (a RunState value)."""
        self._counter.labels(self._service, state.lower()).inc(runs)
