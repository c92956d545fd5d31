"""gRPC server reflection: each server's own services, and the platform's public API at the gateway.

Every server answers reflection for the services it implements (and health), to any mesh peer,
under both of the protocol's names: ``grpc.reflection.v1.ServerReflection`` (what grpcurl and
Postman try first) and ``grpc.reflection.v1alpha.ServerReflection``. grpcio-reflection ships the
v1alpha servicer only; the v1 protocol's messages are the same fields with the same numbers
(grpc/grpc-proto ``grpc/reflection/v1/reflection.proto``), so the v1 name is served by the same
servicer with the v1alpha messages' serializers.

The gateway routes both names to the auth service, whose reflection answers a call that comes on
the gateway's mesh identity with the public API (:func:`public_catalog`): every service the gateway
exposes, with its internal RPCs removed, resolvable with all its files' dependencies. Such a call
must carry a valid bearer token (the gateway already required one; the service verifies it again,
zero trust); without one it ends UNAUTHENTICATED.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from services.kit.auth import method_rules
from services.kit.contracts import all_descriptors

#: The protocol's two service names; the method is ``ServerReflectionInfo`` under both.
REFLECTION_SERVICES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
METHOD = "ServerReflectionInfo"

Requests = AsyncIterator[reflection_pb2.ServerReflectionRequest]
Responses = AsyncIterator[reflection_pb2.ServerReflectionResponse]


@dataclass(frozen=True)
class Catalog:
    """What one reflection answer describes.

    Attributes:
        services: Fully qualified service names that ``list_services`` returns.
        pool: The descriptors files and symbols are resolved from.
    """

    services: tuple[str, ...]
    pool: descriptor_pool.DescriptorPool


def _with_dependencies(files: Iterable[FileDescriptor]) -> list[FileDescriptor]:
    """``files`` and every file they import, transitively, dependencies first."""
    ordered: list[FileDescriptor] = []
    seen: set[str] = set()

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    for file in files:
        visit(file)
    return ordered


@functools.cache
def public_catalog() -> Catalog:
    """Returns the platform's public API as the gateway exposes it, for reflection.

    The services are those with at least one RPC that is not internal (the contracts' rules,
    :func:`services.kit.auth.method_rules`): our five services' and the adopted flagd protocols
    the gateway passes through; internal-only ones (Envoy's rate limit protocol) and health are
    left out. Each service's internal RPCs (no ``google.api.http``, AIP-127), which the gateway
    answers 404, are removed from its file, so ``describe`` shows only what a client can call.

    Returns:
        The services, sorted, and a pool with their files and all their dependencies.
    """
    services: list[ServiceDescriptor] = [s for found in all_descriptors().values() for s in found]
    rules = method_rules(services)
    internal = {path for path, rule in rules.items() if rule.internal}
    public = [s for s in services if any(f"/{s.full_name}/{m.name}" not in internal for m in s.methods)]
    pool = descriptor_pool.DescriptorPool()
    for file in _with_dependencies(s.file for s in public):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        for service in proto.service:
            full = f"{proto.package}.{service.name}" if proto.package else service.name
            kept = [m for m in service.method if f"/{full}/{m.name}" not in internal]
            del service.method[:]
            service.method.extend(kept)
        pool.Add(proto)
    return Catalog(tuple(sorted(s.full_name for s in public)), pool)


def own_catalog(services: Sequence[ServiceDescriptor], extra: Sequence[str]) -> Catalog:
    """Returns a server's own reflection: ``services`` and ``extra`` names, from the default pool."""
    return Catalog(
        (*(s.full_name for s in services), *extra, *REFLECTION_SERVICES), descriptor_pool.Default()
    )


#: Decides, per call, which catalog answers; raises a gRPC abort to refuse the call.
Chooser = Callable[[grpc.aio.ServicerContext], Awaitable[Catalog]]


class _Servicer(ReflectionServicer):  # type: ignore[misc]  # grpcio-reflection is untyped
    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog.services, pool=catalog.pool)


def enable(server: grpc.aio.Server, own: Catalog, choose: Chooser | None = None) -> None:
    """Serves reflection on ``server`` under both protocol names.

    Args:
        server: The server (reflection is registered outside the kit's guard).
        own: The catalog answered by default.
        choose: Picks the catalog of each call (e.g. the public one for the gateway), or
            aborts it; None: always ``own``.
    """
    servicers: dict[int, _Servicer] = {}

    def servicer(catalog: Catalog) -> _Servicer:
        # Catalogs are few and built once (public_catalog is cached); so are their servicers.
        found = servicers.get(id(catalog))
        if found is None:
            found = servicers[id(catalog)] = _Servicer(catalog)
        return found

    default = servicer(own)

    async def handle(requests: Requests, context: grpc.aio.ServicerContext) -> Responses:
        chosen = default if choose is None else servicer(await choose(context))
        async for response in chosen.ServerReflectionInfo(requests, context):
            yield response

    handler = grpc.stream_stream_rpc_method_handler(
        handle,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, {METHOD: handler}) for name in REFLECTION_SERVICES)
    )
