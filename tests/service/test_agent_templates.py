"""Agent templates over real gRPC: listing by industry, getting one, and creating agents from them."""

from __future__ import annotations

import grpc
import pytest

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.catalog.templates import INDUSTRIES
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant

RISK = "agentTemplates/finance-risk-calculator"


async def _all(
    stub: pb_grpc.AgentServiceStub, metadata: object, **request: object
) -> list[res.AgentTemplate]:
    listed: list[res.AgentTemplate] = []
    token = ""
    while True:
        page = await stub.ListAgentTemplates(
            pb.ListAgentTemplatesRequest(page_size=5, page_token=token, **request), metadata=metadata
        )
        listed += page.agent_templates
        token = page.next_page_token
        if not token:
            return listed


async def test_eighteen_templates_three_per_industry_the_callers_industry_first(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        listed = await _all(stub, tenant.metadata)
        assert [t.industry for t in listed] == [industry for industry in INDUSTRIES for _ in range(3)]
        assert len({t.name for t in listed}) == 18
        for template in listed:
            assert (
                template.tools and template.instructions and template.example_input and template.description
            )
            assert template.tool_choice == res.TOOL_CHOICE_REQUIRED
        logistics_first = await _all(stub, tenant.metadata, industry=" Logistics ")
        assert [t.industry for t in logistics_first][:4] == ["logistics"] * 3 + ["finance"]
        assert sorted(t.name for t in logistics_first) == sorted(t.name for t in listed)
        got = await stub.GetAgentTemplate(pb.GetAgentTemplateRequest(name=RISK), metadata=tenant.metadata)
        assert got == listed[0] and got.display_name == "Risk calculator"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetAgentTemplate(
                pb.GetAgentTemplateRequest(name="agentTemplates/astrology"), metadata=tenant.metadata
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(missing.value).reason == "AGENT_TEMPLATE_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await stub.GetAgentTemplate(
                pb.GetAgentTemplateRequest(name="agentTemplates/a/b"), metadata=tenant.metadata
            )
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(malformed.value) == ["name"]


async def test_the_tenants_stored_industry_picks_the_templates_offered_first(mesh: Mesh) -> None:
    healthcare = await new_tenant(mesh, industry="Healthcare")
    none = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        # No filter: the industry the tenant signed up with (its token carries it) comes first.
        listed = await _all(stub, healthcare.metadata)
        assert [t.name for t in listed][:3] == [
            "agentTemplates/healthcare-data-processor",
            "agentTemplates/healthcare-medical-analyzer",
            "agentTemplates/healthcare-report-generator",
        ]
        assert [t.industry for t in listed] == ["healthcare"] * 3 + [
            industry for industry in INDUSTRIES if industry != "healthcare" for _ in range(3)
        ]
        # A filter asked for wins over the tenant's industry.
        retail_first = await _all(stub, healthcare.metadata, industry="retail")
        assert [t.industry for t in retail_first][:4] == ["retail"] * 3 + ["finance"]
        # A tenant without an industry gets the catalog order.
        plain = await _all(stub, none.metadata)
        assert [t.industry for t in plain] == [industry for industry in INDUSTRIES for _ in range(3)]


async def test_an_agent_made_from_a_template_copies_it_and_records_it(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        template = await stub.GetAgentTemplate(
            pb.GetAgentTemplateRequest(name=RISK), metadata=tenant.metadata
        )
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=res.Agent(template=RISK), agent_id="risk"),
            metadata=tenant.metadata,
        )
        assert (
            agent.template,
            agent.display_name,
            agent.instructions,
            list(agent.tools),
            agent.tool_choice,
        ) == (
            RISK,
            template.display_name,
            template.instructions,
            list(template.tools),
            template.tool_choice,
        )
        own = await stub.CreateAgent(
            pb.CreateAgentRequest(
                parent=tenant.name,
                agent=res.Agent(template=RISK, display_name="Desk VaR", instructions="Answer tersely."),
            ),
            metadata=tenant.metadata,
        )
        assert (own.display_name, own.instructions, list(own.tools)) == (
            "Desk VaR",
            "Answer tersely.",
            list(template.tools),
        )
        updated = await stub.UpdateAgent(
            pb.UpdateAgentRequest(
                agent=res.Agent(name=agent.name, display_name="Renamed"),
                update_mask={"paths": ["display_name"]},
            ),
            metadata=tenant.metadata,
        )
        fetched = await stub.GetAgent(pb.GetAgentRequest(name=agent.name), metadata=tenant.metadata)
        assert updated.template == fetched.template == RISK
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.CreateAgent(
                pb.CreateAgentRequest(
                    parent=tenant.name, agent=res.Agent(template="agentTemplates/astrology")
                ),
                metadata=tenant.metadata,
            )
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(unknown.value) == ["agent.template"]
        with pytest.raises(grpc.aio.AioRpcError) as immutable:
            await stub.UpdateAgent(
                pb.UpdateAgentRequest(
                    agent=res.Agent(name=agent.name, template="agentTemplates/finance-fraud-detector"),
                    update_mask={"paths": ["template"]},
                ),
                metadata=tenant.metadata,
            )
        assert immutable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        listed = await stub.ListAgents(pb.ListAgentsRequest(parent=tenant.name), metadata=tenant.metadata)
        assert sorted(a.template for a in listed.agents) == [RISK, RISK]
