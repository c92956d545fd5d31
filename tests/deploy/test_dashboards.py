"""The Grafana dashboard reads only metrics the services export, and is a well-formed dashboard."""

from __future__ import annotations

import json
import re

from deploy.cluster import Cluster
from deploy.dashboards import golden_signals
from deploy.render import DEPLOY
from services.kit.metrics import RpcMetrics

_METRIC = re.compile(r"\b([a-z_][a-z0-9_]*)\{")


class _Pool:
    """Stands in for a database's connection counts (the gauges read them when collected)."""

    def connection_counts(self) -> tuple[int, int, int]:
        return 1, 3, 0


def exported_samples() -> set[str]:
    metrics = RpcMetrics("agent")
    metrics.observe("/orchestrall.agent.v1.AgentService/GetAgent", "OK", 0.001)
    metrics.watch_database(_Pool())
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def test_every_query_reads_an_exported_metric() -> None:
    dashboard = json.loads((DEPLOY / "dashboards" / "golden-signals.json").read_text())
    assert dashboard == golden_signals(Cluster())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for query in queries for name in _METRIC.findall(query)}
    assert used, "no metric in any query"
    assert used <= exported_samples(), used - exported_samples()


def test_the_dashboard_is_well_formed() -> None:
    dashboard = golden_signals(Cluster())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "service"}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert "$service" in target["expr"]
