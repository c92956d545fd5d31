"""The gateway's settings from the environment and the configuration rendered from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.envoy.render import DEFAULT_DESCRIPTOR_SET, JWT_CACHE_SIZE, render
from gateway.envoy.settings import GatewaySettings, TokenBucket
from services.cli.stack import StackConfig


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in GatewaySettings.model_fields:
        monkeypatch.delenv(f"ORCHESTRALL_GATEWAY_{variable.upper()}", raising=False)


def test_defaults_are_todays_limits() -> None:
    settings = GatewaySettings()
    assert settings.tenant_rate_limit == TokenBucket(burst=400, refill=200)
    assert settings.anonymous_rate_limit == TokenBucket(burst=20, refill=5)
    assert settings.cors_origins == ["http://localhost:5173"]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_TENANT_RATE", "50")
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_TENANT_BURST", "80")
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_ANONYMOUS_RATE", "1")
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_ANONYMOUS_BURST", "4")
    monkeypatch.setenv(
        "ORCHESTRALL_GATEWAY_CORS_ORIGINS", "https://console.example.com, http://localhost:5173"
    )
    settings = GatewaySettings()
    assert settings.tenant_rate_limit == TokenBucket(burst=80, refill=50)
    assert settings.anonymous_rate_limit == TokenBucket(burst=4, refill=1)
    assert settings.cors_origins == ["https://console.example.com", "http://localhost:5173"]
    # `orchestrall up` reads them when its config is made.
    assert StackConfig().gateway == settings


def test_no_cors_origin_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_CORS_ORIGINS", "")
    assert GatewaySettings().cors_origins == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TENANT_RATE", "0"),
        ("TENANT_RATE", "fast"),
        ("TENANT_RATE", "401"),  # above the default burst: the bucket would cap it silently
        ("ANONYMOUS_BURST", "-1"),
        ("CORS_ORIGINS", "*"),
        ("CORS_ORIGINS", "http://localhost:5173/"),
        ("CORS_ORIGINS", "localhost:5173"),
        ("CORS_ORIGINS", "https://Console.example.com"),
        ("CORS_ORIGINS", "http://localhost:99999"),
        ("CORS_ORIGINS", "ftp://files.example.com"),
    ],
)
def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(f"ORCHESTRALL_GATEWAY_{variable}", value)
    with pytest.raises(ValidationError):
        GatewaySettings()
    with pytest.raises(ValidationError):
        StackConfig()


@pytest.mark.parametrize("origins", [["https://console.example.com"], []])
def test_rendered_config_is_valid_envoy(tmp_path: Path, origins: list[str]) -> None:
    yaml_text = render(
        listen_port=8080,
        admin_port=9901,
        upstreams={"auth": ("127.0.0.1", 50051), "agent": ("agent", 50052)},
        tls_dir=None,
        descriptor_set=DEFAULT_DESCRIPTOR_SET,
        issuer="http://127.0.0.1:8080",
        audience="orchestrall",
        trust_domain="orchestrall.local",
        namespace="orchestrall",
        tenant_rate_limit=TokenBucket.per_second(rate=7, burst=9),
        anonymous_rate_limit=TokenBucket.per_second(rate=2, burst=3),
        cors_origins=origins,
    )
    assert "max_tokens: 9" in yaml_text and "tokens_per_fill: 7" in yaml_text
    assert "max_tokens: 3" in yaml_text and "tokens_per_fill: 2" in yaml_text
    assert all(f'exact: "{origin}"' in yaml_text for origin in origins)
    assert "envoy.filters.http.lua" not in yaml_text
    assert f"jwt_cache_size: {JWT_CACHE_SIZE}" in yaml_text
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml_text)
    envoy = Path(sys.executable).parent / "envoy"
    checked = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
