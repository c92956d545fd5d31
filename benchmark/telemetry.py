"""What tracing costs: GetAgent REST through Envoy on a traced stack against an untraced one.

The traced stack is the SQLite stack's twin with ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, at the default sampling (``GatewaySettings.trace_sampling``, 10 %): Envoy
starts a trace per request and samples one in ten; for those the agent service
records its server span and its transaction's span and exports them in batches
(OTLP/gRPC) to :mod:`benchmark.otlp_sink` on core 1. The untraced figure is the SQLite stack
measured the same way in the same rounds. Both stacks keep their metrics and
their JSON log line per RPC, which are always on.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmark.harness import Goal, Row, Throughput
from benchmark.mesh import AGENT, Bench
from benchmark.rpc import rest_sample


class TracingCost:
    """GetAgent REST via Envoy, traced ÷ untraced (the issue's goal: >= 0.9)."""

    def __init__(self, bench: Bench) -> None:
        path = f"/v1/{AGENT}"
        self.untraced = Throughput(
            "GetAgent REST, untraced", lambda: rest_sample(bench, bench.sqlite, path, token=True)
        )
        self.traced = Throughput(
            "GetAgent REST, traced", lambda: rest_sample(bench, bench.traced, path, token=True)
        )

    def throughputs(self) -> Sequence[Throughput]:
        """Returns the untraced figure, then the traced one."""
        return [self.untraced, self.traced]

    def rows(self) -> Sequence[Row]:
        """Returns the goal row."""
        traced, untraced = self.traced.median, self.untraced.median
        return [
            Row(
                "GetAgent REST via Envoy, traced (10 % sampled) ÷ untraced, SQLite",
                traced.rate,
                "/s",
                baseline=untraced.rate,
                goal=Goal(">= 0.90", min_ratio=0.9),
                sample=traced,
            )
        ]
