"""The mesh's gRPC services as the contracts declare them: the one descriptor loader.

The auth guard (:func:`services.kit.auth.method_rules`), the gateway renderer
and the tests all read which RPCs exist, their HTTP bindings and access rules
from here, so they cannot disagree about the contracts.
"""

from __future__ import annotations

import importlib

from google.protobuf.descriptor import ServiceDescriptor

from services.kit.config import SERVICES

#: Service name -> generated module of its ``<svc>_service.proto``.
SERVICE_MODULES: dict[str, str] = {name: f"orchestrall.{name}.v1.{name}_service_pb2" for name in SERVICES}


def descriptors_of(service: str) -> list[ServiceDescriptor]:
    """Returns the gRPC services that mesh service ``service`` implements.

    Raises:
        KeyError: ``service`` is not one of :data:`~services.kit.config.SERVICES`.
    """
    module = importlib.import_module(SERVICE_MODULES[service])
    return list(module.DESCRIPTOR.services_by_name.values())


def all_descriptors() -> dict[str, list[ServiceDescriptor]]:
    """Returns every mesh service's gRPC services, by mesh service name, in :data:`SERVICES` order."""
    return {name: descriptors_of(name) for name in SERVICES}
