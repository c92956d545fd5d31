"""The gateway's edge limits, read from the environment at start-up.

Variables carry the ``ORCHESTRALL_GATEWAY_`` prefix (the ``ORCHESTRALL_``
convention of :mod:`services.kit.config`), for example
``ORCHESTRALL_GATEWAY_TENANT_RATE=100``. A bad value fails start-up with a
pydantic validation error naming the variable. ``orchestrall up`` and
``python -m gateway.envoy.render`` read them and pass them to
:func:`gateway.envoy.render.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


@dataclass(frozen=True)
class TokenBucket:
    """A token bucket of Envoy's local rate limit filter (``envoy.type.v3.TokenBucket``).

    A request takes one token; with none left it is refused (HTTP 429). The
    bucket starts full and gains ``refill`` tokens every ``interval_seconds``,
    up to ``burst``. ``Retry-After`` is ``interval_seconds``: the longest wait
    for the next token.

    Attributes:
        burst: Bucket size (``max_tokens``), the most requests at once.
        refill: Tokens added per interval (``tokens_per_fill``).
        interval_seconds: Refill interval (``fill_interval``), whole seconds.

    """

    burst: int
    refill: int
    interval_seconds: int = 1

    def __post_init__(self) -> None:
        if self.burst < 1 or self.refill < 1 or self.interval_seconds < 1:
            raise ValueError(f"token bucket values must be positive, got {self}")

    @classmethod
    def per_second(cls, rate: int, burst: int) -> TokenBucket:
        """Returns a bucket of ``rate`` requests per second sustained, ``burst`` at once."""
        return cls(burst=burst, refill=rate, interval_seconds=1)


class GatewaySettings(BaseSettings):
    """Rate limits and CORS origins of the Envoy gateway.

    Buckets are per Envoy process: with N replicas a tenant may get N times the
    rate. The default tenant rate sits below what one replica of each service
    serves of its cheapest RPC (``make bench``: GetAgent about 1,900/s on
    PostgreSQL, on one core), so one tenant alone cannot saturate a service;
    the per-tenant in-flight bound of each service (``services.kit.server``)
    keeps the expensive RPCs fair.
    """

    model_config = SettingsConfigDict(env_prefix="ORCHESTRALL_GATEWAY_", extra="forbid")

    tenant_rate: int = Field(
        200, ge=1, description="Requests per second a tenant sustains, all its REST and gRPC calls together."
    )
    tenant_burst: int = Field(400, ge=1, description="Requests a tenant may make at once (bucket size).")
    anonymous_rate: int = Field(
        5, ge=1, description="Sign-up and token requests per second from one client address."
    )
    anonymous_burst: int = Field(
        20, ge=1, description="Sign-up and token requests one client address may make at once."
    )
    trace_sampling: float = Field(
        10.0,
        ge=0,
        le=100,
        description=(
            "Percent of requests the gateway traces when tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT); "
            "the services follow its decision. Envoy decides afresh even for a caller's sampled "
            "traceparent, so below 100 a caller's trace may be dropped."
        ),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:5173"],
        description=(
            "Browser origins allowed by CORS, comma-separated, each scheme://host[:port] "
            "(default the Vite dev server of the console)."
        ),
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        # Envoy compares each one exactly with the Origin header (RFC 6454: scheme, host, port;
        # no path, no trailing slash), so anything else would never match.
        for origin in origins:
            parts = urlsplit(origin)
            _ = parts.port  # raises ValueError on a port that is not a number in range
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}"
                or origin != origin.lower()
                or "@" in parts.netloc
            ):
                raise ValueError(
                    f"{origin!r} is not an origin like https://console.example.com[:port] (lower case)"
                )
        return origins

    @model_validator(mode="after")
    def _burst_covers_rate(self) -> GatewaySettings:
        # A bucket never holds more than its burst, so a larger rate would silently be the burst.
        for kind in ("tenant", "anonymous"):
            rate, burst = getattr(self, f"{kind}_rate"), getattr(self, f"{kind}_burst")
            if burst < rate:
                raise ValueError(f"{kind}_burst ({burst}) must be at least {kind}_rate ({rate})")
        return self

    @property
    def tenant_rate_limit(self) -> TokenBucket:
        """Returns the bucket per tenant."""
        return TokenBucket.per_second(self.tenant_rate, self.tenant_burst)

    @property
    def anonymous_rate_limit(self) -> TokenBucket:
        """Returns the bucket per client address on the anonymous credential RPCs."""
        return TokenBucket.per_second(self.anonymous_rate, self.anonymous_burst)
