"""Threads over real gRPC with the real model server: what a run on a thread sends the model, and keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.runner import estimate_prompt_tokens
from services.agent.server import AgentSettings, build
from services.kit import mtls
from services.kit.server import RunningServer, start
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant, run_to_end

INSTRUCTIONS = "You are a dispatcher. Answer in one short sentence."
DISPATCHER = res.Agent(instructions=INSTRUCTIONS, temperature=0, max_output_tokens=8)


# The embedded model server reports no usage in streams, so a run records the tokens it
# estimates for the messages it sent (services.agent.runner.estimate_prompt_tokens): equal
# estimates for the expected messages mean the run sent exactly those characters.


def chat(*turns: str) -> list[dict[str, Any]]:
    """The agent's instructions, then user and assistant turns alternating."""
    roles = ("user", "assistant")
    return [{"role": "system", "content": INSTRUCTIONS}] + [
        {"role": roles[i % 2], "content": text} for i, text in enumerate(turns)
    ]


async def _setup(stub: pb_grpc.AgentServiceStub, tenant: Tenant) -> tuple[res.Agent, res.Thread]:
    agent = await stub.CreateAgent(
        pb.CreateAgentRequest(parent=tenant.name, agent=DISPATCHER, agent_id="dispatcher"),
        metadata=tenant.metadata,
    )
    thread = await stub.CreateThread(
        pb.CreateThreadRequest(
            parent=tenant.name, thread=res.Thread(metadata={"customer": "c-17"}), thread_id="support"
        ),
        metadata=tenant.metadata,
    )
    return agent, thread


async def _run(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent: res.Agent, text: str, thread: str
) -> res.Run:
    run = await run_to_end(
        stub,
        pb.CreateRunRequest(parent=agent.name, run=res.Run(input=text, thread=thread)),
        metadata=tenant.metadata,
    )
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    assert run.usage.model_calls == 1
    return run


async def test_a_second_run_on_a_thread_sees_the_first_exchange(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent, thread = await _setup(stub, tenant)
        assert thread.name == f"{tenant.name}/threads/support" and dict(thread.metadata) == {
            "customer": "c-17"
        }

        first = await _run(stub, tenant, agent, "My truck is waiting at the Rotterdam hub.", thread.name)
        assert first.thread == thread.name
        assert first.usage.input_tokens == estimate_prompt_tokens(chat(first.input))
        second = await _run(stub, tenant, agent, "Where is my truck?", thread.name)
        # The model received the first exchange before the second input, token for token.
        assert second.usage.input_tokens == estimate_prompt_tokens(
            chat(first.input, first.output, second.input)
        )
        alone = await _run(stub, tenant, agent, "Where is my truck?", "")
        assert not alone.thread
        assert alone.usage.input_tokens == estimate_prompt_tokens(chat(alone.input))
        assert alone.usage.input_tokens < second.usage.input_tokens

        listed = await stub.ListMessages(pb.ListMessagesRequest(parent=thread.name), metadata=md)
        assert [(m.role, m.content, m.run) for m in listed.messages] == [
            (res.Message.ROLE_USER, first.input, first.name),
            (res.Message.ROLE_ASSISTANT, first.output, first.name),
            (res.Message.ROLE_USER, second.input, second.name),
            (res.Message.ROLE_ASSISTANT, second.output, second.name),
        ]
        assert all(m.name.startswith(f"{thread.name}/messages/") for m in listed.messages)
        page = await stub.ListMessages(pb.ListMessagesRequest(parent=thread.name, page_size=3), metadata=md)
        rest = await stub.ListMessages(
            pb.ListMessagesRequest(parent=thread.name, page_size=3, page_token=page.next_page_token),
            metadata=md,
        )
        assert [m.name for m in [*page.messages, *rest.messages]] == [m.name for m in listed.messages]

        fetched = await stub.GetThread(pb.GetThreadRequest(name=thread.name), metadata=md)
        assert fetched.update_time.ToDatetime() > fetched.create_time.ToDatetime()
        threads = await stub.ListThreads(pb.ListThreadsRequest(parent=tenant.name), metadata=md)
        assert [t.name for t in threads.threads] == [thread.name]

        await stub.DeleteThread(pb.DeleteThreadRequest(name=thread.name), metadata=md)
        for call in (
            stub.GetThread(pb.GetThreadRequest(name=thread.name), metadata=md),
            stub.ListMessages(pb.ListMessagesRequest(parent=thread.name), metadata=md),
            stub.DeleteThread(pb.DeleteThreadRequest(name=thread.name), metadata=md),
            stub.CreateRun(
                pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Still there?", thread=thread.name)),
                metadata=md,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert error_info(caught.value).reason == "THREAD_NOT_FOUND"
        kept = await stub.GetRun(pb.GetRunRequest(name=second.name), metadata=md)
        assert kept.thread == thread.name and kept.output == second.output


async def test_threads_are_created_once_and_stay_in_their_tenant(mesh: Mesh) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        request = pb.CreateThreadRequest(
            parent=tenant.name, thread=res.Thread(), thread_id="desk", request_id="once"
        )
        made = await stub.CreateThread(request, metadata=tenant.metadata)
        again = await stub.CreateThread(request, metadata=tenant.metadata)
        assert again.name == made.name
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateThread(
                pb.CreateThreadRequest(parent=tenant.name, thread=res.Thread(), thread_id="desk"),
                metadata=tenant.metadata,
            )
        assert error_info(caught.value).reason == "THREAD_ALREADY_EXISTS"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateThread(
                pb.CreateThreadRequest(
                    parent=tenant.name, thread=res.Thread(metadata={"": "x"}), thread_id="Not An Id"
                ),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=other.name, agent=DISPATCHER), metadata=other.metadata
        )
        # Another tenant's thread is no thread of the run's tenant; it is not even looked up.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_to_end(
                stub,
                pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Hi", thread=made.name)),
                metadata=other.metadata,
            )
        assert field_violations(caught.value) == ["run.thread"]
        listed = await stub.ListThreads(pb.ListThreadsRequest(parent=other.name), metadata=other.metadata)
        assert not listed.threads


@pytest.fixture
async def small_budget(mesh: Mesh, model_url: str) -> AsyncIterator[RunningServer]:
    """A second agent replica whose runs see at most 60 estimated tokens of thread history."""
    base = mesh.config.settings("agent").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    settings = AgentSettings(**base.model_dump(), openai_base_url=model_url, thread_history_tokens=60)
    server = await start(*(await build(settings)))
    yield server
    await server.stop(0)


async def test_the_history_is_cut_to_its_token_budget_oldest_turns_first(
    mesh: Mesh, model_url: str, small_budget: RunningServer
) -> None:
    tenant = await new_tenant(mesh)
    # 160 characters, 40 estimated tokens; a reply of at most 8 tokens is under 60 characters, so one
    # turn (input and reply) is 40-55 estimated tokens: one fits the budget of 60, two do not.
    inputs = [f"Shipment {i}: " + "pallets of ceramic tiles for the Lyon depot, " * 4 for i in range(3)]
    inputs = [text[:160] for text in inputs]
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{small_budget.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", "agent")],
    ) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent, thread = await _setup(stub, tenant)
        runs = [await _run(stub, tenant, agent, text, thread.name) for text in inputs]
    assert all(len(run.output) < 60 for run in runs)
    first, second, third = runs
    assert second.usage.input_tokens == estimate_prompt_tokens(chat(first.input, first.output, second.input))
    # The oldest turn is dropped whole; the newest one is kept.
    assert third.usage.input_tokens == estimate_prompt_tokens(chat(second.input, second.output, third.input))
