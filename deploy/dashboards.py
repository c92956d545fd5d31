"""The Grafana dashboard of the golden signals, per service, from the metrics the kit exports.

Every query reads a metric :mod:`services.kit.metrics` defines (a test checks
the names against a live registry): traffic and errors from the RPC duration
histogram's counts by status code, latency as its p50 and p99, saturation as
the database connections in use and the units of work waiting for one. A
``service`` variable picks the services shown; one row per service repeats the
four panels. A second row shows the domain: model tokens and call latency by model
(OpenTelemetry's GenAI client metrics), model call errors, and how agent and workflow runs
ended. The datasource is a variable too, so the JSON imports into any Grafana with a
Prometheus datasource.
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
MODEL_TOKENS = "gen_ai_client_token_usage_sum"
MODEL_DURATION_BUCKET = "gen_ai_client_operation_duration_seconds_bucket"
MODEL_DURATION_COUNT = "gen_ai_client_operation_duration_seconds_count"
AGENT_RUNS = "orchestrall_agent_runs_ended_total"
WORKFLOW_RUNS = "orchestrall_workflow_runs_ended_total"
_CHAT = 'gen_ai_operation_name="chat"'
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


def _domain_panels(first_id: int, y: int) -> list[dict[str, Any]]:
    """The row of model calls and run outcomes (not per service: the agent and workflow services')."""
    window = "[$__rate_interval]"

    def model_quantile(q: float) -> str:
        return (
            f"histogram_quantile({q}, sum by (le, gen_ai_request_model) "
            f"(rate({MODEL_DURATION_BUCKET}{{{_CHAT}}}{window})))"
        )

    i = first_id
    return [
        {
            "id": i,
            "type": "row",
            "title": "Models and runs",
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        },
        _panel(
            i + 1,
            "Model tokens/s by model",
            0,
            y + 1,
            "short",
            [
                (
                    "sum by (gen_ai_request_model, gen_ai_token_type) "
                    f"(rate({MODEL_TOKENS}{{{_CHAT}}}{window}))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
        ),
        _panel(
            i + 2,
            "Model call latency by model",
            6,
            y + 1,
            "s",
            [
                (model_quantile(0.5), "{{gen_ai_request_model}} p50"),
                (model_quantile(0.99), "{{gen_ai_request_model}} p99"),
            ],
        ),
        _panel(
            i + 3,
            "Model call errors/s",
            12,
            y + 1,
            "reqps",
            [
                (
                    f'sum by (error_type) (rate({MODEL_DURATION_COUNT}{{{_CHAT}, error_type!=""}}{window}))',
                    "{{error_type}}",
                )
            ],
        ),
        _panel(
            i + 4,
            "Runs ended/s by state",
            18,
            y + 1,
            "reqps",
            [
                (f'sum by (state) (rate({AGENT_RUNS}{{rpc_service="agent"}}{window}))', "agent {{state}}"),
                (
                    f'sum by (state) (rate({WORKFLOW_RUNS}{{rpc_service="workflow"}}{window}))',
                    "workflow {{state}}",
                ),
            ],
        ),
    ]


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
        *_domain_panels(first_id=6, y=9),
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
