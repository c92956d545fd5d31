"""flagd's gRPC protocols that the flag service serves, and who may call them.

The services and messages are the ones the OpenFeature packages ship
(``openfeature.schemas.protobuf.flagd.*`` in ``openfeature-provider-flagd``,
generated from open-feature/flagd-schemas), so a flagd provider talks to the
flag service as it talks to flagd. Their contracts carry none of our options, so
their access rules are declared here instead of with
``(orchestrall.api.v1.access)``: every method needs a token whose roles grant
the permission below, and the tenant is the token's. They have no REST binding;
the gateway passes them through as native gRPC.

This module holds data only (no servicer), so that the kit
(:mod:`services.kit.contracts`), the gateway renderer and the deployment renderer
can read it without loading the service.
"""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as evaluation_v1
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2 as evaluation_v2
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2 as sync_v1

#: flagd's evaluation services (RPC mode of the flagd providers; v2 is what current providers use).
EVALUATION: tuple[ServiceDescriptor, ...] = (
    evaluation_v1.DESCRIPTOR.services_by_name["Service"],
    evaluation_v2.DESCRIPTOR.services_by_name["Service"],
)
#: flagd's sync service (in-process mode: the provider evaluates from the definitions it is sent).
SYNC = sync_v1.DESCRIPTOR.services_by_name["FlagSyncService"]
SERVICES: tuple[ServiceDescriptor, ...] = (*EVALUATION, SYNC)

#: ``/package.Service/Method`` -> the permission its caller's roles must grant. The sync service
#: hands out the definitions themselves (targeting rules included), which listing flags shows.
PERMISSIONS: dict[str, str] = {
    **{
        f"/{service.full_name}/{method.name}": "flag.flags.evaluate"
        for service in EVALUATION
        for method in service.methods
    },
    **{f"/{SYNC.full_name}/{method.name}": "flag.flags.list" for method in SYNC.methods},
}
