"""The outbound rules (services/kit/egress.py) against real sockets: what is refused, what is pinned."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.kit.egress import EgressPolicy, EgressRefused, parse_networks, refusal_of


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),  # 240/4 is in the stdlib's private networks (reserved for future use)
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("192.0.2.1", "private"),  # TEST-NET-1, documentation only
    ],
)
def test_addresses_outside_the_internet_are_refused(address: str, reason: str) -> None:
    assert refusal_of(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert refusal_of(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "169.254.169.254", "10.0.0.1", "::1", "[::1]", "localhost", "no-such-host.invalid"]
)
async def test_without_an_allow_list_internal_hosts_and_names_are_refused(host: str) -> None:
    with pytest.raises(EgressRefused):
        await EgressPolicy().resolve(host, 80)


async def test_the_allow_list_admits_only_its_networks() -> None:
    policy = EgressPolicy(parse_networks(["127.0.0.1/32", "10.20.0.0/16"]))
    assert await policy.resolve("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert await policy.resolve("10.20.3.4", 80) == [ipaddress.ip_address("10.20.3.4")]
    for host in ("127.0.0.2", "10.21.0.1", "169.254.169.254", "::1"):
        with pytest.raises(EgressRefused):
            await policy.resolve(host, 80)
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


class _Echo(BaseHTTPRequestHandler):
    """Answers each GET with the Host header it got; ``/redirect`` redirects to an internal address."""

    requests = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Echo.requests += 1
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        body = (self.headers.get("host") or "").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


async def test_a_request_is_pinned_to_the_checked_address_and_keeps_its_host(echo_port: int) -> None:
    # localhost resolves to 127.0.0.1 (and maybe ::1): both allowed here, the first is used.
    policy = EgressPolicy(parse_networks(["127.0.0.0/8", "::1/128"]))
    async with policy.client(5) as client:
        answer = await client.get(f"http://localhost:{echo_port}/")
    assert answer.status_code == 200
    assert answer.text == f"localhost:{echo_port}"


async def test_redirects_are_not_followed(echo_port: int) -> None:
    policy = EgressPolicy(parse_networks(["127.0.0.1/32"]))
    async with policy.client(5) as client:
        answer = await client.get(f"http://127.0.0.1:{echo_port}/redirect")
    assert answer.status_code == 302  # the caller reports it; nothing went to 169.254.169.254


async def test_plain_http_needs_the_allow_list_where_tls_is_required(echo_port: int) -> None:
    allowed = EgressPolicy(parse_networks(["127.0.0.1/32"]))
    async with allowed.client(5, require_tls=True) as client:
        assert (await client.get(f"http://127.0.0.1:{echo_port}/")).status_code == 200
    async with EgressPolicy().client(5, require_tls=True) as client:
        with pytest.raises(EgressRefused):
            await client.get(f"http://127.0.0.1:{echo_port}/")


async def test_a_refused_request_never_reaches_the_server(echo_port: int) -> None:
    before = _Echo.requests
    async with EgressPolicy().client(5) as client:
        with pytest.raises(EgressRefused, match="loopback"):
            await asyncio.wait_for(client.get(f"http://127.0.0.1:{echo_port}/"), 5)
    assert _Echo.requests == before
