"""What flagd's event stream is told: changed keys per installed change, coalesced per watcher."""

from __future__ import annotations

import asyncio
import datetime as dt

from services.flag.evaluator import FlagSetEvaluator
from services.flag.flagsets import Changes, changed_keys
from services.flag.models import FlagRow

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def row(key: str, default: str = "on") -> FlagRow:
    return FlagRow("t", key, "ENABLED", {"on": True, "off": False}, default, None, "", NOW, NOW)


def test_changed_keys_name_writes_updates_and_deletes() -> None:
    before = FlagSetEvaluator([row("kept"), row("changed"), row("gone")])
    after = FlagSetEvaluator([row("kept"), row("changed", "off"), row("new")])
    assert changed_keys(before, after) == {"changed": "update", "gone": "delete", "new": "write"}
    assert changed_keys(after, after) == {}


async def test_changes_coalesce_until_taken_and_time_out_empty() -> None:
    changes = Changes()
    changes.add({"a": "write"})
    changes.add({"a": "update", "b": "delete"})
    assert await changes.next(5) == {"a": "update", "b": "delete"}
    assert await changes.next(0.01) == {}
    waiting = asyncio.ensure_future(changes.next(5))
    await asyncio.sleep(0)
    changes.add({"c": "write"})
    assert await waiting == {"c": "write"}
