"""Outbound HTTP to addresses tenants name: server-side request forgery protection.

A tenant names URLs and hosts the mesh then connects to (an HTTP tool's API, a
webhook, an SMTP server). Without care that lets a tenant reach what only the mesh
can: the cloud's metadata service (169.254.169.254), the services' own ports on
loopback, the cluster's private network. So every such connection goes through an
:class:`EgressPolicy`:

* the host is resolved when the connection is made, and refused when any address it
  resolves to is loopback, link-local, private (RFC 1918, RFC 4193), shared address
  space (CGNAT, RFC 6598), multicast, reserved, unspecified, or otherwise not global
  (the ``ipaddress`` module's properties, IANA's special-purpose registries), IPv4 or
  IPv6, also an IPv4 address embedded in IPv6 (IPv4-mapped, 6to4, Teredo); unless the
  operator's allow-list (``ORCHESTRALL_EGRESS_ALLOWED_NETWORKS``) contains the address;
* the connection goes to the address that was checked, never to a second resolution
  of the name (no DNS rebinding): the URL's host is replaced by that address, the
  ``Host`` header keeps the name and TLS sends the name as server name (SNI) and
  verifies the certificate against it (httpcore's ``sni_hostname`` extension);
* redirects are not followed (a 3xx answer is the caller's error to report), so an
  answer cannot send the mesh to an address nobody checked;
* each connection is made by a client of its own (:meth:`EgressPolicy.client`, or
  :meth:`EgressPolicy.httpx2_client` for the ``mcp`` SDK, which speaks httpx2), so a
  pooled connection verified for one name is never reused for another name on the
  same address.

A URL a tenant writes is checked once more when it is written
(:meth:`EgressPolicy.url_refusal`): an address literal, or a name of the special-use
``localhost`` domain (RFC 6761), that the policy refuses is refused then, with the same
reason, so a tenant learns of it at once rather than at the first call.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Shared address space (RFC 6598), the carrier-grade NAT range.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")


class EgressRefused(Exception):
    """A connection the policy does not allow; the message says which host and why (never a secret)."""


def refusal_of(address: IPAddress) -> str | None:
    """Returns why an address may not be connected to without the operator's allow-list, or None.

    Checks the address and an IPv4 address embedded in it (IPv4-mapped ``::ffff:a.b.c.d``,
    6to4 ``2002::/16``, Teredo ``2001::/32``).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            inner = refusal_of(embedded)
            if inner is not None:
                return inner
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for failed, reason in checks if failed), None)


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Returns the networks of an allow-list, each a CIDR (``10.0.0.0/8``) or one address.

    Raises:
        ValueError: A value that is not a network or an address.
    """
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound connections may go to, and the clients that keep to it.

    Args:
        allowed_networks: The operator's allow-list: addresses in these networks are
            allowed even when :func:`refusal_of` refuses them.
        tls: The TLS context of every client (made once: the system's trust store).
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    tls: ssl.SSLContext = field(default_factory=ssl.create_default_context, repr=False, compare=False)

    def allows(self, address: IPAddress) -> bool:
        """Whether connections may go to ``address``."""
        return refusal_of(address) is None or self.allow_listed(address)

    def allow_listed(self, address: IPAddress) -> bool:
        """Whether the operator's allow-list names ``address``."""
        return any(address.version == net.version and address in net for net in self.allowed_networks)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Returns the addresses of ``host`` (a name or an address literal), every one of them allowed.

        Raises:
            EgressRefused: The name does not resolve, or one of its addresses is not allowed.
        """
        literal = host.strip("[]")
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(literal)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(literal, port, type=socket.SOCK_STREAM)
            except OSError as error:
                raise EgressRefused(
                    f"the host {host!r} does not resolve: {error.strerror or error}"
                ) from None
            found = (ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
            addresses = list(dict.fromkeys(found))
        if not addresses:
            raise EgressRefused(f"the host {host!r} has no address")
        for address in addresses:
            if not self.allows(address):
                raise EgressRefused(
                    f"the host {host!r} resolves to {address}, a {refusal_of(address)} address, "
                    "which outbound calls may not reach"
                )
        return addresses

    def url_refusal(self, url: str) -> str | None:
        """Returns why a URL's host is refused without resolving it, or None (checked again on connecting).

        The host is refused when it is an address literal the policy does not allow, or
        ``localhost`` or a name under it (RFC 6761: always loopback) unless the
        allow-list names 127.0.0.1. Other names are left to :meth:`resolve`.
        """
        host = (httpx.URL(url).host if "://" in url else url).strip("[]").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            address: IPAddress = ipaddress.IPv4Address("127.0.0.1")
        else:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return None
        if self.allows(address):
            return None
        return f"names {host}, a {refusal_of(address)} address, which outbound calls may not reach"

    async def pin(self, url: httpx.URL | httpx2.URL, *, require_tls: bool = False) -> tuple[str, str]:
        """Returns the checked address a request to ``url`` must go to, and the name it is for.

        Raises:
            EgressRefused: The scheme or the host is not allowed, or plain HTTP where TLS is required.
        """
        if url.scheme not in ("http", "https"):
            raise EgressRefused(f"the scheme {url.scheme!r} is not allowed")
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        address = (await self.resolve(host, port))[0]
        if require_tls and url.scheme == "http" and not self.allow_listed(address):
            raise EgressRefused(f"plain http to {host!r} is not allowed; use https")
        return str(address), host

    def client(self, timeout: float, *, require_tls: bool = False) -> httpx.AsyncClient:
        """Returns a new client whose every connection is checked and pinned, following no redirects.

        Args:
            timeout: Seconds for each of connecting, writing and reading (httpx's timeouts).
            require_tls: Refuse plain ``http`` unless the address is allow-listed
                (webhooks and other deliveries that carry secrets or signatures).
        """
        transport = PinnedTransport(self, require_tls=require_tls)
        return httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
        )

    def httpx2_client(self, timeout: float, headers: dict[str, str]) -> httpx2.AsyncClient:
        """Returns a new httpx2 client (the ``mcp`` SDK's) that keeps to the policy as :meth:`client` does.

        Args:
            timeout: Seconds for each of connecting, writing and reading.
            headers: Sent with every request.
        """
        return httpx2.AsyncClient(
            transport=PinnedTransport2(self),
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to checked addresses, pinned for the request.

    Args:
        policy: Says which addresses are allowed.
        require_tls: Refuse plain ``http`` to an address that is not allow-listed.
    """

    def __init__(self, policy: EgressPolicy, *, require_tls: bool = False) -> None:
        self._policy = policy
        self._require_tls = require_tls
        self._inner = httpx.AsyncHTTPTransport(verify=policy.tls, trust_env=False, retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Resolves and checks the request's host, then sends it to the first address.

        Raises:
            EgressRefused: The host is not allowed, or plain HTTP where TLS is required.
        """
        url = request.url
        address, host = await self._policy.pin(url, require_tls=self._require_tls)
        request.url = url.copy_with(host=address)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        await self._inner.aclose()


class PinnedTransport2(httpx2.AsyncBaseTransport):
    """:class:`PinnedTransport` for httpx2, the ``mcp`` SDK's client (the same :meth:`EgressPolicy.pin`).

    Args:
        policy: Says which addresses are allowed.
    """

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpx2.AsyncHTTPTransport(verify=policy.tls, trust_env=False, retries=0)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Resolves and checks the request's host, then sends it to the first address.

        Raises:
            EgressRefused: The host is not allowed.
        """
        url = request.url
        address, host = await self._policy.pin(url)
        request.url = url.copy_with(host=address)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        await self._inner.aclose()
