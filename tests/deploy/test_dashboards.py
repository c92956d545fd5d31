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
    models = metrics.model_calls()
    models.answered(
        request_model="smollm2",
        response_model="smollm2",
        server_address="127.0.0.1",
        seconds=0.4,
        input_tokens=30,
        output_tokens=5,
    )
    models.failed(
        request_model="smollm2", server_address="127.0.0.1", seconds=1.0, error_type="MODEL_UNAVAILABLE"
    )
    metrics.run_outcomes("agent").ended("SUCCEEDED")
    workflow = RpcMetrics("workflow")
    workflow.run_outcomes("workflow").ended("FAILED")
    return {
        sample.name
        for registry in (metrics.registry, workflow.registry)
        for family in registry.collect()
        for sample in family.samples
    }


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
    rows = [i for i, panel in enumerate(dashboard["panels"]) if panel["type"] == "row"]
    assert [dashboard["panels"][i].get("repeat") for i in rows] == ["service", None]
    for i, panel in enumerate(dashboard["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            # The repeated row's panels are per service; the models-and-runs row's are not.
            assert ("$service" in target["expr"]) == (i < rows[1])
