"""Knowledge bases: ingestion throughput (chunks/s) and search latency at 10,000 chunks.

One process pinned to the measured core runs the five services (no model server) and
the client, on SQLite and on PostgreSQL. It uploads :data:`DOCUMENTS` text documents of
:data:`PARAGRAPHS` paragraphs each (about 700 characters, so one chunk each: 10,000
chunks), all at once, and waits until every one is READY. Ingestion throughput is the
chunks over the time from the first document's ``create_time`` to the last one's
``update_time`` (the service's own clock): parsing, chunking, embedding with the
packaged static model, and writing the chunks. Then :data:`SEARCHES` searches of
different queries over gRPC (``SearchKnowledgeBase``, top 5), one after the other, the
first of them not counted (it loads the matrix into the cache; that load is shown apart).

Usage (what :class:`KnowledgeFigures` runs): ``python -m benchmark.knowledge STATE_DIR
[DATABASE_URL]`` prints one JSON line ``{"chunks_per_second", "search_p50_ms",
"search_p99_ms", "cold_search_ms", "chunks"}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmark.harness import MEASURED_CORE, Goal, Row, Throughput, percentile, pinned
from benchmark.inprocess import channel, tenant_metadata, workload_certificates
from benchmark.mesh import Bench, drop_schemas

DOCUMENTS = 20
PARAGRAPHS = 500
SEARCHES = 301
SCHEMA_PREFIX = "bench_kb_"
WORDS = (
    "order invoice refund shipment warehouse pallet carrier customs label battery route truck driver "
    "delivery schedule contract payment discount price margin supplier inventory stock forecast demand "
    "quality defect sensor machine maintenance failure repair patient record dose report audit policy "
    "security password account access network server latency error release version review budget"
).split()


def _paragraph(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < 700:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


async def _measure(state: Path, database_url: str | None) -> dict[str, float]:
    from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
    from orchestrall.agent.v1 import knowledge_pb2 as kpb
    from services.cli.inprocess import start_services
    from services.cli.stack import StackConfig

    tls_dir = state / "tls"
    workload_certificates(tls_dir)
    config = StackConfig.ephemeral(
        state / "stack", database_url=database_url, schema_prefix=SCHEMA_PREFIX if database_url else ""
    )
    servers = await start_services(
        config, tls_dir, "http://127.0.0.1:9/v1", audit_relay_interval_seconds=3600
    )
    rng = random.Random(7)
    try:
        metadata = await tenant_metadata(servers, tls_dir, "knowledge")
        async with channel(servers, tls_dir, "agent") as agent_channel:
            stub = pb_grpc.AgentServiceStub(agent_channel)
            kb = await stub.CreateKnowledgeBase(
                kpb.CreateKnowledgeBaseRequest(
                    parent="tenants/knowledge", knowledge_base_id="bench", knowledge_base=kpb.KnowledgeBase()
                ),
                metadata=metadata,
            )
            bodies = [
                "\n\n".join(_paragraph(rng) for _ in range(PARAGRAPHS)).encode() for _ in range(DOCUMENTS)
            ]
            created = [
                await stub.CreateDocument(
                    kpb.CreateDocumentRequest(
                        parent=kb.name,
                        document_id=f"doc-{i}",
                        document=kpb.Document(mime_type="text/plain", content=body),
                    ),
                    metadata=metadata,
                )
                for i, body in enumerate(bodies)
            ]
            done = []
            for document in created:
                while True:
                    got = await stub.GetDocument(
                        kpb.GetDocumentRequest(name=document.name), metadata=metadata
                    )
                    if got.state == kpb.Document.STATE_READY:
                        done.append(got)
                        break
                    assert got.state != kpb.Document.STATE_FAILED, got.error
                    await asyncio.sleep(0.1)  # the figure is the service's own timestamps
            first = min(d.create_time.ToDatetime().timestamp() for d in done)
            last = max(d.update_time.ToDatetime().timestamp() for d in done)
            chunks = sum(d.chunks_total for d in done)
            latencies = []
            for _ in range(SEARCHES):
                query = " ".join(rng.choice(WORDS) for _ in range(4))
                started = time.perf_counter()
                await stub.SearchKnowledgeBase(
                    kpb.SearchKnowledgeBaseRequest(name=kb.name, query=query, max_results=5),
                    metadata=metadata,
                )
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        for server in reversed(servers.values()):
            await server.stop(0)
    warm = latencies[1:]
    return {
        "chunks": chunks,
        "chunks_per_second": chunks / (last - first),
        "search_p50_ms": percentile(warm, 0.5),
        "search_p99_ms": percentile(warm, 0.99),
        "cold_search_ms": latencies[0],
    }


def _run(database_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-kb-") as tmp:
        argv = [sys.executable, "-m", "benchmark.knowledge", tmp, *([database_url] if database_url else [])]
        if database_url:
            drop_schemas(database_url, SCHEMA_PREFIX)
        try:
            done = subprocess.run(pinned(argv, MEASURED_CORE), capture_output=True, text=True, check=False)
        finally:
            if database_url:
                drop_schemas(database_url, SCHEMA_PREFIX)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark.knowledge failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


class KnowledgeFigures:
    """Ingestion chunks/s and search p50/p99 at 10,000 chunks, on SQLite and PostgreSQL.

    Args:
        bench: The benchmark's settings (its PostgreSQL URL); its stacks are not used.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: these figures are made in :meth:`rows`."""
        return []

    def rows(self) -> Sequence[Row]:
        """Measures each database in a fresh process."""
        rows = []
        for label, url in (("SQLite", None), ("PostgreSQL", self._bench.settings.database_url)):
            figures = _run(url)
            chunks = int(figures["chunks"])
            rows.append(
                Row(
                    f"knowledge ingestion, {chunks} chunks (parse, chunk, embed, store), {label}",
                    figures["chunks_per_second"],
                    "chunks/s",
                    goal=Goal(">= 1000", min_value=1000),
                )
            )
            rows.append(
                Row(
                    f"knowledge search at {chunks} chunks, top 5 over gRPC (first, cache load:"
                    f" {figures['cold_search_ms']:.0f} ms), {label}",
                    figures["search_p99_ms"],
                    "ms",
                    goal=Goal("p99 < 20 ms", max_value=20),
                    shown=f"p50 {figures['search_p50_ms']:.2f} / p99 {figures['search_p99_ms']:.2f} ms",
                )
            )
        return rows


def main() -> None:
    """``python -m benchmark.knowledge STATE_DIR [DATABASE_URL]``: prints the figures as JSON."""
    state = Path(sys.argv[1])
    database_url = sys.argv[2] if len(sys.argv) > 2 else None
    print(json.dumps(asyncio.run(_measure(state, database_url))))


if __name__ == "__main__":
    main()
