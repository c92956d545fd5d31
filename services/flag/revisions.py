"""Flag revisions (AIP-162): every change to a flag, kept with who made it, when and what changed.

Each write of a flag appends one :class:`~services.flag.models.FlagRevisionRow` in
the same transaction (:func:`append`): the flag's flagd flag definition after the
change (:mod:`services.flag.definitions`), the JSON Patch (RFC 6902) from the
definition of the key's revision before, the caller's principal and the time.
Revision IDs are 8 random lowercase hexadecimal characters, as agents' are; a
key's revisions are numbered in order (``sequence``), which lists use, newest
first. Concurrent writes of one key are serialised by the flag row's lock (or,
for a key being created, by its primary key), so two revisions never claim one
number.
"""

from __future__ import annotations

import datetime as dt
import secrets

from services.flag import store
from services.flag.definitions import FlagFields, to_definition
from services.flag.models import FlagRevisionRow, RevisionAction
from services.kit import jsonpatch
from services.kit.auth import current_principal
from services.kit.db import Tx

#: Attempts at drawing a revision ID that the key does not use yet.
ID_ATTEMPTS = 5


def new_revision_id(tx: Tx, key: str) -> str:
    """Returns a revision ID that flag ``key`` has not used: 8 random lowercase hexadecimal characters.

    Raises:
        RuntimeError: No free ID in :data:`ID_ATTEMPTS` draws (about 5 in 4 billion per draw).
    """
    for _ in range(ID_ATTEMPTS):
        candidate = secrets.token_hex(4)
        if store.get_flag_revision(tx, key, candidate) is None:
            return candidate
    raise RuntimeError(f"no free revision ID for flag {key}")


def append(
    tx: Tx,
    key: str,
    revision_id: str,
    action: RevisionAction,
    fields: FlagFields | None,
    now: dt.datetime,
    *,
    rollback_revision_id: str = "",
    request_id: str | None = None,
) -> FlagRevisionRow:
    """Adds a revision of the tenant's flag ``key``, in the transaction that changed the flag.

    Args:
        tx: The write transaction that changed the flag.
        key: The flag key.
        revision_id: The new revision's ID (:func:`new_revision_id`), which the flag row carries.
        action: What changed the flag.
        fields: The flag's fields after the change; None when it was deleted.
        now: The revision's time (the flag's ``update_time``).
        rollback_revision_id: For a rollback, the ID of the revision restored.
        request_id: The idempotency key of the call, if it had one.

    Returns:
        The revision written.

    Raises:
        RuntimeError: The revision's ID or number is taken (a caller that did not hold the
            flag's lock); the transaction must roll back.
    """
    latest = store.latest_flag_revision(tx, key)
    before = latest.definition if latest is not None and latest.definition is not None else {}
    definition = None if fields is None else to_definition(fields)
    revision = FlagRevisionRow(
        tenant_id=tx.tenant_id,
        flag_key=key,
        id=revision_id,
        sequence=1 if latest is None else latest.sequence + 1,
        action=action.value,
        definition=definition,
        diff=[dict(operation) for operation in jsonpatch.diff(before, definition or {})],
        principal=current_principal().subject,
        rollback_revision_id=rollback_revision_id,
        request_id=request_id,
        create_time=now,
    )
    if not store.add_flag_revision(tx, revision):
        raise RuntimeError(f"revision {revision_id} or number {revision.sequence} of flag {key} is taken")
    return revision
