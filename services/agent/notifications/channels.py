"""Notification channels: their rules, their settings and their sealed secrets.

A channel is stored as its kind, its settings (the kind's message as JSON without
its secret fields) and its secrets (a JSON object of the secret fields, sealed with
:class:`services.kit.sealing.Sealer` for the channel's resource name). Secrets are
input only: :func:`to_proto` never sets them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import mcp
from services.agent.models import NotificationChannelRow
from services.kit.errors import FieldViolation
from services.kit.names import ResourceName
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp
from services.kit.webhooks import secret_problem

CHANNEL = ResourceName.of(res.NotificationChannel)
KINDS = ("email", "slack", "webhook", "sms")
#: The secret fields of each kind: input only, sealed at rest.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("password",),
    "slack": ("webhook_url",),
    "webhook": ("secret",),
    "sms": ("auth_token",),
}
#: A phone number in E.164 (ITU-T E.164: a country code and at most 15 digits in all).
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
#: An address of RFC 5321's ``Mailbox`` shape, without quoting or comments (what senders accept in practice).
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
#: A host name (RFC 1123 labels) or an IPv4 literal.
HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
TWILIO_SID = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class Channel:
    """A channel as a delivery uses it: its settings and its secrets in the clear.

    Attributes:
        name: Resource name, ``tenants/{tenant}/notificationChannels/{notification_channel}``.
        kind: ``email``, ``slack``, ``webhook`` or ``sms``.
        settings: The kind's fields without the secrets (proto JSON names in snake case).
        secrets: The kind's secret fields; never logged.
    """

    name: str
    kind: str
    settings: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)

    @classmethod
    def of(cls, row: NotificationChannelRow, sealer: Sealer) -> Channel:
        """Returns the channel of a stored row, its secrets opened.

        Raises:
            services.kit.sealing.SealError: The secrets do not open.
        """
        name = CHANNEL.format(row.tenant_id, row.id)
        secrets: dict[str, str] = json.loads(sealer.open(row.secrets_sealed, name))
        return cls(name, row.kind, row.settings, secrets)


def split(channel: res.NotificationChannel) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Returns a channel's kind, its settings and its secrets (the kind must be set)."""
    kind = channel.WhichOneof("kind")
    assert kind is not None
    values = json_format.MessageToDict(
        getattr(channel, kind), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    secrets = {name: values.pop(name) for name in SECRET_FIELDS[kind]}
    return kind, values, secrets


def seal(sealer: Sealer, name: str, secrets: dict[str, str]) -> bytes:
    """Returns the secrets sealed for the channel ``name``."""
    return sealer.seal(json.dumps(secrets, sort_keys=True).encode(), name)


def to_proto(row: NotificationChannelRow) -> res.NotificationChannel:
    """Maps a channel row to its resource, without its secrets."""
    message = res.NotificationChannel(
        name=CHANNEL.format(row.tenant_id, row.id),
        display_name=row.display_name,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )
    json_format.ParseDict(row.settings, getattr(message, row.kind))
    return message


def violations_of(channel: res.NotificationChannel, path: str) -> list[FieldViolation]:
    """Returns what is wrong with a channel's kind and its fields (lengths and counts are the contract's).

    Args:
        channel: The channel as written.
        path: The field path of the channel in the request (``notification_channel``).
    """
    kind = channel.WhichOneof("kind")
    if kind is None:
        return [FieldViolation(path, f"must set one kind of {', '.join(KINDS)}")]
    at = f"{path}.{kind}"
    if kind == "email":
        return _email_violations(channel.email, at)
    if kind == "slack":
        return mcp.url_violations(channel.slack.webhook_url, f"{at}.webhook_url")
    if kind == "webhook":
        found = mcp.url_violations(channel.webhook.url, f"{at}.url")
        problem = secret_problem(channel.webhook.secret)
        if problem is not None:
            found.append(FieldViolation(f"{at}.secret", problem))
        return found
    return _sms_violations(channel.sms, at)


def _email_violations(email: res.NotificationChannel.Email, at: str) -> list[FieldViolation]:
    found = []
    if not HOST.match(email.smtp_host):
        found.append(FieldViolation(f"{at}.smtp_host", "must be a host name or an IPv4 address"))
    if not EMAIL.match(email.from_address):
        found.append(FieldViolation(f"{at}.from_address", "is not an email address"))
    if not email.to_addresses:
        found.append(FieldViolation(f"{at}.to_addresses", "must name at least one recipient"))
    found += [
        FieldViolation(f"{at}.to_addresses[{i}]", "is not an email address")
        for i, address in enumerate(email.to_addresses)
        if not EMAIL.match(address)
    ]
    if email.password and not email.username:
        found.append(FieldViolation(f"{at}.password", "needs a username"))
    if any(c in email.username + email.password for c in "\r\n"):
        found.append(FieldViolation(f"{at}.username", "must not contain line breaks"))
    return found


def _sms_violations(sms: res.NotificationChannel.Sms, at: str) -> list[FieldViolation]:
    found = []
    if not TWILIO_SID.match(sms.account_sid):
        found.append(FieldViolation(f"{at}.account_sid", "must be 1-64 letters and digits"))
    if not sms.auth_token.strip():
        found.append(FieldViolation(f"{at}.auth_token", "is required"))
    if not E164.match(sms.from_number):
        found.append(
            FieldViolation(f"{at}.from_number", "is not a phone number in E.164 (+ and 8-15 digits)")
        )
    if not sms.to_numbers:
        found.append(FieldViolation(f"{at}.to_numbers", "must name at least one recipient"))
    found += [
        FieldViolation(f"{at}.to_numbers[{i}]", "is not a phone number in E.164 (+ and 8-15 digits)")
        for i, number in enumerate(sms.to_numbers)
        if not E164.match(number)
    ]
    return found
