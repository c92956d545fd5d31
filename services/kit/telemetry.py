"""What a service tells about itself: traces (OpenTelemetry), metrics (Prometheus) and JSON logs.

**Traces** are on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, the OpenTelemetry SDK's own
variable: :func:`configure_tracing` installs a tracer provider that exports
spans with OTLP/gRPC in batches; every handler runs in a SERVER span that
continues the caller's W3C ``traceparent`` (:func:`traced`; Envoy starts one
for a REST request), and every peer channel gets opentelemetry-instrumentation-
grpc's client interceptors, which pass it on. Unset, nothing is installed at
all: tracing costs nothing.

**Metrics** are per service, in a registry of their own (:class:`RpcMetrics`):
``rpc_server_call_duration_seconds``, a histogram by ``rpc_method`` and
``rpc_grpc_status_code`` (OpenTelemetry's ``rpc.server.call.duration``, in
seconds, as Prometheus names it), served over HTTP at ``/metrics`` when the
service has a ``metrics_listen`` address.

**Logs** are JSON lines (:class:`JsonFormatter`): one per RPC from the kit's
guard (logger ``orchestrall.rpc``, with method, status, duration, tenant and
the trace and span ids), and every other log record in the same shape.
Requests, tokens and secrets are never logged; tenant-written text only cut
to :data:`MAX_LOGGED_TEXT`.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import io
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

#: Log fields are cut to this many characters (a 10 KB tenant string is not logged whole).
MAX_LOGGED_TEXT = 200
#: Histogram buckets of RPC durations, in seconds: 0.5 ms to 10 s.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_configured: list[str] = []
_log_stream: io.TextIOBase | None = None


def recording() -> bool:
    """Whether the current span records (a child span is worth making)."""
    return trace.get_current_span().is_recording()


def tracing_enabled() -> bool:
    """Whether spans are exported: an OTLP endpoint is configured in the environment."""
    return any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)


def configure_tracing(service: str) -> None:
    """Installs the process's tracer provider, exporting to the OTLP endpoint; once per process.

    Args:
        service: The service's name; the resource's ``service.name`` is ``orchestrall-<service>``,
            its ``service.version`` the installed package's version.
    """
    if _configured or not tracing_enabled():
        return
    try:
        version = importlib.metadata.version("orchestrall")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": f"orchestrall-{service}",
            "service.namespace": "orchestrall",
            "service.version": version,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured.append(service)


def flush_traces() -> None:
    """Exports the spans still buffered (at shutdown)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush()


_SERVER_TRACER = trace.get_tracer("orchestrall.kit.server")
#: gRPC status codes that make a server span an error (semantic conventions for RPC, gRPC).
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def traced(method: str, handler: Handler) -> Handler:
    """Returns ``handler`` inside a SERVER span of the caller's trace when tracing is on; else itself.

    The span is named after the full method (``/orchestrall.agent.v1.AgentService/GetAgent``)
    with ``rpc.system``, ``rpc.service`` and ``rpc.method``, as opentelemetry-instrumentation-grpc
    names them, and continues the ``traceparent`` of the call's metadata. It is made here, in
    the kit's guard, which wraps each method once at start-up, rather than by the library's
    aio server interceptor, which re-wraps the handler on every call: with it one traced call
    cost the event loop about 350 µs more than untraced, in ``make bench``'s setting.
    """
    if not tracing_enabled():
        return handler
    service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        caller = trace.get_current_span(parent).get_span_context()
        if caller.is_valid and not caller.trace_flags.sampled:
            # The caller decided not to record this trace: pass its context on, make no span.
            token = otel_context.attach(parent)
            try:
                return await handler(request, context)
            finally:
                otel_context.detach(token)
        with _SERVER_TRACER.start_as_current_span(
            method, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        ):
            return await handler(request, context)

    return handle


def end_server_span(code: str, tenant: str | None) -> None:
    """Sets the current server span's status code (and error status) and ``tenant.id``, if it records."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(
        "rpc.grpc.status_code", grpc.StatusCode[code].value[0] if code in grpc.StatusCode.__members__ else 2
    )
    if tenant:
        span.set_attribute("tenant.id", tenant)
    if code in _SERVER_ERRORS:
        span.set_status(trace.Status(trace.StatusCode.ERROR))


def client_interceptors() -> Sequence[grpc.aio.ClientInterceptor]:
    """A peer channel's tracing interceptors when tracing is on; else none."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


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


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time (UTC), level, logger, message, fields, trace ids.

    Structured fields come from ``extra={"fields": {...}}``; string values are cut to
    :data:`MAX_LOGGED_TEXT`.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as one line of JSON."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _cut(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update({k: _cut(v) if isinstance(v, str) else v for k, v in fields.items()})
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_TEXT else text[:MAX_LOGGED_TEXT] + "…"


class RpcLog:
    """The one JSON line per RPC, written without the logging module's per-record machinery.

    The line has the shape of :class:`JsonFormatter`'s (``time``, ``level``, ``logger``
    ``orchestrall.rpc``, ``message``, then ``rpc.method``, ``rpc.grpc.status_code``,
    ``duration_ms``, ``tenant.id``, ``principal``, ``trace_id``, ``span_id``), built from
    pieces encoded once per method and second, and buffered like every log line
    (:func:`configure_logging`). Through ``logging`` a line cost the event loop about
    100 µs per call (``make bench``); this way it costs a few.

    Args:
        stream: Where lines go; None means the log stream :func:`configure_logging` set up
            (nothing is written before it is).
    """

    def __init__(self, stream: io.TextIOBase | None = None) -> None:
        self._stream = stream
        self._methods: dict[tuple[str, str], str] = {}
        self._second = -1
        self._stamp = ""

    def write(
        self, method: str, code: str, seconds: float, tenant: str | None, principal: str | None
    ) -> None:
        """Writes the line of one finished RPC."""
        stream = self._stream or _log_stream
        if stream is None:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        head = self._methods.get((method, code))
        if head is None:
            message = json.dumps(f"{method} {code}")
            head = self._methods[(method, code)] = (
                f'"level": "INFO", "logger": "orchestrall.rpc", "message": {message}, '
                f'"rpc.method": {json.dumps(method)}, "rpc.grpc.status_code": "{code}"'
            )
        context = trace.get_current_span().get_span_context()
        ids = (
            f', "trace_id": "{context.trace_id:032x}", "span_id": "{context.span_id:016x}"'
            if context.is_valid
            else ""
        )
        stream.write(
            f'{{"time": "{self._stamp}.{int(now % 1 * 1000):03d}Z", {head}, '
            f'"duration_ms": {seconds * 1000:.3f}, "tenant.id": {json.dumps(tenant)}, '
            f'"principal": {json.dumps(principal)}{ids}}}\n'
        )


#: How often buffered log lines are written out, in seconds.
LOG_FLUSH_SECONDS = 0.2


class _BufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes into a 64 KiB buffer that a timer thread flushes (and any error record at once)."""

    def flush(self) -> None:
        """Flushes only for records of level ERROR and above (see :meth:`emit`)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Formats and buffers ``record``; writes through at once when it is an error."""
        super().emit(record)
        if record.levelno >= logging.ERROR:
            self.force_flush()

    def force_flush(self) -> None:
        """Writes out the buffer."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.flush()


def configure_logging(level: int = logging.INFO) -> None:
    """Makes every log record of the process a JSON line on standard error.

    Lines are buffered and written every :data:`LOG_FLUSH_SECONDS` (errors at once): a
    write is a system call that gives up the GIL, and one per RPC on the event loop's
    thread, with gRPC's poller thread taking the GIL meanwhile, cost about 100 µs of the
    loop's time per call (``make bench``); a thread of its own per record cost as much.
    """
    global _log_stream
    stream = io.TextIOWrapper(open(os.dup(2), "wb", buffering=64 * 1024), encoding="utf-8")  # noqa: SIM115
    _log_stream = stream
    handler = _BufferedHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

    def flush_forever() -> None:
        while True:
            time.sleep(LOG_FLUSH_SECONDS)
            handler.force_flush()

    threading.Thread(target=flush_forever, name="log-flush", daemon=True).start()
    atexit.register(handler.force_flush)
