"""Delivering one notification over one kind of channel.

Every sender connects only through the service's :class:`~services.kit.egress.EgressPolicy`
(resolved, checked and pinned addresses; no redirects), within one deadline, and
reports a failure as :class:`DeliveryFailed`, saying whether trying again may help.

* Email: SMTP (RFC 5321) with ``aiosmtplib``, STARTTLS (RFC 3207) or implicit TLS
  (RFC 8314) verified against the host's name; plain SMTP only to an allow-listed address.
* Slack: an incoming webhook, ``POST`` of ``{"text": ...}`` (Slack's "Sending messages
  using incoming webhooks").
* Webhook: ``POST`` of a JSON event signed as Standard Webhooks 1.0 specifies
  (:mod:`services.kit.webhooks`).
* SMS: through an :class:`SmsProvider`; :class:`TwilioProvider` speaks Twilio's
  Programmable Messaging API (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``,
  form-encoded ``To``, ``From``, ``Body``, HTTP basic auth of the SID and token).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import quote, urlsplit

import aiosmtplib
import httpx

from services.agent.notifications.channels import Channel
from services.kit.egress import EgressPolicy, EgressRefused
from services.kit.webhooks import signed_headers

log = logging.getLogger(__name__)

#: HTTP statuses worth another attempt (RFC 9110: a timeout, a conflict in progress, too many requests).
RETRIED_STATUSES = frozenset({408, 409, 425, 429})
EVENT_TYPE = "notification.sent"


class DeliveryFailed(Exception):
    """An attempt failed; the message is recorded as the delivery's ``last_error`` (never a secret).

    Args:
        message: Why.
        retry: Whether another attempt may succeed (False: the receiver refused for good).
    """

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message[:2000])
        self.retry = retry


@dataclass(frozen=True)
class Notification:
    """What one delivery sends.

    Attributes:
        delivery: The delivery's resource name; its ID is the webhook's ``webhook-id``.
        delivery_id: The delivery's ID.
        subject: The subject or title.
        message: The text.
        time: When the notification was sent.
    """

    delivery: str
    delivery_id: str
    subject: str
    message: str
    time: dt.datetime


class SmsProvider(Protocol):
    """Sends text messages through one provider's API."""

    async def send(self, channel: Channel, to: str, text: str, client: httpx.AsyncClient) -> None:
        """Sends ``text`` to the number ``to`` (E.164) on the channel's account.

        Raises:
            DeliveryFailed: The provider refused or could not be reached.
        """
        ...


class TwilioProvider:
    """Twilio's Programmable Messaging API (the 2010-04-01 ``Messages`` resource).

    Args:
        base_url: The API's origin, ``https://api.twilio.com`` (an operator's setting;
            tests point it at a local fake that speaks the same wire format).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    async def send(self, channel: Channel, to: str, text: str, client: httpx.AsyncClient) -> None:
        """Creates one Message resource; Twilio answers 201 with the message's JSON.

        Raises:
            DeliveryFailed: Twilio's error (its ``code`` and ``message``), or no answer.
        """
        sid = channel.settings["account_sid"]
        url = f"{self.base_url}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json"
        form = {"To": to, "From": channel.settings["from_number"], "Body": text}
        response = await client.post(url, data=form, auth=(sid, channel.secrets["auth_token"]))
        if response.status_code in (200, 201):
            return
        try:
            error = response.json()
            detail = f"Twilio error {error.get('code')}: {error.get('message')}"
        except ValueError:
            detail = f"HTTP {response.status_code}"
        raise DeliveryFailed(f"SMS to {to} failed: {detail}", retry=_retried(response.status_code))


def _retried(status: int) -> bool:
    """Whether an HTTP error status is worth another attempt: 5xx and :data:`RETRIED_STATUSES`."""
    return status >= 500 or status in RETRIED_STATUSES


class Senders:
    """Delivers notifications over every kind of channel.

    Args:
        policy: The outbound rules.
        sms: The SMS provider.
        timeout_seconds: Deadline of one attempt, connecting included.
    """

    def __init__(self, policy: EgressPolicy, sms: SmsProvider, timeout_seconds: float) -> None:
        self.policy = policy
        self.sms = sms
        self.timeout_seconds = timeout_seconds

    async def deliver(self, channel: Channel, notification: Notification) -> None:
        """Makes one attempt to deliver ``notification`` on ``channel``.

        Raises:
            DeliveryFailed: The attempt failed; ``retry`` says whether to try again.
        """
        timeout = self.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                if channel.kind == "email":
                    await self._email(channel, notification)
                else:
                    await self._http(channel, notification)
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {timeout:g} s") from None
        except EgressRefused as error:
            raise DeliveryFailed(str(error), retry=False) from None
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"the receiver could not be reached: {type(error).__name__}") from None
        except aiosmtplib.SMTPException as error:
            permanent = isinstance(error, aiosmtplib.SMTPResponseException) and 500 <= error.code < 600
            raise DeliveryFailed(f"SMTP: {type(error).__name__}: {error}", retry=not permanent) from None
        except (OSError, ssl.SSLError) as error:
            raise DeliveryFailed(f"the server could not be reached: {type(error).__name__}") from None

    async def _http(self, channel: Channel, notification: Notification) -> None:
        async with self.policy.client(self.timeout_seconds, require_tls=True) as client:
            if channel.kind == "sms":
                for number in channel.settings["to_numbers"]:
                    await self.sms.send(channel, number, _sms_text(notification), client)
                return
            if channel.kind == "slack":
                url = channel.secrets["webhook_url"]
                body = json.dumps({"text": f"*{notification.subject}*\n{notification.message}"})
                headers = {"content-type": "application/json"}
            else:
                url = channel.settings["url"]
                body = json.dumps(_event(channel, notification), separators=(",", ":"))
                now = int(dt.datetime.now(dt.UTC).timestamp())
                headers = {
                    "content-type": "application/json",
                    **signed_headers(channel.secrets["secret"], notification.delivery_id, now, body),
                }
            response = await client.post(url, content=body.encode(), headers=headers)
        if response.is_success:
            return
        host = urlsplit(url).hostname
        if response.is_redirect:
            raise DeliveryFailed(
                f"{host} answered a redirect (HTTP {response.status_code}), not followed", retry=False
            )
        raise DeliveryFailed(
            f"{host} answered HTTP {response.status_code}: {response.text[:300]}",
            retry=_retried(response.status_code),
        )

    async def _email(self, channel: Channel, notification: Notification) -> None:
        settings = channel.settings
        security = settings.get("security") or "SECURITY_STARTTLS"
        if security == "SECURITY_UNSPECIFIED":
            security = "SECURITY_STARTTLS"
        host = settings["smtp_host"]
        port = int(settings.get("smtp_port") or (465 if security == "SECURITY_TLS" else 587))
        address = (await self.policy.resolve(host, port))[0]
        if security == "SECURITY_NONE" and not self.policy.allow_listed(address):
            raise EgressRefused(f"plain SMTP to {host!r} is not allowed; use STARTTLS or TLS")
        message = EmailMessage()
        message["From"] = settings["from_address"]
        message["To"] = ", ".join(settings["to_addresses"])
        message["Subject"] = notification.subject
        message["Message-ID"] = f"<{notification.delivery_id}@orchestrall>"
        message.set_content(notification.message)
        # Connect to the checked address ourselves; aiosmtplib speaks SMTP over that socket
        # and verifies TLS for ``hostname``, the host's name.
        sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (str(address), port))
        except OSError:
            sock.close()
            raise
        smtp = aiosmtplib.SMTP(
            hostname=host,
            sock=sock,
            use_tls=security == "SECURITY_TLS",
            start_tls=security == "SECURITY_STARTTLS",
            tls_context=self.policy.tls,
            timeout=self.timeout_seconds,
        )
        async with smtp:
            if settings.get("username"):
                await smtp.login(settings["username"], channel.secrets.get("password", ""))
            await smtp.send_message(message)


def _event(channel: Channel, notification: Notification) -> Mapping[str, object]:
    """The webhook's body: a Standard Webhooks event (``type``, ``timestamp``, ``data``)."""
    return {
        "type": EVENT_TYPE,
        "timestamp": notification.time.isoformat().replace("+00:00", "Z"),
        "data": {
            "channel": channel.name,
            "delivery": notification.delivery,
            "subject": notification.subject,
            "message": notification.message,
        },
    }


def _sms_text(notification: Notification) -> str:
    """The SMS body: the subject and the message, at most 1600 characters (Twilio's limit)."""
    return f"{notification.subject}: {notification.message}"[:1600]
