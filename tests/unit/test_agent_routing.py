"""ORCHESTRALL_MODEL_ROUTES: validated at start-up; the retry policy's backoff."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.agent.routing import RetryPolicy
from services.agent.server import AgentSettings

LOCAL = {"base_url": "http://127.0.0.1:8000/v1", "model": "smollm2"}


def test_routes_are_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAST_KEY", "sk-test")
    routes = {
        "fast": {
            "endpoints": [
                {"base_url": "https://api.example.com/v1", "model": "gpt-small", "api_key_env": "FAST_KEY"},
                {**LOCAL, "name": "local", "timeout_seconds": 5},
            ],
            "retry": {"attempts": 3, "backoff_base_seconds": 0.1, "backoff_max_seconds": 1},
        }
    }
    monkeypatch.setenv("ORCHESTRALL_MODEL_ROUTES", json.dumps(routes))
    fast = AgentSettings().model_routes["fast"]
    assert [e.label for e in fast.endpoints] == ["gpt-small", "local"]
    assert fast.endpoints[0].key() == "sk-test" and fast.endpoints[1].timeout_seconds == 5
    assert fast.retry.attempts == 3
    monkeypatch.delenv("ORCHESTRALL_MODEL_ROUTES")
    assert AgentSettings().model_routes == {}


def _endpoint(**changes: object) -> str:
    return json.dumps({"fast": {"endpoints": [{**LOCAL, **changes}]}})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("{not json", SettingsError),
        (json.dumps({"fast": {"endpoints": []}}), ValidationError),
        (json.dumps({"Fast Lane": {"endpoints": [LOCAL]}}), ValidationError),
        (_endpoint(weight=2), ValidationError),
        (_endpoint(base_url="ftp://x"), ValidationError),
        (_endpoint(timeout_seconds=0), ValidationError),
        (_endpoint(api_key_env="NOT_SET_ANYWHERE"), ValidationError),
        (_endpoint(api_key="k", api_key_env="HOME"), ValidationError),
        (json.dumps({"fast": {"endpoints": [LOCAL], "retry": {"attempts": 0}}}), ValidationError),
    ],
)
def test_a_bad_routes_value_fails_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str, error: type[Exception]
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    monkeypatch.setenv("ORCHESTRALL_MODEL_ROUTES", value)
    with pytest.raises(error):
        AgentSettings()


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    policy = RetryPolicy(attempts=5, backoff_base_seconds=0.5, backoff_max_seconds=3)
    assert [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.backoff(4, lambda: 0.25) == 0.75
