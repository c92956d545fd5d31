"""Envoy's rate limit protocol, which the billing service serves to the gateway, and who may call it.

The service and messages are Envoy's (``envoy.service.ratelimit.v3``, compiled from
envoyproxy/data-plane-api as the ``xds-protos`` wheel ships them; generated into
``gen/envoy_api`` by :mod:`services.kit.protogen`). Its contract carries none of our
options, so its access rule is declared here: ``ShouldRateLimit`` is internal, called
only by the gateway's Envoy on its own mesh identity (``services.kit.policy``), with no
token; the gateway refuses it from clients.

This module holds data only (no servicer), so that the kit
(:mod:`services.kit.contracts`), the gateway renderer and the deployment renderer
can read it without loading the service.
"""

from __future__ import annotations

from envoy_api.envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.descriptor import ServiceDescriptor

RATE_LIMIT_SERVICE: ServiceDescriptor = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"]
SERVICES: tuple[ServiceDescriptor, ...] = (RATE_LIMIT_SERVICE,)
#: ``/package.Service/Method`` of Envoy's rate limit check.
SHOULD_RATE_LIMIT = f"/{RATE_LIMIT_SERVICE.full_name}/ShouldRateLimit"

#: RPCs that need a token: none.
PERMISSIONS: dict[str, str] = {}
#: RPCs callable only on a mesh identity that the policy table grants them.
INTERNAL: frozenset[str] = frozenset({SHOULD_RATE_LIMIT})
