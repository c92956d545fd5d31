"""Metrics: each service's Prometheus registry, served at ``/metrics``.

``rpc_server_call_duration_seconds``, a histogram by ``rpc_method`` and
``rpc_grpc_status_code`` (OpenTelemetry's ``rpc.server.call.duration``, in
seconds, as Prometheus names it); the database's connections
(``db_client_connection_*``); the process's CPU and memory (``process_*``).
Each service has a registry of its own (:class:`RpcMetrics`), served over HTTP
when it has a ``metrics_listen`` address.
"""

from __future__ import annotations

from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import prometheus_client

#: Histogram buckets of RPC durations, in seconds: 0.5 ms to 10 s.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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

    def serve(self, listen: str) -> WSGIServer:
        """Serves ``/metrics`` on ``host:port`` in a thread; returns the server (``shutdown()`` stops it)."""
        host, _, port = listen.rpartition(":")
        server, _thread = prometheus_client.start_http_server(int(port), host, registry=self.registry)
        return server
