"""The whole stack for mesh tests: one per database backend, shared by the modules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from gateway.envoy.settings import GatewaySettings
from services.cli.stack import Stack, StackConfig
from services.kit.db import connect_args, database_url
from tests.conftest import SCHEMA_PREFIX, Backend

#: The shared stacks' edge: every module signs up its tenants and asks for tokens from
#: 127.0.0.1, hundreds in a session, which the default per-address bucket (5/s) would make
#: wait; the bucket itself is tested on a stack of its own (test_edge).
SUITE_EDGE = GatewaySettings(anonymous_rate=200, anonymous_burst=400)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Stack]:
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp(f"mesh-{backend.name}"),
        database_url=backend.database_of("mesh"),
        schema_prefix=f"{SCHEMA_PREFIX}mesh_",
        gateway=SUITE_EDGE,
    )
    running = Stack(config, log=lambda _line: None)
    running.start()
    yield running
    running.stop()


@contextmanager
def own_stack(
    tmp_path_factory: pytest.TempPathFactory,
    shared: Stack,
    backend: Backend,
    name: str,
    environment: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda _line: None,
    **overrides: object,
) -> Iterator[Stack]:
    """Runs a stack of a module's own beside the shared one, whose model server it uses.

    Args:
        tmp_path_factory: Where its state folder is made.
        shared: The session's stack of the same backend.
        backend: The database backend; on PostgreSQL its database is ``{SCHEMA_PREFIX}{name}``
            (:meth:`tests.conftest.Backend.database_of`), its schemas ``{SCHEMA_PREFIX}{name}_*``.
        name: Its name, in its state folder and schemas.
        environment: Variables set while it runs (its processes read them when spawned,
            restarts included), restored afterwards.
        log: Where the supervisor's lines go.
        **overrides: Further :class:`StackConfig` fields.

    Yields:
        The started stack; it is stopped on exit.
    """
    variables = dict(environment or {})
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)  # first: the config reads some of them (the gateway's settings)
    try:
        config = StackConfig.ephemeral(
            tmp_path_factory.mktemp(f"{name}-{backend.name}"),
            database_url=backend.database_of(name),
            schema_prefix=f"{SCHEMA_PREFIX}{name}_",
            openai_base_url=f"http://127.0.0.1:{shared.config.model_port}/v1",
            **overrides,
        )
        running = Stack(config, log=log)
        try:
            running.start()
            yield running
        finally:
            running.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=120) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def run_to_end(
    http: httpx.Client, agent: str, body: dict[str, Any], headers: dict[str, str], **params: str
) -> Any:
    """Starts a run of ``agent`` over REST (it answers at once) and returns it once it stopped (``:wait``)."""
    started = http.post(f"/v1/{agent}/runs", json=body, headers=headers, params=params)
    assert started.status_code == 200, started.text
    ended = http.post(f"/v1/{started.json()['name']}:wait", json={}, headers=headers)
    assert ended.status_code == 200, ended.text
    return ended.json()


def stored_rows(stack: Stack, service: str, query: str, **params: str) -> list[tuple]:
    settings = stack.config.settings(service)
    engine = create_engine(
        database_url(settings, service, admin=True), connect_args=connect_args(settings, service)
    )
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def grpc_headers(response: httpx.Response) -> list[str]:
    """The ``grpc-*`` headers of a REST response (there must be none)."""
    return [h for h in response.headers if h.lower().startswith("grpc-")]
