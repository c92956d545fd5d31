"""Settings shared by every service, read from the environment at start-up.

Each service may extend :class:`MeshSettings` with its own fields. A bad value
fails start-up with a pydantic validation error naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: tuple[str, ...] = ("auth", "agent", "workflow", "flag", "billing")


class MeshSettings(BaseSettings):
    """Where a service listens, where its peers are, and how it proves who it is.

    Environment variables carry the ``ORCHESTRALL_`` prefix, for example
    ``ORCHESTRALL_LISTEN=127.0.0.1:50051``; ``DATABASE_URL`` and ``MIGRATION_DATABASE_URL``
    are read unprefixed too.
    """

    model_config = SettingsConfigDict(env_prefix="ORCHESTRALL_", extra="ignore")

    listen: str = Field("127.0.0.1:0", description="host:port the gRPC server binds; port 0 picks one.")
    state_dir: Path = Field(Path(".state"), description="Folder for SQLite files and the local CA.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ORCHESTRALL_DATABASE_URL", "DATABASE_URL"),
        description=(
            "SQLAlchemy URL the services connect with; PostgreSQL puts each service in its own schema. "
            "Unset means SQLite. Alone, a PostgreSQL URL is the admin URL and services connect as the "
            "orchestrall_app role instead (see services.kit.db.app_url)."
        ),
    )
    migration_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ORCHESTRALL_MIGRATION_DATABASE_URL", "MIGRATION_DATABASE_URL"),
        description=(
            "PostgreSQL URL of the schema owner that migrations run as; when set, database_url is used "
            "as given (it must name a role without BYPASSRLS). Unset means database_url."
        ),
    )
    schema_prefix: str = Field("", description="Prefix of each service's PostgreSQL schema (tests use one).")
    tls_dir: Path = Field(Path(".state/tls"), description="ca.pem, <service>.pem and <service>-key.pem.")
    mesh_tls: Literal["kit", "istio"] = Field(
        "kit",
        description=(
            "Who does the mesh's mTLS. kit: the service itself, with the certificates in tls_dir (the "
            "peer's SPIFFE ID from its certificate; the kit's clients retry UNAVAILABLE). istio: the Istio "
            "sidecar; the service listens and dials in plaintext, takes the caller's SPIFFE ID from the "
            "sidecar's x-forwarded-client-cert header (services.kit.sidecar) and leaves retries to the "
            "sidecar (the DestinationRule's), so they do not multiply."
        ),
    )
    trust_domain: str = Field("orchestrall.local", description="SPIFFE trust domain of mesh identities.")
    namespace: str = Field("orchestrall", description="Kubernetes namespace in SPIFFE IDs.")
    addresses: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object, service -> "host:port", e.g. {"auth": "127.0.0.1:50051"}.',
    )
    issuer: str = Field("https://auth.orchestrall.local", description="Expected `iss` of tokens (RFC 7519).")
    audience: str = Field("orchestrall", description="Expected `aud` of tokens.")
    shutdown_grace_seconds: float = Field(5.0, ge=0, description="In-flight RPCs get this long on SIGTERM.")
    audit_relay_interval_seconds: float = Field(1.0, gt=0, description="How often audit events are relayed.")
    call_timeout_seconds: float = Field(10.0, gt=0, description="Deadline of calls to peer services.")
    tenant_concurrency: int = Field(
        32, ge=1, description="Unary calls one tenant may have in progress on one service replica at once."
    )
    metrics_listen: str | None = Field(
        None,
        description='"host:port" where Prometheus scrapes /metrics, e.g. "0.0.0.0:9464"; unset: not served.',
    )
    page_token_key: SecretStr | None = Field(
        None,
        min_length=16,
        description=(
            "Key that signs page tokens (HMAC-SHA256), at least 16 characters, the same for every "
            "replica; unset means a random key, valid in this process only."
        ),
    )

    encryption_key: SecretStr | None = Field(
        None,
        min_length=64,
        max_length=64,
        description=(
            "AES-256-GCM key (64 hexadecimal characters) that encrypts secrets at rest, such as MCP "
            "servers' headers (services.kit.sealing); the same for every replica. Unset means a "
            "random key, valid in this process only."
        ),
    )

    @field_validator("encryption_key")
    @classmethod
    def _key_is_hex(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            bytes.fromhex(key.get_secret_value())  # ValueError names the bad character
        return key

    def address_of(self, service: str) -> str:
        """Returns the ``host:port`` of a peer service.

        Raises:
            KeyError: The service has no configured address.
        """
        try:
            return self.addresses[service]
        except KeyError:
            raise KeyError(f"no address for service {service!r}; set ORCHESTRALL_ADDRESSES") from None
