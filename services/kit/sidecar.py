r"""Behind Istio's sidecar: the caller's identity from the ``x-forwarded-client-cert`` header.

With ``ORCHESTRALL_MESH_TLS=istio`` (:class:`services.kit.config.MeshSettings`) a service
listens in plaintext to its own sidecar, which terminates the mesh's mTLS. On each request
the sidecar's inbound listener appends one element to ``x-forwarded-client-cert`` (XFCC)
describing the peer certificate it verified (Istio sets Envoy's ``forward_client_cert_details``
to ``APPEND_FORWARD`` with the certificate's URI SAN): ``By=<this workload's SPIFFE ID>;
Hash=...;URI=<the caller's SPIFFE ID>``. Elements a caller sent along come before it, so only
the last element is the sidecar's word; the earlier ones are the caller's and are ignored.

This holds only under STRICT mTLS (``PeerAuthentication``, rendered in ``deploy/istio``): a
sidecar that accepts plaintext adds no element, and whatever the caller wrote would be last.

The header's grammar (Envoy's docs, "x-forwarded-client-cert"): elements separated by ``,``,
each a ``;``-separated list of ``key=value`` pairs with case-insensitive keys; a value holding
``,``, ``;`` or ``=`` is double-quoted, with ``\"`` for a quote inside. It is parsed here by
hand: a few lines, and no maintained Python package parses it.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The header Istio's sidecar sets (lower case, as gRPC metadata keys are).
XFCC_HEADER = "x-forwarded-client-cert"


def _split(text: str, separator: str) -> list[str]:
    """Splits ``text`` at ``separator`` outside double quotes (quotes and escapes kept)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def parse_xfcc(header: str) -> list[list[tuple[str, str]]]:
    """Parses an ``x-forwarded-client-cert`` value into its elements.

    Args:
        header: The header's value.

    Returns:
        One list of ``(key, value)`` pairs per element, in order; keys lower-cased, values
        unquoted. A pair without ``=`` is left out.
    """
    elements = []
    for element in _split(header, ","):
        pairs = []
        for pair in _split(element, ";"):
            key, sep, value = pair.strip().partition("=")
            if sep:
                pairs.append((key.strip().lower(), _unquote(value.strip())))
        elements.append(pairs)
    return elements


def forwarded_spiffe_id(metadata: Iterable[tuple[str, str | bytes]], own_id: str) -> str | None:
    """Returns the caller's SPIFFE ID as this workload's sidecar forwarded it, or None.

    Args:
        metadata: The call's invocation metadata.
        own_id: This workload's SPIFFE ID, which the sidecar's element names in ``By``.

    Returns:
        The single ``spiffe://`` URI of the header's last element when that element is by
        ``own_id``; None when there is no header, the last element is by another workload,
        or it names no URI or several.
    """
    values = [v for k, v in metadata if k == XFCC_HEADER and isinstance(v, str)]
    if not values:
        return None
    # Several header lines are one list (RFC 9110 section 5.3), the sidecar's element last.
    last = parse_xfcc(",".join(values))[-1]
    by = [v for k, v in last if k == "by"]
    uris = [v for k, v in last if k == "uri" and v.startswith("spiffe://")]
    if by != [own_id] or len(uris) != 1:
        return None
    return uris[0]
