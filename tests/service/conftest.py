"""Fixtures shared by the service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.kit.db import Database, create_engine
from tests.conftest import Mesh


@pytest.fixture
async def agent_db(mesh: Mesh) -> AsyncIterator[Database]:
    """The agent service's database, connected as the services connect."""
    db = Database(create_engine(mesh.config.settings("agent"), "agent"))
    yield db
    await db.close()
