"""The mesh's gRPC services as the contracts declare them: the one descriptor loader.

The auth guard (:func:`services.kit.auth.method_rules`), the gateway renderer
and the tests all read which RPCs exist, their HTTP bindings and access rules
from here, so they cannot disagree about the contracts.

A mesh service may also serve protocols whose contracts another project owns
(the flag service serves flagd's). Those carry none of our method options, so
the service declares them in a module of its own (:data:`ADOPTED_MODULES`) with
two attributes: ``SERVICES``, their service descriptors, and ``PERMISSIONS``,
``/package.Service/Method`` -> the permission a caller's token must grant. They
are external RPCs for tokens, without a REST binding. The module may also declare
``INTERNAL``, a set of such paths that are internal instead: callable only on a mesh
identity the policy table (:mod:`services.kit.policy`) grants them, never through the
gateway (the billing service serves Envoy's rate limit protocol to the gateway so).
"""

from __future__ import annotations

import functools
import importlib

from google.protobuf.descriptor import ServiceDescriptor

from services.kit.config import SERVICES

#: Service name -> generated module of its ``<svc>_service.proto``.
SERVICE_MODULES: dict[str, str] = {name: f"orchestrall.{name}.v1.{name}_service_pb2" for name in SERVICES}
#: Service name -> module declaring the adopted protocols it serves (see the module docstring).
ADOPTED_MODULES: dict[str, str] = {"flag": "services.flag.adopted", "billing": "services.billing.adopted"}


def contract_descriptors_of(service: str) -> list[ServiceDescriptor]:
    """Returns the gRPC services of mesh service ``service``'s own contract (``proto/``).

    Raises:
        KeyError: ``service`` is not one of :data:`~services.kit.config.SERVICES`.
    """
    module = importlib.import_module(SERVICE_MODULES[service])
    return list(module.DESCRIPTOR.services_by_name.values())


def adopted_descriptors_of(service: str) -> list[ServiceDescriptor]:
    """Returns the gRPC services of other projects' protocols that ``service`` serves (may be empty)."""
    if service not in ADOPTED_MODULES:
        return []
    return list(importlib.import_module(ADOPTED_MODULES[service]).SERVICES)


def descriptors_of(service: str) -> list[ServiceDescriptor]:
    """Returns every gRPC service that mesh service ``service`` implements: its contract's, then adopted ones.

    Raises:
        KeyError: ``service`` is not one of :data:`~services.kit.config.SERVICES`.
    """
    return [*contract_descriptors_of(service), *adopted_descriptors_of(service)]


@functools.cache
def adopted_permissions() -> dict[str, str]:
    """Returns ``/package.Service/Method`` -> permission for every adopted RPC of the mesh."""
    found: dict[str, str] = {}
    for module in ADOPTED_MODULES.values():
        found.update(importlib.import_module(module).PERMISSIONS)
    return found


@functools.cache
def adopted_internal() -> frozenset[str]:
    """Returns the ``/package.Service/Method`` of every adopted RPC that is internal (module ``INTERNAL``)."""
    found: set[str] = set()
    for module in ADOPTED_MODULES.values():
        found |= getattr(importlib.import_module(module), "INTERNAL", frozenset())
    return frozenset(found)


def all_descriptors() -> dict[str, list[ServiceDescriptor]]:
    """Returns every mesh service's gRPC services, by mesh service name, in :data:`SERVICES` order."""
    return {name: descriptors_of(name) for name in SERVICES}
