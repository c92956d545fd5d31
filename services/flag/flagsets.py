"""Every tenant's flags, in memory on every replica, evaluated without touching the database.

Each replica loads every tenant's flags at start-up into one
:class:`~services.flag.evaluator.FlagSetEvaluator` per tenant and keeps them
current by **polling a change counter**: every flag write takes the next number
of a global change sequence and stamps it on the tenant's ``flag_sets`` row
(:mod:`services.flag.store`), in the same transaction. Every
``poll_interval_seconds`` a replica asks for the tenants stamped above the last
number it loaded and reloads just those. The sequence row is locked until a
change commits, so numbers are taken in commit order and no change below the
last loaded number can still appear.

Polling was chosen over PostgreSQL's LISTEN/NOTIFY because it works the same on
SQLite (two processes on one file), needs no dedicated connection, and costs one
indexed query per interval per replica; the interval bounds how stale another
replica can be (a change is visible everywhere within about one interval plus a
reload; the goal is under one second). The replica that made a change reloads
the tenant as soon as the change commits, so a client reads its own writes.

Watchers: a flagd event stream watches its tenant (:meth:`FlagSets.watch`) and is
told which flag keys an installed change wrote, updated or deleted, whichever
replica made it. The mesh's own sync stream watches every tenant
(:meth:`FlagSets.watch_all`) and is told the same, keys as ``<tenant>/<flag>``.

Invalidation: an entry is replaced whole when its tenant's revision moves, and
never by an older revision (a poll that read before a local change committed
cannot undo the reload that followed it); a tenant whose flags were all deleted
keeps an empty set. Nothing else expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping

from services.flag import store
from services.flag.evaluator import FlagSetEvaluator
from services.flag.models import FlagRow
from services.kit.db import Database, Tx

log = logging.getLogger(__name__)

_EMPTY = FlagSetEvaluator(())


def _snapshot(tx: Tx) -> tuple[int, list[FlagRow]]:
    """The last change number and every tenant's flags, in one transaction."""
    return store.latest_revision(tx), store.flags_of(tx, None)


def _tenant(tx: Tx) -> tuple[int, list[FlagRow]]:
    """The tenant's revision and flags, in one transaction."""
    return store.tenant_revision(tx), store.tenant_flags(tx)


def _changes(tx: Tx, seen: int) -> tuple[dict[str, int], list[FlagRow]]:
    """Tenants changed after ``seen`` (with their revisions) and their flags, in one transaction."""
    changed = store.changes_since(tx, seen)
    return changed, store.flags_of(tx, changed) if changed else []


def changed_keys(before: FlagSetEvaluator, after: FlagSetEvaluator) -> dict[str, str]:
    """Returns flag key -> ``write`` (new), ``update`` (changed) or ``delete`` between two sets of a tenant.

    The words are flagd's (the ``type`` of each flag in a ``configuration_change`` event).
    """
    old, new = before.definitions, after.definitions
    found = {key: "write" for key in new.keys() - old.keys()}
    found.update({key: "delete" for key in old.keys() - new.keys()})
    found.update({key: "update" for key in new.keys() & old.keys() if new[key] != old[key]})
    return found


class Changes:
    """The flag changes of one tenant that one watcher has not taken yet (coalesced per key)."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self._ready = asyncio.Event()

    def add(self, changed: Mapping[str, str]) -> None:
        """Notes changed keys (key -> ``write``, ``update`` or ``delete``) and wakes the watcher."""
        self._pending.update(changed)
        self._ready.set()

    async def next(self, timeout: float) -> dict[str, str]:
        """Waits up to ``timeout`` seconds for changes.

        Returns:
            Flag key -> kind of change, taken; empty when none came within ``timeout``.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        taken, self._pending = self._pending, {}
        self._ready.clear()
        return taken


def _by_tenant(flags: Iterable[FlagRow]) -> dict[str, list[FlagRow]]:
    grouped: dict[str, list[FlagRow]] = {}
    for flag in flags:
        grouped.setdefault(flag.tenant_id, []).append(flag)
    return grouped


class FlagSets:
    """The in-memory flag sets of one replica.

    Args:
        db: The flag database.
        poll_interval_seconds: How often other replicas' changes are looked for.
    """

    def __init__(self, db: Database, poll_interval_seconds: float = 0.2) -> None:
        self._db = db
        self._interval = poll_interval_seconds
        self._sets: dict[str, tuple[int, FlagSetEvaluator]] = {}
        self._seen = 0
        self._poller: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[Changes]] = {}
        self._all_watchers: set[Changes] = set()

    def of(self, tenant_id: str) -> FlagSetEvaluator:
        """Returns the tenant's flag set (empty when it has no flags)."""
        entry = self._sets.get(tenant_id)
        return _EMPTY if entry is None else entry[1]

    @contextlib.contextmanager
    def watch(self, tenant_id: str) -> Iterator[Changes]:
        """Follows the tenant's flag changes installed on this replica while the block runs.

        Yields:
            The watcher's :class:`Changes`.
        """
        changes = Changes()
        self._watchers.setdefault(tenant_id, set()).add(changes)
        try:
            yield changes
        finally:
            watchers = self._watchers[tenant_id]
            watchers.discard(changes)
            if not watchers:
                del self._watchers[tenant_id]

    def tenants(self) -> dict[str, FlagSetEvaluator]:
        """Returns every tenant's flag set, by tenant ID (tenants whose flags were all deleted included)."""
        return {tenant: entry[1] for tenant, entry in self._sets.items()}

    @contextlib.contextmanager
    def watch_all(self) -> Iterator[Changes]:
        """Follows every tenant's flag changes installed on this replica while the block runs.

        Yields:
            The watcher's :class:`Changes`, whose keys are ``<tenant>/<flag>``.
        """
        changes = Changes()
        self._all_watchers.add(changes)
        try:
            yield changes
        finally:
            self._all_watchers.discard(changes)

    async def start(self) -> None:
        """Loads every tenant's flags, then follows changes in the background."""
        seen, flags = await self._db.system(_snapshot)
        self._sets = {tenant: (seen, FlagSetEvaluator(rows)) for tenant, rows in _by_tenant(flags).items()}
        self._seen = seen
        self._poller = asyncio.create_task(self._poll_forever(), name="flag-set-poller")

    async def stop(self) -> None:
        """Stops following changes."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def reload(self, tenant_id: str) -> None:
        """Reloads one tenant's flags now (after this replica changed them)."""
        revision, flags = await self._db.read(tenant_id, _tenant)
        self._install(tenant_id, revision, flags)

    def _install(self, tenant_id: str, revision: int, flags: Iterable[FlagRow]) -> None:
        current = self._sets.get(tenant_id)
        if current is None or revision > current[0]:
            installed = FlagSetEvaluator(flags)
            self._sets[tenant_id] = (revision, installed)
            watchers = self._watchers.get(tenant_id, ())
            if watchers or self._all_watchers:
                changed = changed_keys(_EMPTY if current is None else current[1], installed)
                if changed:
                    for changes in watchers:
                        changes.add(changed)
                    everyone = {f"{tenant_id}/{key}": kind for key, kind in changed.items()}
                    for changes in self._all_watchers:
                        changes.add(everyone)

    async def poll_once(self) -> int:
        """Reloads the tenants changed since the last poll.

        Returns:
            How many tenants were reloaded.
        """
        changed, flags = await self._db.system(_changes, self._seen)
        if not changed:
            return 0
        grouped = _by_tenant(flags)
        for tenant, revision in changed.items():
            self._install(tenant, revision, grouped.get(tenant, ()))
        self._seen = max(self._seen, *changed.values())
        return len(changed)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be briefly away; try again next tick
                log.warning("flag set poll failed: %s", error)
