"""Users, service accounts, API key lifetimes, role grants and the audit log."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from orchestrall.auth.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_users_sign_in_with_a_password_and_act_with_their_roles(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        user = await stub.CreateUser(
            pb.CreateUserRequest(
                parent=tenant.name,
                user_id="ada",
                user=res.User(email="Ada@Example.com", password="correct horse battery", roles=["viewer"]),
            ),
            metadata=tenant.metadata,
        )
        assert user.email == "ada@example.com" and not user.password
        token = await stub.IssueToken(
            pb.IssueTokenRequest(
                grant_type="password",
                username="ada@example.com",
                password="correct horse battery",
                tenant=tenant.name,
            )
        )
        assert token.scope == "viewer"
        for wrong in ("wrong password!!", "correct horse battery "):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IssueToken(
                    pb.IssueTokenRequest(
                        grant_type="password", username="ada@example.com", password=wrong, tenant=tenant.id
                    )
                )
            assert error_info(caught.value).reason == "INVALID_GRANT"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(
                pb.IssueTokenRequest(
                    grant_type="password", username="nobody@example.com", password="x" * 12, tenant=tenant.id
                )
            )
        assert error_info(caught.value).reason == "INVALID_GRANT", "unknown users look like wrong passwords"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateUser(
                pb.CreateUserRequest(
                    parent=tenant.name, user=res.User(email="not-an-email", password="short")
                ),
                metadata=tenant.metadata,
            )
        assert set(field_violations(caught.value)) == {"user.email", "user.password"}
    async with mesh.channel("agent") as channel:
        agents = agent_grpc.AgentServiceStub(channel)
        listed = await agents.ListAgents(
            agent_pb.ListAgentsRequest(parent=tenant.name), metadata=bearer(token.access_token)
        )
        assert not listed.agents
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agents.CreateAgent(
                agent_pb.CreateAgentRequest(parent=tenant.name, agent=agent_res.Agent(instructions="x")),
                metadata=bearer(token.access_token),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "MISSING_PERMISSION"


async def test_service_accounts_use_client_credentials_until_deleted(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        created = await stub.CreateServiceAccount(
            pb.CreateServiceAccountRequest(
                parent=tenant.name,
                service_account_id="ci",
                service_account=res.ServiceAccount(roles=["developer"]),
            ),
            metadata=tenant.metadata,
        )
        name = created.service_account.name
        request = pb.IssueTokenRequest(
            grant_type="client_credentials", client_id=name, client_secret=created.client_secret
        )
        assert (await stub.IssueToken(request)).scope == "developer"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(
                pb.IssueTokenRequest(
                    grant_type="client_credentials", client_id=name, client_secret=tenant.secret
                )
            )
        assert error_info(caught.value).reason == "INVALID_CLIENT"
        await stub.DeleteServiceAccount(pb.DeleteServiceAccountRequest(name=name), metadata=tenant.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(request)
        assert error_info(caught.value).reason == "INVALID_CLIENT"


async def test_api_keys_expire_record_last_use_and_never_outrank_their_maker(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        past = Timestamp()
        past.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateApiKey(
                pb.CreateApiKeyRequest(
                    parent=tenant.name, api_key=res.ApiKey(roles=["viewer"], expire_time=past)
                ),
                metadata=tenant.metadata,
            )
        assert field_violations(caught.value) == ["api_key.expire_time"]
        soon = Timestamp()
        soon.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
        short = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(parent=tenant.name, api_key=res.ApiKey(roles=["admin"], expire_time=soon)),
            metadata=tenant.metadata,
        )
        admin_token = await stub.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret=short.api_key_secret)
        )
        assert admin_token.expires_in <= 2, "a token never outlives the key that asked for it"
        listed = await stub.ListApiKeys(pb.ListApiKeysRequest(parent=tenant.name), metadata=tenant.metadata)
        assert {k.name: k.HasField("last_use_time") for k in listed.api_keys}[short.api_key.name]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateApiKey(
                pb.CreateApiKeyRequest(parent=tenant.name, api_key=res.ApiKey(roles=["owner"])),
                metadata=bearer(admin_token.access_token),
            )
        assert error_info(caught.value).reason == "ROLE_NOT_GRANTABLE"
        owner_key = f"{tenant.name}/apiKeys/{tenant.secret[4:36]}"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteApiKey(
                pb.DeleteApiKeyRequest(name=owner_key), metadata=bearer(admin_token.access_token)
            )
        assert error_info(caught.value).reason == "ROLE_NOT_GRANTABLE", (
            "an admin may not remove the owner's key"
        )
        await asyncio.sleep(2.1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListApiKeys(
                pb.ListApiKeysRequest(parent=tenant.name), metadata=bearer(admin_token.access_token)
            )
        assert error_info(caught.value).reason == "TOKEN_EXPIRED"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(
                pb.IssueTokenRequest(grant_type="client_credentials", client_secret=short.api_key_secret)
            )
        assert error_info(caught.value).reason == "INVALID_CLIENT"


async def audit_events(mesh: Mesh, tenant: Tenant, **filters: str) -> list[res.AuditEvent]:
    async with mesh.channel("auth") as channel:
        listed = await pb_grpc.AuthServiceStub(channel).ListAuditEvents(
            pb.ListAuditEventsRequest(parent=tenant.name, **filters), metadata=tenant.metadata
        )
    return list(listed.audit_events)


async def delivered(mesh: Mesh, tenant: Tenant, count: int, **filters: str) -> list[res.AuditEvent]:
    """The tenant's matching audit events once ``count`` of them arrived (relays are asynchronous)."""
    for _ in range(100):
        events = await audit_events(mesh, tenant, **filters)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.1)
    return events


async def test_mutations_and_denials_reach_the_audit_log(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        agents = agent_grpc.AgentServiceStub(channel)
        agent = await agents.CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name, agent_id="audited", agent=agent_res.Agent(instructions="x")
            ),
            metadata=tenant.metadata,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await agents.CreateAgent(
                agent_pb.CreateAgentRequest(
                    parent=tenant.name, agent_id="audited", agent=agent_res.Agent(instructions="x")
                ),
                metadata=tenant.metadata,
            )
        await agents.GetAgent(agent_pb.GetAgentRequest(name=agent.name), metadata=tenant.metadata)
    events = await delivered(mesh, tenant, 2, resource=agent.name)
    outcomes = sorted((e.method.rsplit("/", 1)[1], e.outcome, e.service) for e in events)
    assert outcomes == [("CreateAgent", "ALREADY_EXISTS", "agent"), ("CreateAgent", "OK", "agent")]
    assert {e.subject for e in events} == {f"{tenant.name}/apiKeys/{tenant.secret[4:36]}"}
    sign_up = await delivered(mesh, tenant, 2, resource=tenant.name, subject="anonymous")
    assert sorted(e.method.rsplit("/", 1)[1] for e in sign_up) == ["CreateTenant", "IssueToken"]
    assert {e.resource for e in sign_up} == {tenant.name, f"{tenant.name}/apiKeys/{tenant.secret[4:36]}"}
