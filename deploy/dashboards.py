"""The Grafana dashboard of the golden signals, per service, from the metrics the kit exports.

Every query reads a metric :mod:`services.kit.metrics` defines (a test checks
the names against a live registry): traffic and errors from the RPC duration
histogram's counts by status code, latency as its p50 and p99, saturation as
the database connections in use and the units of work waiting for one. A
``service`` variable picks the services shown; one row per service repeats the
four panels. The datasource is a variable too, so the JSON imports into any
Grafana with a Prometheus datasource.
"""

from __future__ import annotations

from typing import Any

from deploy.cluster import Cluster

#: Grafana's dashboard JSON schema version the dashboard is written for.
SCHEMA_VERSION = 39
RPC_COUNT = "rpc_server_call_duration_seconds_count"
RPC_BUCKET = "rpc_server_call_duration_seconds_bucket"
DB_CONNECTIONS = "db_client_connection_count"
DB_PENDING = "db_client_connection_pending_requests"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_SERVICE = 'rpc_service="$service"'


def _panel(
    panel_id: int, title: str, x: int, y: int, unit: str, targets: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 8, "w": 6, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def golden_signals(cluster: Cluster) -> dict[str, Any]:
    """Returns the dashboard (Grafana dashboard JSON model) for ``cluster``'s namespace."""
    rate = f"sum by (rpc_method) (rate({RPC_COUNT}{{{_SERVICE}}}[$__rate_interval]))"
    errors = (
        f'sum by (rpc_grpc_status_code) (rate({RPC_COUNT}{{{_SERVICE}, rpc_grpc_status_code!="OK"}}'
        "[$__rate_interval]))"
    )

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (rate({RPC_BUCKET}{{{_SERVICE}}}[$__rate_interval])))"

    panels = [
        {
            "id": 1,
            "type": "row",
            "title": "$service",
            "repeat": "service",
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
            "panels": [],
        },
        _panel(2, "Traffic (RPCs/s by method)", 0, 1, "reqps", [(rate, "{{rpc_method}}")]),
        _panel(3, "Errors (RPCs/s by status)", 6, 1, "reqps", [(errors, "{{rpc_grpc_status_code}}")]),
        _panel(4, "Latency", 12, 1, "s", [(quantile(0.5), "p50"), (quantile(0.99), "p99")]),
        _panel(
            5,
            "Saturation (database)",
            18,
            1,
            "short",
            [
                (f"sum by (state) ({DB_CONNECTIONS}{{{_SERVICE}}})", "connections {{state}}"),
                (f"sum({DB_PENDING}{{{_SERVICE}}})", "waiting for a connection"),
            ],
        ),
    ]
    return {
        "title": f"Orchestrall golden signals ({cluster.namespace})",
        "uid": f"orchestrall-{cluster.namespace}",
        "tags": ["orchestrall"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "service",
                    "type": "query",
                    "datasource": _DATASOURCE,
                    "query": {"query": f"label_values({RPC_COUNT}, rpc_service)", "refId": "services"},
                    "definition": f"label_values({RPC_COUNT}, rpc_service)",
                    "multi": True,
                    "includeAll": True,
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }
