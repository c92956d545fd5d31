"""Model routes: retries with backoff, fallback over endpoints, the tenant's default route.

Through the real gRPC server, with the real model server as the endpoint that answers.
The endpoints that fail are a small OpenAI-compatible HTTP server in the test (the
hosted APIs a route falls back from cannot run here): one answers HTTP 500 with the
OpenAI error JSON, one accepts requests and never answers, one streams the start of a
reply and then an SSE error event (as OpenAI does mid-stream); a port nobody listens on
refuses connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from typing import Any

import grpc
import pytest
import uvicorn
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from orchestrall.flag.v1 import resources_pb2 as flag_res
from services.kit.server import RunningServer
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    field_violations,
    flag_synced,
    new_tenant,
    run_to_end,
)
from tests.service.test_agent_runs import GUARDED

GREETER = res.Agent(instructions="Answer in one short sentence.", temperature=0, max_output_tokens=12)
HANGING_TIMEOUT = 0.3


class FakeEndpoints:
    """An OpenAI-compatible server whose endpoints fail on purpose; counts the requests of each."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self._never = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/broken/v1/chat/completions", self._broken, methods=["POST"]),
                Route("/hanging/v1/chat/completions", self._hanging, methods=["POST"]),
                Route("/midway/v1/chat/completions", self._midway, methods=["POST"]),
            ]
        )
        self.port = 0

    async def _broken(self, request: Request) -> Response:
        self.requests["broken"] += 1
        error = {"message": "The server had an error", "type": "server_error", "param": None, "code": None}
        return JSONResponse({"error": error}, status_code=500)

    async def _hanging(self, request: Request) -> Response:
        self.requests["hanging"] += 1
        await self._never.wait()
        return Response(status_code=204)

    async def _midway(self, request: Request) -> Response:
        self.requests["midway"] += 1
        body = await request.json()

        async def events() -> AsyncIterator[bytes]:
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Partial"}}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            error = {"message": "overloaded", "type": "server_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    def release(self) -> None:
        """Lets the hanging endpoint's requests end (their clients gave up long ago)."""
        self._never.set()

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/{endpoint}/v1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEndpoints]:
    endpoints = FakeEndpoints()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    endpoints.port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(endpoints.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield endpoints
    endpoints.release()  # a server cancelled with requests in flight leaves the next one deaf
    server.should_exit = True
    await asyncio.wait_for(serving, 10)
    sock.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A local address nobody listens on: connections to it are refused."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"


def _routes(fake: FakeEndpoints, model_url: str, refused_url: str) -> dict[str, Any]:
    broken = {"base_url": fake.url("broken"), "model": "gpt-big", "name": "broken"}
    hanging = {
        "base_url": fake.url("hanging"),
        "model": "gpt-big",
        "name": "hanging",
        "timeout_seconds": HANGING_TIMEOUT,
    }
    local = {"base_url": model_url, "model": "smollm2", "name": "local"}
    # Backoffs of seconds: the test passes only because the replica's backoff sleep is injected.
    retry = {"attempts": 2, "backoff_base_seconds": 5, "backoff_max_seconds": 5}
    return {
        "resilient": {"endpoints": [broken, hanging, local], "retry": retry},
        "doomed": {
            "endpoints": [broken, {"base_url": refused_url, "model": "gpt-big", "name": "refused"}],
            "retry": {**retry, "attempts": 3},
        },
        "midway": {
            "endpoints": [{"base_url": fake.url("midway"), "model": "gpt-big", "name": "midway"}, local],
            "retry": retry,
        },
        "house": {"endpoints": [{**local, "name": "house-local"}]},
    }


class Backoffs:
    """The replica's backoff sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def routed(
    mesh: Mesh, model_url: str, fake: FakeEndpoints, refused_url: str
) -> AsyncIterator[tuple[RunningServer, Backoffs]]:
    backoffs = Backoffs()
    server = await agent_replica(
        mesh, model_url, backoff_sleep=backoffs, model_routes=_routes(fake, model_url, refused_url)
    )
    yield server, backoffs
    await server.stop(0)


async def _agent(stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent_id: str, model: str) -> res.Agent:
    agent = res.Agent()
    agent.CopyFrom(GREETER)
    agent.model = model
    return await stub.CreateAgent(
        pb.CreateAgentRequest(parent=tenant.name, agent=agent, agent_id=agent_id), metadata=tenant.metadata
    )


async def _run(stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent: res.Agent) -> res.Run:
    return await run_to_end(
        stub, pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Say hello.")), tenant.metadata
    )


async def _events(stub: pb_grpc.AgentServiceStub, tenant: Tenant, run: str) -> list[res.RunEvent]:
    stream = stub.StreamRunEvents(pb.StreamRunEventsRequest(name=run), metadata=tenant.metadata)
    return [event async for event in stream]


def _model_calls(events: list[res.RunEvent]) -> list[res.ModelCall]:
    return [e.model_call for e in events if e.WhichOneof("event") == "model_call"]


def _reason(run: res.Run) -> str:
    info = error_details_pb2.ErrorInfo()
    assert run.error.details[0].Unpack(info)
    return info.reason


async def test_a_route_retries_with_backoff_then_falls_over_to_the_endpoint_that_answers(
    mesh: Mesh, routed: tuple[RunningServer, Backoffs], fake: FakeEndpoints
) -> None:
    server, backoffs = routed
    tenant = await new_tenant(mesh)
    async with agent_channel(mesh, server) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _agent(stub, tenant, "resilient", "routes/resilient")
        run = await _run(stub, tenant, agent)
        events = await _events(stub, tenant, run.name)
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    assert run.model == "smollm2" and run.output
    assert events[0].run_started.model == "routes/resilient"
    (call,) = _model_calls(events)
    assert (call.model, call.route, call.endpoint, call.attempts) == ("smollm2", "resilient", "local", 5)
    # Two attempts on each failing endpoint, the second after a backoff of at most 5 s.
    assert fake.requests == {"broken": 2, "hanging": 2}
    assert len(backoffs.waits) == 2 and all(0 <= wait <= 5 for wait in backoffs.waits)


async def test_a_route_whose_endpoints_all_fail_fails_the_run_naming_every_attempt(
    mesh: Mesh, routed: tuple[RunningServer, Backoffs], fake: FakeEndpoints
) -> None:
    server, backoffs = routed
    tenant = await new_tenant(mesh)
    async with agent_channel(mesh, server) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _agent(stub, tenant, "doomed", "routes/doomed")
        run = await _run(stub, tenant, agent)
    assert run.state == res.Run.STATE_FAILED
    assert _reason(run) == "MODEL_UNAVAILABLE"
    assert run.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    message = run.error.message
    assert "route 'doomed' did not answer after 6 attempts" in message, message
    assert message.count("broken: HTTP 500") == 3 and message.count("refused: could not be reached") == 3
    assert fake.requests == {"broken": 3}
    assert len(backoffs.waits) == 4  # two retries on each endpoint
    assert run.model == "routes/doomed" and run.usage.model_calls == 0


async def test_a_reply_that_fails_after_it_began_to_stream_is_not_retried(
    mesh: Mesh, routed: tuple[RunningServer, Backoffs], fake: FakeEndpoints
) -> None:
    server, _ = routed
    tenant = await new_tenant(mesh)
    async with agent_channel(mesh, server) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _agent(stub, tenant, "midway", "routes/midway")
        run = await _run(stub, tenant, agent)
        events = await _events(stub, tenant, run.name)
    assert run.state == res.Run.STATE_FAILED and _reason(run) == "MODEL_UNAVAILABLE"
    assert "overloaded" in run.error.message
    # Its text reached the run's events once; neither a retry nor the next endpoint repeated it.
    deltas = [e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta"]
    assert deltas == ["Partial"]
    assert fake.requests == {"midway": 1}
    assert not _model_calls(events)


async def test_an_unknown_route_is_a_field_violation(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _agent(stub, tenant, "lost", "routes/nowhere")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == ["agent.model"]
        assert "nowhere" in (caught.value.details() or "")
        # The implicit default route always exists; a model ID is no route.
        agent = await _agent(stub, tenant, "plain", "routes/default")
        await _agent(stub, tenant, "smol", "smollm2")
        agent.model = "routes/nowhere"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateAgent(pb.UpdateAgentRequest(agent=agent), metadata=tenant.metadata)
        assert field_violations(caught.value) == ["agent.model"]
        run = await _run(stub, tenant, agent)
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    assert run.model == "smollm2"


async def test_a_run_resumed_after_approvals_keeps_its_route(
    mesh: Mesh, routed: tuple[RunningServer, Backoffs]
) -> None:
    server, _ = routed
    tenant = await new_tenant(mesh)
    guarded = res.Agent()
    guarded.CopyFrom(GUARDED)
    guarded.model = "routes/house"
    async with agent_channel(mesh, server) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=guarded, agent_id="guarded"),
            metadata=tenant.metadata,
        )
        waiting = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam to Berlin?")),
            tenant.metadata,
        )
        assert waiting.state == res.Run.STATE_REQUIRES_ACTION, waiting.error
        assert waiting.model == "smollm2"  # the model that answered, not the route
        (pending,) = waiting.pending_tool_calls
        approval = res.ToolApproval(tool_call_id=pending.id, decision=res.ToolApproval.DECISION_APPROVE)
        await stub.SubmitToolApprovals(
            pb.SubmitToolApprovalsRequest(name=waiting.name, approvals=[approval]), metadata=tenant.metadata
        )
        ended = await stub.WaitRun(pb.WaitRunRequest(name=waiting.name), metadata=tenant.metadata)
        events = await _events(stub, tenant, waiting.name)
    assert ended.state == res.Run.STATE_SUCCEEDED, ended.error
    started = [e.run_started for e in events if e.WhichOneof("event") == "run_started"]
    assert [(s.model, s.resumed) for s in started] == [("routes/house", False), ("routes/house", True)]
    calls = _model_calls(events)
    assert len(calls) >= 2 and all((c.route, c.endpoint) == ("house", "house-local") for c in calls)


async def _route_flag(mesh: Mesh, server: RunningServer, tenant: Tenant, route: str) -> None:
    async with mesh.channel("flag") as channel, flag_synced(server, tenant, "agent-model-route"):
        await flag_grpc.FlagServiceStub(channel).CreateFlag(
            flag_pb.CreateFlagRequest(
                parent=tenant.name,
                flag_id="agent-model-route",
                flag=flag_res.Flag(
                    state=flag_res.Flag.STATE_ENABLED,
                    variants={"chosen": struct_pb2.Value(string_value=route)},
                    default_variant="chosen",
                ),
            ),
            metadata=tenant.metadata,
        )


async def test_the_tenant_default_route_serves_its_agents_that_name_no_model(
    mesh: Mesh, routed: tuple[RunningServer, Backoffs]
) -> None:
    server, _ = routed
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    await _route_flag(mesh, server, tenant, "house")
    await _route_flag(mesh, server, other, "nowhere")  # not a configured route: the deployment's default
    async with agent_channel(mesh, server) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        unnamed = await _agent(stub, tenant, "unnamed", "")
        named = await _agent(stub, tenant, "named", "smollm2")
        elsewhere = await _agent(stub, other, "unnamed", "")
        runs = await asyncio.gather(
            _run(stub, tenant, unnamed), _run(stub, tenant, named), _run(stub, other, elsewhere)
        )
        events = [await _events(stub, t, r.name) for t, r in zip((tenant, tenant, other), runs, strict=True)]
    assert all(r.state == res.Run.STATE_SUCCEEDED for r in runs), [r.error for r in runs]
    assert all(r.model == "smollm2" for r in runs)
    started = [e[0].run_started.model for e in events]
    assert started == ["routes/house", "smollm2", "smollm2"]
    served = [(c.route, c.endpoint) for e in events for c in _model_calls(e)]
    assert served == [("house", "house-local"), ("", "smollm2"), ("", "smollm2")]
