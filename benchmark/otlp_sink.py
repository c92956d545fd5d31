"""``python -m benchmark.otlp_sink PORT``: an OTLP/gRPC trace collector that accepts and drops spans.

The traced stack of ``make bench`` exports to it, so tracing costs what it
costs with a real collector on the other end: spans are made, batched,
serialized and sent; the sink answers every export with success.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    """Answers every export with success and keeps nothing."""

    def Export(  # noqa: N802  (the OTLP service's method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Returns success for ``request``."""
        return trace_service_pb2.ExportTraceServiceResponse()


def main(port: int) -> None:
    """Serves the sink on 127.0.0.1:``port`` until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]))
