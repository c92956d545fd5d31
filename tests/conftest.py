"""Shared fixtures: TLS material, database backends, the real model server, an in-process mesh.

PostgreSQL tests fail (not skip) when ``CI=true`` and the server is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc
import httpx
import psycopg
import pytest

from services.auth import store as auth_store
from services.auth import tokens
from services.auth.models import SigningKeyRow
from services.cli.inprocess import start_services
from services.cli.stack import StackConfig, free_port, model_server_argv
from services.kit import mtls
from services.kit.config import SERVICES, MeshSettings
from services.kit.db import Link, Tx, create_engine
from services.kit.server import RunningServer
from services.kit.timestamps import utcnow

TRUST_DOMAIN = "orchestrall.local"
POSTGRES_URL = os.environ.get(
    "ORCHESTRALL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA_PREFIX = "pytest_"
#: The operator's egress allow-list of the test stacks: the tests' own servers on 127.0.0.1
#: (tenants' HTTP tools, webhook receivers, SMTP). Everything else stays refused; tests of the
#: refusals of 127.0.0.1 itself start a replica without the allow-list.
TEST_EGRESS_ALLOWED = '["127.0.0.1/32"]'
os.environ.setdefault("ORCHESTRALL_EGRESS_ALLOWED_NETWORKS", TEST_EGRESS_ALLOWED)


#: The backends a test runs on unless it says otherwise with ``@pytest.mark.backends(...)``.
#: Service tests run on both: they are where each store's SQL is exercised. Tests through
#: the whole stack run on PostgreSQL, the cluster's store: what they add (Envoy, processes,
#: mTLS, the edge) does not depend on the store, and a second stack per module doubled the
#: suite's time. Those about the embedded default (``orchestrall up`` with nothing configured,
#: which is SQLite) name both.
DEFAULT_BACKENDS = {"service": ("sqlite", "postgres"), "mesh": ("postgres",)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drops each test's instances on a backend it does not run on: they are not generated, not skipped."""

    def runs(item: pytest.Item) -> bool:
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("backend")
        if backend is None:
            return True
        marker = item.get_closest_marker("backends")
        kind = "mesh" if item.get_closest_marker("mesh") else "service"
        wanted = marker.args if marker else DEFAULT_BACKENDS[kind]
        return backend in wanted

    dropped = [item for item in items if not runs(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if runs(item)]


def make_tls(tls_dir: Path) -> Path:
    """A CA with certificates for every service, the gateway, the CLI and a 'stranger' of another CA."""
    mtls.ensure_ca(tls_dir, TRUST_DOMAIN)
    for name in (*SERVICES, "gateway", "cli"):
        mtls.issue_workload_cert(tls_dir, name, TRUST_DOMAIN, "orchestrall")
    other = tls_dir / "other-ca"
    mtls.ensure_ca(other, "evil.example")
    mtls.issue_workload_cert(other, "stranger", "evil.example", "orchestrall")
    return tls_dir


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("tls"))


def _admin() -> psycopg.Connection:
    return psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True, connect_timeout=5)


def _drop_test_schemas() -> None:
    """Drops what earlier sessions left: test schemas and the databases of :meth:`Backend.database_of`."""
    with _admin() as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (SCHEMA_PREFIX + "%",),
        ).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        databases = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (SCHEMA_PREFIX + "%",)
        ).fetchall()
        for (database,) in databases:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def unreachable(what: str, error: Exception) -> NoReturn:
    """Fails the test under CI (where ``what`` must run), skips it on a developer machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI and unreachable: {error}")
    pytest.skip(f"{what} unreachable: {error}")


def postgres_or_skip() -> str:
    """The PostgreSQL URL with its test schemas dropped; fails under CI when unreachable."""
    try:
        _drop_test_schemas()
    except psycopg.OperationalError as error:
        unreachable("PostgreSQL", error)
    return POSTGRES_URL


REDIS_URL = os.environ.get("ORCHESTRALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_or_skip() -> str:
    """The Redis URL the tests count in; fails under CI when Redis is unreachable, else skips."""
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        unreachable("Redis", error)
    return REDIS_URL


@dataclass(frozen=True)
class Backend:
    """A database backend for a test session."""

    name: str
    database_url: str | None

    def database_of(self, stack: str) -> str | None:
        """The URL of a PostgreSQL database of the stack (or in-process mesh) ``stack``'s own; None on SQLite.

        The database, ``{SCHEMA_PREFIX}{stack}``, is made when missing. Each stack has one
        because DBOS creates its indexes with ``CREATE INDEX CONCURRENTLY``, which waits for
        the transactions of its database that hold a snapshot, and a running workflow
        service always holds one (DBOS's background jobs keep their advisory lock in a
        transaction, a second at a time): a stack migrating in the database of a running one
        waited 18 s for its workflow schema. Other databases' transactions do not count.
        """
        if self.database_url is None:
            return None
        name = f"{SCHEMA_PREFIX}{stack}"
        with _admin() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "postgres":
        return Backend("postgres", postgres_or_skip())
    return Backend("sqlite", None)


@pytest.fixture(scope="session")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama.cpp server with SmolLM2, OpenAI-compatible, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("model") / "model.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(model_server_argv(port), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "model server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Mesh:
    """The five services running in-process over mTLS."""

    config: StackConfig
    servers: dict[str, RunningServer]
    tls_dir: Path
    backend: Backend

    def channel(
        self, service: str, identity: str = "gateway", tls_dir: Path | None = None
    ) -> grpc.aio.Channel:
        """An mTLS channel to ``service`` presenting ``identity``'s certificate."""
        files = mtls.TlsFiles.of(tls_dir or self.tls_dir, identity)
        return grpc.aio.secure_channel(
            f"127.0.0.1:{self.servers[service].port}",
            mtls.channel_credentials(files),
            options=[("grpc.ssl_target_name_override", service)],
        )


async def start_mesh(config: StackConfig, tls_dir: Path, backend: Backend, model_url: str) -> Mesh:
    """Migrates and starts the five services in this event loop."""
    servers = await start_services(config, tls_dir, model_url, audit_relay_interval_seconds=0.2)
    return Mesh(config=config, servers=servers, tls_dir=tls_dir, backend=backend)


@pytest.fixture(scope="session")
async def mesh(
    tmp_path_factory: pytest.TempPathFactory, tls_dir: Path, backend: Backend, model_url: str
) -> AsyncIterator[Mesh]:
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp(f"state-{backend.name}"),
        database_url=backend.database_of("svc"),
        schema_prefix=f"{SCHEMA_PREFIX}svc_",
    )
    running = await start_mesh(config, tls_dir, backend, model_url)
    yield running
    for server in reversed(running.servers.values()):  # auth last: the others relay audit events to it
        await server.stop(0)


def current_signing_key(settings: MeshSettings) -> SigningKeyRow:
    """The auth service's signing key right now, read from its database as the admin (to forge tokens)."""
    engine = create_engine(settings, "auth", admin=True)
    try:
        with engine.connect() as connection:
            tx = Tx(Link(connection), engine.dialect.name)
            now = utcnow()
            key = tokens.signing_key(auth_store.unexpired_keys(tx, now), now)
    finally:
        engine.dispose()
    assert key is not None
    return key
