"""The gateway's own answers to REST requests, as ``google.rpc.Status`` JSON like every other error.

Envoy answers some requests itself (local replies): jwt_authn without a valid
token (401), the buffer filter over the body cap (413), the connection manager
over the header cap (431), the transcoder for JSON or parameters that do not
fit the operation (400) or a path no operation has (404), the rate limiters
(429), the router when a service cannot be reached (503) or does not answer in
time (504). Envoy's own bodies are ``text/plain`` and some echo the request
(``Could not resolve <path> to a method``) or name Envoy's internals
(``upstream connect error ... reset reason``). For REST requests the
connection manager's ``local_reply_config`` rewrites each into the JSON the
services' errors have (``google.rpc.Status`` with one ``google.rpc.ErrorInfo``,
AIP-193), with a fixed message per kind; native gRPC clients keep Envoy's
``grpc-status`` answers. The HTTP status is kept.

A mapper matches by a CEL expression (Envoy's ``ExpressionFilter``) over the
response code and Envoy's response code details
(https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/response_code_details),
for example ``jwt_authn_access_denied{Jwt_is_missing}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.rpc import code_pb2

from services.kit.errors import domain_of

#: ``ErrorInfo.domain`` of the gateway's own errors.
DOMAIN = domain_of("gateway")

#: A REST request: the client sent no gRPC content-type (the transcoder rewrites it to
#: application/grpc and keeps the client's path in x-envoy-original-path).
_REST = (
    "(!('content-type' in request.headers) || !request.headers['content-type'].startsWith('application/grpc')"
    " || 'x-envoy-original-path' in request.headers)"
)


@dataclass(frozen=True)
class LocalReply:
    """One kind of Envoy local reply and the ``google.rpc.Status`` a REST client gets for it.

    Attributes:
        status: HTTP status of Envoy's reply (kept).
        code: ``google.rpc.Code`` of the body.
        reason: ``ErrorInfo.reason``.
        message: ``Status.message``, the same for every reply of this kind.
        details: Text Envoy's response code details must contain, or empty for any.
        below: With ``status``, matches every status from ``status`` up to this one (exclusive).
    """

    status: int
    code: int
    reason: str
    message: str
    details: str = ""
    below: int = 0

    def condition(self, *, rest: bool) -> str:
        """Returns the CEL expression that selects this kind of reply to a REST (or a gRPC) request."""
        if self.below:
            matched = f"response.code >= {self.status} && response.code < {self.below}"
        else:
            matched = f"response.code == {self.status}"
        if self.details:
            matched += f" && response.code_details.contains({json.dumps(self.details)})"
        return f"{_REST} && {matched}" if rest else f"!{_REST} && {matched}"

    @property
    def body(self) -> dict[str, Any]:
        """Returns the JSON body (Envoy's ``json_format``; it has no format commands)."""
        return {
            "code": self.code,
            "message": self.message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason, "domain": DOMAIN}
            ],
        }


def local_replies(*, max_request_bytes: int, max_request_headers_kb: int) -> list[LocalReply]:
    """Returns the gateway's local replies in match order (the first that matches applies).

    Args:
        max_request_bytes: The body cap, named in the 413 message.
        max_request_headers_kb: The header cap, named in the 431 message.
    """
    unauthenticated = code_pb2.UNAUTHENTICATED
    return [
        LocalReply(
            401,
            unauthenticated,
            "MISSING_CREDENTIALS",
            "a bearer token is required (RFC 6750)",
            "Jwt_is_missing",
        ),
        LocalReply(401, unauthenticated, "TOKEN_EXPIRED", "the bearer token has expired", "Jwt_is_expired"),
        LocalReply(401, unauthenticated, "INVALID_TOKEN", "the bearer token is not valid for this API"),
        LocalReply(
            400,
            code_pb2.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
            "the request does not fit the operation: its JSON body, or a path or query parameter, "
            "is malformed or of the wrong type",
        ),
        LocalReply(
            404, code_pb2.NOT_FOUND, "UNKNOWN_OPERATION", "no operation of this API has this method and path"
        ),
        LocalReply(
            413,
            code_pb2.INVALID_ARGUMENT,
            "REQUEST_TOO_LARGE",
            f"the request body is larger than {max_request_bytes} bytes",
        ),
        LocalReply(
            431,
            code_pb2.INVALID_ARGUMENT,
            "REQUEST_HEADERS_TOO_LARGE",
            f"the request line and headers are larger than {max_request_headers_kb} KiB",
        ),
        LocalReply(
            429,
            code_pb2.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
            "too many requests for this tenant (or, without a token, this client address); "
            "retry after the seconds in Retry-After",
        ),
        LocalReply(
            503,
            code_pb2.UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the service is unavailable for a moment; retry later",
        ),
        LocalReply(504, code_pb2.DEADLINE_EXCEEDED, "SERVICE_TIMEOUT", "the service did not answer in time"),
        LocalReply(
            400, code_pb2.INVALID_ARGUMENT, "REQUEST_REFUSED", "the gateway refused the request", below=500
        ),
        LocalReply(
            500, code_pb2.INTERNAL, "GATEWAY_ERROR", "the gateway could not complete the request", below=600
        ),
    ]
