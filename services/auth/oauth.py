"""The OAuth 2.0 token endpoint as OAuth clients speak it: form bodies, HTTP Basic, RFC 6749 errors.

``IssueToken`` is bound by the gateway's transcoder to ``POST /v1/oauth2/token`` with a JSON
body, and answers errors as ``google.rpc.Status``. OAuth client libraries send the token
request as ``application/x-www-form-urlencoded`` (RFC 6749 sections 4.3.2 and 4.4.2),
authenticate the client with HTTP Basic (section 2.3.1) or in the body, and read errors as
``{"error", "error_description"}`` (section 5.2). The auth service serves that form on a
listener of its own (``ORCHESTRALL_OAUTH_LISTEN``, Starlette under uvicorn, as the agent
serves its MCP catalog); the gateway routes a POST to the token path whose content type is
form-urlencoded there, and JSON ones to the transcoder: one URL for both.

The endpoint holds no token rules of its own. It turns the form into an
``IssueTokenRequest`` and calls ``IssueToken`` on its own service's gRPC port (loopback,
with the service's own certificate under the kit's mTLS, plaintext behind Istio's sidecar),
so the call runs inside the kit's guard like any other: the contract's field rules, the
audit record of a token issuance, metrics and logs. The RPC's error (its ``ErrorInfo``
reason is the RFC 6749 code, upper-cased) becomes the section 5.2 answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

import grpc
from google.api import annotations_pb2 as http_annotations
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from services.kit.http_listener import HttpListener
from services.kit.mtls import TlsFiles, channel_credentials

log = logging.getLogger(__name__)

#: The RPC behind the endpoint.
ISSUE_TOKEN = pb.DESCRIPTOR.services_by_name["AuthService"].methods_by_name["IssueToken"]
#: The path the endpoint answers on: ``IssueToken``'s REST binding, from the contract.
TOKEN_PATH: str = ISSUE_TOKEN.GetOptions().Extensions[http_annotations.http].post
#: The one request content type (RFC 6749 sections 4.3.2, 4.4.2 and Appendix B).
FORM = "application/x-www-form-urlencoded"
#: The parameters an ``IssueTokenRequest`` has; any other is ignored (RFC 6749 section 3.2).
PARAMETERS = tuple(field.name for field in pb.IssueTokenRequest.DESCRIPTOR.fields)
#: Largest form accepted, in bytes; the gateway caps bodies at 1 MiB before this.
MAX_FORM_BYTES = 16 * 1024
#: Most parameters in one form.
MAX_FIELDS = 32
#: Deadline of the loopback ``IssueToken`` call, in seconds.
CALL_TIMEOUT_SECONDS = 10.0
#: Request headers passed on to the RPC as metadata (the trace context, the request ID).
FORWARDED_HEADERS = ("traceparent", "tracestate", "x-request-id")
#: Realm of the Basic challenge (RFC 7617 section 2).
REALM = "orchestrall"

#: ErrorInfo reasons of ``IssueToken`` that are RFC 6749 section 5.2 codes, and their HTTP status.
RFC_ERRORS: Mapping[str, int] = {
    "INVALID_REQUEST": 400,
    "INVALID_CLIENT": 401,
    "INVALID_GRANT": 400,
    "UNAUTHORIZED_CLIENT": 400,
    "UNSUPPORTED_GRANT_TYPE": 400,
    "INVALID_SCOPE": 400,
}
#: gRPC codes of errors that are not section 5.2 codes, as an OAuth error and HTTP status. The
#: codes for the last two come from the registry of OAuth error codes (RFC 6749 section 11.4,
#: ``server_error`` and ``temporarily_unavailable``), which section 4.1.2.1 defines.
_OTHER_ERRORS: Mapping[grpc.StatusCode, tuple[str, int]] = {
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_request", 400),
    grpc.StatusCode.UNAUTHENTICATED: ("invalid_client", 401),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("temporarily_unavailable", 503),
    grpc.StatusCode.UNAVAILABLE: ("temporarily_unavailable", 503),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("temporarily_unavailable", 503),
}
#: Characters outside those an ``error_description`` may hold (RFC 6749 section 5.2:
#: %x20-21 / %x23-5B / %x5D-7E, so no ``"``, no ``\`` and ASCII only).
_NOT_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
#: Section 5.1: a token response (and an error) must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(eq=False)
class OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer.

    Attributes:
        error: The error code (``invalid_client``).
        description: Human-readable text (``error_description``).
        status: The HTTP status.
        basic: The client authenticated with HTTP Basic: a 401 names that scheme.
    """

    error: str
    description: str
    status: int = 400
    basic: bool = False

    def response(self) -> Response:
        """Returns the JSON answer: 400, or 401 with ``WWW-Authenticate: Basic`` (section 5.2).

        A 401 always carries the challenge (RFC 9110 section 15.5.2 requires one); for a
        client that authenticated in the body it names the scheme the endpoint also takes.
        """
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        body = {"error": self.error, "error_description": _description(self.description)}
        return Response(
            json.dumps(body), status_code=self.status, media_type="application/json", headers=headers
        )


def _description(text: str) -> str:
    """``text`` within the characters section 5.2 allows an ``error_description``."""
    return _NOT_DESCRIPTION.sub("?", text)[:500]


def basic_credentials(header: str) -> tuple[str, str] | None:
    """Reads client credentials from an ``Authorization: Basic`` header value.

    RFC 6749 section 2.3.1: the client identifier and secret are each encoded with the
    ``application/x-www-form-urlencoded`` algorithm (Appendix B) before they are joined by a
    colon and base64-encoded (RFC 7617).

    Args:
        header: The ``Authorization`` header's value.

    Returns:
        ``(client_id, client_secret)``, or None when the header is of another scheme.

    Raises:
        OAuthError: ``invalid_request``: the Basic credentials are not base64 of ``id:secret``
            in UTF-8.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_request", "the Basic credentials are not base64 of UTF-8 text") from None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_request", "the Basic credentials must be client_id:client_secret")
    try:
        return unquote_plus(client_id, errors="strict"), unquote_plus(client_secret, errors="strict")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the Basic credentials are not UTF-8 once decoded") from None


def parse_form(body: bytes) -> dict[str, str]:
    """Reads a token request's parameters from its form body.

    Args:
        body: The ``application/x-www-form-urlencoded`` body (UTF-8, RFC 6749 Appendix B).

    Returns:
        Each parameter of an ``IssueTokenRequest`` that has a value; the others are ignored and
        an empty one counts as absent (section 3.2).

    Raises:
        OAuthError: ``invalid_request``: the body is not such a form, is too large, or names a
            parameter more than once (section 3.2).
    """
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form is not UTF-8 (RFC 6749 Appendix B)") from None
    except ValueError:
        raise OAuthError("invalid_request", f"the form has more than {MAX_FIELDS} parameters") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAMETERS:
            continue
        if key in form:
            raise OAuthError("invalid_request", f"{key} is given more than once (RFC 6749 section 3.2)")
        form[key] = value
    return form


def token_request(form: Mapping[str, str], authorization: str | None) -> tuple[pb.IssueTokenRequest, bool]:
    """Builds the ``IssueTokenRequest`` of a form and its ``Authorization`` header.

    The client authenticates either with HTTP Basic or with ``client_id`` and
    ``client_secret`` in the body, never both (RFC 6749 section 2.3.1); with Basic, a
    ``client_id`` in the body must be the same.

    Args:
        form: The parameters (:func:`parse_form`).
        authorization: The ``Authorization`` header, if any.

    Returns:
        The request, and whether the client authenticated with Basic.

    Raises:
        OAuthError: ``invalid_request``: malformed Basic credentials, or two ways of
            authenticating the client.
    """
    fields = dict(form)
    basic = basic_credentials(authorization) if authorization else None
    if basic is not None:
        client_id, client_secret = basic
        if "client_secret" in fields:
            raise OAuthError(
                "invalid_request",
                "authenticate the client with HTTP Basic or with client_secret in the body, not both",
                basic=True,
            )
        if fields.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials'", basic=True)
        fields["client_id"] = client_id
        fields["client_secret"] = client_secret
    return pb.IssueTokenRequest(**fields), basic is not None


def error_of(error: grpc.aio.AioRpcError, basic: bool) -> OAuthError:
    """Returns the section 5.2 answer to a failed ``IssueToken`` call.

    An ``ErrorInfo`` reason that is a section 5.2 code is that code (:data:`RFC_ERRORS`);
    other errors map by gRPC code: a request the contract's field rules refuse is
    ``invalid_request``; an overloaded or unreachable service is ``temporarily_unavailable``
    (503); anything else is ``server_error`` (500).

    Args:
        error: The RPC's error, with ``google.rpc.Status`` details.
        basic: The client authenticated with HTTP Basic.
    """
    status = rpc_status.from_call(error)
    reason = ""
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
            break
    message = status.message if status is not None else (error.details() or "")
    if reason in RFC_ERRORS:
        return OAuthError(reason.lower(), message, RFC_ERRORS[reason], basic)
    code, http_status = _OTHER_ERRORS.get(error.code(), ("server_error", 500))
    if http_status >= 500:
        log.warning("IssueToken failed: %s %s", error.code().name, error.details())
    return OAuthError(code, message, http_status, basic)


class TokenEndpoint:
    """The form-encoded token endpoint over a channel to the auth service's own gRPC port.

    Args:
        channel: A channel to the auth service (:func:`loopback_channel`).
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.AuthServiceStub(channel)

    async def token(self, request: Request) -> Response:
        """Answers one token request: RFC 6749 section 5.1 on success, section 5.2 on error."""
        try:
            media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != FORM:
                raise OAuthError("invalid_request", f"the token request must be {FORM} (RFC 6749 4.4.2)")
            form = parse_form(await request.body())
            message, basic = token_request(form, request.headers.get("authorization"))
            metadata = tuple(
                (name, request.headers[name]) for name in FORWARDED_HEADERS if name in request.headers
            )
            try:
                response = await self._stub.IssueToken(
                    message, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                raise error_of(error, basic) from None
        except OAuthError as error:
            return error.response()
        body = json_format.MessageToDict(response, preserving_proto_field_name=True)
        return Response(json.dumps(body), media_type="application/json", headers=_NO_STORE)

    def app(self) -> Starlette:
        """Returns the ASGI app: ``POST`` :data:`TOKEN_PATH`, nothing else."""
        return Starlette(routes=[Route(TOKEN_PATH, self.token, methods=["POST"])])


def loopback_address(listen: str) -> str:
    """The address the service dials itself on, from its gRPC ``listen`` address.

    Raises:
        ValueError: The port is 0 (unknown before the server binds it).
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        raise ValueError(f"the OAuth endpoint needs a fixed gRPC port, not {listen!r}")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def loopback_channel(listen: str, tls: TlsFiles | None) -> grpc.aio.Channel:
    """A channel to the service's own gRPC port, presenting its own certificate when ``tls`` is given.

    Args:
        listen: The gRPC server's ``listen`` address.
        tls: The auth service's workload certificate (the kit's mTLS); None behind Istio's
            sidecar, where the server listens in plaintext (loopback bypasses the sidecar).
    """
    address = loopback_address(listen)
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(
        address, channel_credentials(tls), options=[("grpc.ssl_target_name_override", "auth")]
    )


class OAuthServer(HttpListener):
    """Runs :class:`TokenEndpoint` under uvicorn on ``listen``, with mTLS when ``tls`` is given.

    Args:
        listen: ``host:port`` to bind.
        grpc_listen: The auth service's gRPC ``listen`` address, which the endpoint calls.
        tls: The auth service's workload certificate: the listener requires client certificates
            of the same CA (the gateway's), and the loopback call presents it.
    """

    def __init__(self, listen: str, grpc_listen: str, tls: TlsFiles | None) -> None:
        self._channel = loopback_channel(grpc_listen, tls)
        super().__init__("OAuth token endpoint", TokenEndpoint(self._channel).app(), listen, tls)

    async def stop(self) -> None:
        """Stops serving, letting requests in progress finish, then closes the channel."""
        await super().stop()
        await self._channel.close()
