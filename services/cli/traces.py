"""``orchestrall up --traces FILE``: every span of the local stack in a file, as OTLP JSON lines.

The stack's processes export their spans with OTLP/gRPC as they would to a collector
(Envoy's OpenTelemetry tracer and the services' SDK exporter alike); the receiver here is
that collector: the OTLP trace service of ``opentelemetry-proto``, on a loopback port,
appending each export to the file as one line, an ``ExportTraceServiceRequest`` in OTLP's
JSON encoding (the OTLP file exporter's format, which ``otelcol``'s ``otlpjsonfile``
receiver and most viewers read).

The encoding is protobuf's JSON mapping with OTLP's two differences (OTLP specification,
"JSON Protobuf Encoding"): trace and span IDs in hexadecimal rather than base64, and enums
as integers.
"""

from __future__ import annotations

import base64
import json
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(record: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        if key in record:
            record[key] = base64.b64decode(record[key]).hex()


def otlp_json(request: trace_service_pb2.ExportTraceServiceRequest) -> str:
    """Returns ``request`` in OTLP's JSON encoding, on one line."""
    body = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource in body.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
    return json.dumps(body, separators=(",", ":"))


class _Appender(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by TraceFile.stop)
        self._lock = threading.Lock()

    def Export(  # noqa: N802  (the OTLP service's method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        line = otlp_json(request)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
        return trace_service_pb2.ExportTraceServiceResponse()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class TraceFile:
    """An OTLP/gRPC trace receiver on 127.0.0.1 that appends every export to ``path``.

    Args:
        path: The file; made if missing, appended to otherwise.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._appender = _Appender(path)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self._appender, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        """The ``OTEL_EXPORTER_OTLP_ENDPOINT`` that exports here."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts receiving."""
        self._server.start()

    def stop(self) -> None:
        """Stops receiving (exports in progress finish) and closes the file."""
        self._server.stop(grace=2).wait()
        self._appender.close()
