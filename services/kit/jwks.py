"""The auth service's JWKS, fetched over mTLS, for every service but auth."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from orchestrall.auth.v1.auth_service_pb2 import GetJwksRequest
from orchestrall.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from services.kit.auth import JwksFetcher
from services.kit.clients import MeshClients
from services.kit.errors import Unavailable


def auth_jwks_fetcher(clients: MeshClients) -> JwksFetcher:
    """Return a JWKS fetcher for :class:`~services.kit.auth.JwtVerifier` that calls ``AuthService.GetJwks``.

    Args:
        clients: This workload's mesh clients; the call uses their channel to ``auth``
            and their deadline.

    Returns:
        An async function returning the key set as a dict (``{"keys": [...]}``, RFC 7517).
        It raises :class:`~services.kit.errors.Unavailable` (``JWKS_UNAVAILABLE``) when
        the auth service cannot be reached, so callers see UNAVAILABLE, not INTERNAL.
    """

    async def fetch_jwks() -> dict[str, Any]:
        try:
            response = await AuthServiceStub(clients.channel("auth")).GetJwks(
                GetJwksRequest(), timeout=clients.timeout
            )
        except grpc.aio.AioRpcError as error:
            message = f"the auth service's signing keys could not be fetched ({error.code().name})"
            raise Unavailable("JWKS_UNAVAILABLE", message) from None
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    return fetch_jwks
