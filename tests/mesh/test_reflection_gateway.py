"""Server reflection through Envoy, as grpcurl and Postman use it: a token, the public API, both names.

The client side is grpcio-reflection's own (``ProtoReflectionDescriptorDatabase`` under a
``DescriptorPool``), over a plain gRPC channel to the gateway; the call made from what it
resolved builds its messages with ``message_factory`` only, no generated stubs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.cli.stack import Stack
from tests.mesh.test_access_gateway import SignedUp, sign_up

#: Exactly what the gateway exposes: our services and the flagd protocols it passes through;
#: no health, no reflection itself, no internal-only service (Envoy's rate limit protocol).
PUBLIC = [
    "flagd.evaluation.v1.Service",
    "flagd.evaluation.v2.Service",
    "flagd.sync.v1.FlagSyncService",
    "orchestrall.agent.v1.AgentService",
    "orchestrall.auth.v1.AuthService",
    "orchestrall.billing.v1.BillingService",
    "orchestrall.flag.v1.FlagService",
    "orchestrall.flag.v1.OfrepService",
    "orchestrall.workflow.v1.WorkflowService",
]


class _Bearer(grpc.StreamStreamClientInterceptor, grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer <token>`` to every call, as grpcurl's ``-H`` does."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


@pytest.fixture(scope="module")
def tenant(stack: Stack) -> SignedUp:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as http:
        return sign_up(http, "reflect")


@pytest.fixture
def channel(stack: Stack, tenant: SignedUp) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.http_port}") as raw:
        yield grpc.intercept_channel(raw, _Bearer(tenant.token))


def _ask(channel: grpc.Channel, name: str, request: reflection_pb2.ServerReflectionRequest) -> Any:
    """One request on ``name``'s ServerReflectionInfo stream (v1 and v1alpha messages share a wire form)."""
    call = channel.stream_stream(
        f"/{name}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (response,) = list(call(iter([request]), timeout=10))
    return response


def test_reflection_lists_resolves_and_drives_a_call(channel: grpc.Channel, tenant: SignedUp) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    assert sorted(database.get_services()) == PUBLIC
    pool = descriptor_pool.DescriptorPool(database)
    agents = pool.FindServiceByName("orchestrall.agent.v1.AgentService")
    assert "CreateRun" in agents.methods_by_name
    # A message with its dependencies: the resource it holds, from another file, and the well-known types.
    request = pool.FindMessageTypeByName("orchestrall.agent.v1.CreateRunRequest")
    run = request.fields_by_name["run"].message_type
    assert run.full_name == "orchestrall.agent.v1.Run"
    assert run.file.name == "orchestrall/agent/v1/resources.proto"
    assert run.fields_by_name["create_time"].message_type.full_name == "google.protobuf.Timestamp"
    # Internal RPCs (no REST binding; the gateway answers them 404) are not described.
    auth = pool.FindServiceByName("orchestrall.auth.v1.AuthService")
    assert "GetTenant" in auth.methods_by_name
    assert "RotateSigningKey" not in auth.methods_by_name
    assert "IngestAuditEvents" not in auth.methods_by_name
    # A call built from the resolved descriptors alone.
    method = auth.methods_by_name["GetTenant"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    get_tenant = channel.unary_unary(
        f"/{auth.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    got = get_tenant(request_class(name=f"tenants/{tenant.tenant}"), timeout=10)
    assert got.name == f"tenants/{tenant.tenant}"
    assert got.display_name == "reflect"


def test_the_v1_name_answers_the_same(channel: grpc.Channel) -> None:
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    by_name = {
        name: _ask(channel, name, listing)
        for name in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
    }
    v1, v1alpha = by_name.values()
    assert sorted(s.name for s in v1.list_services_response.service) == PUBLIC
    assert v1.list_services_response == v1alpha.list_services_response
    symbol = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="orchestrall.agent.v1.AgentService"
    )
    files = _ask(channel, "grpc.reflection.v1.ServerReflection", symbol).file_descriptor_response
    assert files == _ask(channel, "grpc.reflection.v1alpha.ServerReflection", symbol).file_descriptor_response
    assert len(files.file_descriptor_proto) > 1  # the file and its dependencies


@pytest.mark.parametrize(
    "name", ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
)
def test_no_token_no_listing(stack: Stack, name: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.http_port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            _ask(channel, name, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
