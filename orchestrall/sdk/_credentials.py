"""Bearer tokens for the SDK's calls: a fixed one, or one exchanged for an API key and renewed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .proto.orchestrall.auth.v1 import IssueTokenRequest, IssueTokenResponse

#: OAuth 2.0 client credentials grant (RFC 6749 section 4.4), which exchanges an API key.
CLIENT_CREDENTIALS = "client_credentials"


class ApiKeyCredentials:
    """Exchanges an API key for a short-lived JWT at auth's ``IssueToken``, and renews it in time.

    A token is renewed once less than ``refresh_before`` of its lifetime is left (at most half
    of it, for short lifetimes), so no call goes out with a token about to expire. Concurrent
    calls that find it due share one exchange.

    Args:
        api_key: The API key's secret.
        issue: Sends an ``IssueTokenRequest`` (the auth stub's ``issue_token``).
        scope: Roles to ask for, space-separated; empty asks for all the key's roles.
        refresh_before: Seconds before expiry at which a token is renewed.
        clock: Returns the time in seconds, monotonic (an injected clock in tests).
    """

    def __init__(
        self,
        api_key: str,
        issue: Callable[[IssueTokenRequest], Awaitable[IssueTokenResponse]],
        *,
        scope: str = "",
        refresh_before: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._issue = issue
        self._scope = scope
        self._refresh_before = refresh_before
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token = ""
        self._renew_at = 0.0
        #: How many tokens were issued to this client so far.
        self.issued = 0

    async def token(self) -> str:
        """Returns a token that is not due for renewal, exchanging the API key when needed.

        Raises:
            orchestrall.sdk.errors.Unauthenticated: The API key is unknown, deleted or expired.
        """
        async with self._lock:
            if not self._token or self._clock() >= self._renew_at:
                started = self._clock()
                answer = await self._issue(
                    IssueTokenRequest(
                        grant_type=CLIENT_CREDENTIALS, client_secret=self._api_key, scope=self._scope
                    )
                )
                lifetime = float(answer.expires_in)
                self._token = answer.access_token
                self._renew_at = started + lifetime - min(self._refresh_before, lifetime / 2)
                self.issued += 1
            return self._token
