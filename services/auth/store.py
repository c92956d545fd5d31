"""SQL of the auth service, through the kit's repository.

Every tenant-owned query filters by the transaction's tenant. Two lookups run
before a tenant is known and so in system transactions: an API key by its ID
(the token endpoint has only the secret) and the signing keys (no tenant's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import insert, or_, select, update

from services.auth.models import (
    ApiKey,
    ApiKeyRow,
    AuditEvent,
    AuditEventRow,
    ServiceAccount,
    ServiceAccountRow,
    SigningKey,
    SigningKeyRow,
    Tenant,
    TenantRow,
    User,
    UserRow,
)
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Order, Repository

TENANTS = Repository(Tenant, TenantRow, tenant_column="id")
API_KEYS = Repository(ApiKey, ApiKeyRow, order=NEWEST_FIRST)
USERS = Repository(User, UserRow, order=NEWEST_FIRST)
SERVICE_ACCOUNTS = Repository(ServiceAccount, ServiceAccountRow, order=NEWEST_FIRST)
AUDIT_EVENTS = Repository(AuditEvent, AuditEventRow, order=(Order("time", descending=True),))
SIGNING_KEYS = Repository(SigningKey, SigningKeyRow, tenant_column=None)
_KEYS = API_KEYS.table
_SIGNING = SIGNING_KEYS.table
_EVENTS = AUDIT_EVENTS.table


def get_tenant(tx: Tx) -> TenantRow | None:
    """Returns the transaction's tenant, or None when it does not exist."""
    return TENANTS.get(tx)


def create_tenant(tx: Tx, tenant: TenantRow, owner_key: ApiKeyRow) -> bool:
    """Inserts a tenant and its first API key; returns False when the ID is taken (nothing written then)."""
    if not TENANTS.insert(tx, tenant):
        return False
    API_KEYS.insert(tx, owner_key)
    return True


def create_api_key(tx: Tx, key: ApiKeyRow) -> ApiKeyRow:
    """Inserts an API key, or returns the one an earlier request with its ``request_id`` made."""
    created = API_KEYS.create(tx, key)
    assert created is not None, "key IDs are UUIDs"
    return created


def api_key_by_id(tx: Tx, key_id: str) -> ApiKeyRow | None:
    """Looks a key up by ID across tenants (system work: the token endpoint knows no tenant yet)."""
    row = tx.execute(select(*_KEYS.c).where(_KEYS.c.id == key_id)).first()
    return None if row is None else API_KEYS.record(*row)


def get_api_key(tx: Tx, key_id: str) -> ApiKeyRow | None:
    """Returns the tenant's API key, or None."""
    return API_KEYS.get(tx, key_id)


def list_api_keys(tx: Tx, page: Page) -> Listing[ApiKeyRow]:
    """Returns a page of the tenant's keys, newest first, and whether more follow."""
    return API_KEYS.list_page(tx, page)


def delete_api_key(tx: Tx, key_id: str) -> bool:
    """Deletes a key of the tenant; returns False when there was none."""
    return API_KEYS.delete(tx, key_id)


def touch_api_key(tx: Tx, key_id: str, now: dt.datetime) -> None:
    """Records that a key obtained a token."""
    tx.execute(
        update(_KEYS).where(_KEYS.c.tenant_id == tx.tenant_id, _KEYS.c.id == key_id).values(last_use_time=now)
    )


def add_user(tx: Tx, user: UserRow) -> bool:
    """Inserts a user; returns False when the ID or email is taken in the tenant."""
    return USERS.insert(tx, user)


def user_by_email(tx: Tx, email: str) -> UserRow | None:
    """Returns the tenant's user with that (lower-cased) email, or None."""
    return USERS.find(tx, USERS.table.c.email == email)


def list_users(tx: Tx, page: Page) -> Listing[UserRow]:
    """Returns a page of the tenant's users, newest first, and whether more follow."""
    return USERS.list_page(tx, page)


def get_user(tx: Tx, user_id: str) -> UserRow | None:
    """Returns the tenant's user, or None."""
    return USERS.get(tx, user_id)


def delete_user(tx: Tx, user_id: str) -> bool:
    """Deletes a user of the tenant; returns False when there was none."""
    return USERS.delete(tx, user_id)


def add_service_account(tx: Tx, account: ServiceAccountRow) -> bool:
    """Inserts a service account; returns False when the ID is taken in the tenant."""
    return SERVICE_ACCOUNTS.insert(tx, account)


def get_service_account(tx: Tx, account_id: str) -> ServiceAccountRow | None:
    """Returns the tenant's service account, or None."""
    return SERVICE_ACCOUNTS.get(tx, account_id)


def list_service_accounts(tx: Tx, page: Page) -> Listing[ServiceAccountRow]:
    """Returns a page of the tenant's service accounts, newest first, and whether more follow."""
    return SERVICE_ACCOUNTS.list_page(tx, page)


def delete_service_account(tx: Tx, account_id: str) -> bool:
    """Deletes a service account of the tenant; returns False when there was none."""
    return SERVICE_ACCOUNTS.delete(tx, account_id)


def add_audit_events(tx: Tx, rows: Sequence[Mapping[str, object]]) -> int:
    """Records audit events of the transaction's tenant, skipping IDs recorded before (at-least-once relays).

    Returns:
        How many were new.
    """
    return AUDIT_EVENTS.insert_many(tx, rows)


def list_audit_events(
    tx: Tx,
    page: Page,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    subject: str,
    resource: str,
) -> Listing[AuditEventRow]:
    """Returns a page of the tenant's audit events matching the filters, newest first, and the next token."""
    where = []
    if start is not None:
        where.append(_EVENTS.c.time >= start)
    if end is not None:
        where.append(_EVENTS.c.time < end)
    if subject:
        where.append(_EVENTS.c.subject == subject)
    if resource:
        where.append(or_(_EVENTS.c.resource == resource, _EVENTS.c.resource.startswith(resource + "/")))
    return AUDIT_EVENTS.list_page(tx, page, *where)


def unexpired_keys(tx: Tx, now: dt.datetime, *, lock: bool = False) -> list[SigningKeyRow]:
    """Returns the signing keys not yet expired, including those published in the future.

    Args:
        tx: A system transaction.
        now: The current time.
        lock: Lock them until the transaction ends (rotation).
    """
    query = select(*_SIGNING.c).where(or_(_SIGNING.c.expire_time.is_(None), _SIGNING.c.expire_time > now))
    if lock:
        query = query.with_for_update()
    return SIGNING_KEYS.records(tx.execute(query).all())


def add_signing_key(tx: Tx, key: SigningKeyRow) -> None:
    """Inserts a signing key."""
    tx.execute(insert(_SIGNING), SIGNING_KEYS.values(key))


def retire_signing_key(tx: Tx, key: SigningKeyRow) -> None:
    """Writes a key's ``retire_time`` and ``expire_time``."""
    tx.execute(
        update(_SIGNING)
        .where(_SIGNING.c.kid == key.kid)
        .values(retire_time=key.retire_time, expire_time=key.expire_time)
    )
