"""The agent service's calls to billing and flag, on its own mesh identity.

Stubs are made once, with the channels (:meth:`MeshClients.stub`); a run's
entitlement is one call for every meter it spends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc

from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from orchestrall.billing.v1 import resources_pb2 as billing_res
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from services.agent import errors
from services.kit.clients import MeshClients
from services.kit.names import TENANT

log = logging.getLogger(__name__)

TOOLS_FLAG = "agent-tools"
USAGE_SOURCE = "//agent.orchestrall.dev"


class Peers:
    """Entitlement checks, usage metering and the tools flag.

    Args:
        clients: mTLS channels of this workload.
    """

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients
        self._billing = clients.stub(billing_grpc.BillingServiceStub, "billing")
        self._flags = clients.stub(flag_grpc.FlagServiceStub, "flag")

    async def check_entitlement(self, tenant_id: str, quantities: Mapping[str, float]) -> None:
        """Fails unless the tenant may use every quantity of ``quantities`` (meter to amount) now.

        Raises:
            ResourceExhausted: A meter is over the plan's limit (the first such meter is named).
            Unavailable: Billing could not answer (runs fail closed).
        """
        request = billing_pb.CheckEntitlementRequest(
            tenant=TENANT.format(tenant_id),
            quantities=[billing_pb.MeterQuantity(meter=m, quantity=q) for m, q in quantities.items()],
        )
        try:
            answer = await self._billing.CheckEntitlement(request, timeout=self._clients.timeout)
        except grpc.aio.AioRpcError as error:
            log.warning("entitlement check failed: %s", error.code())
            raise errors.billing_unavailable() from None
        for meter in answer.meters:
            if not meter.allowed:
                raise errors.quota_exceeded(TENANT.format(tenant_id), meter.meter, meter.limit)

    async def record_usage(self, tenant_id: str, run_name: str, run_id: str, usage: dict[str, float]) -> bool:
        """Meters a finished run; event IDs derive from the run, so re-sending is harmless.

        Returns:
            Whether billing acknowledged the events.
        """
        events = [
            billing_res.UsageEvent(
                id=f"{run_id}:{meter}",
                source=USAGE_SOURCE,
                tenant=TENANT.format(tenant_id),
                meter=meter,
                quantity=quantity,
                subject=run_name,
            )
            for meter, quantity in usage.items()
        ]
        try:
            await self._billing.IngestUsageEvents(
                billing_pb.IngestUsageEventsRequest(events=events), timeout=self._clients.timeout
            )
        except grpc.aio.AioRpcError as error:
            log.error("usage of %s not recorded: %s %s", run_name, error.code(), error.details())
            return False
        return True

    async def tools_enabled(self, tenant_id: str, agent_name: str) -> bool:
        """Evaluates the tenant's ``agent-tools`` flag; absent or broken means enabled.

        OpenFeature semantics: on any evaluation error the caller's default
        (``True``) is used (specification section 1.4.10).
        """
        request = flag_pb.EvaluateFlagRequest(name=f"{TENANT.format(tenant_id)}/flags/{TOOLS_FLAG}")
        request.context.update({"targetingKey": agent_name, "agent": agent_name})
        try:
            answer = await self._flags.EvaluateFlag(
                request, timeout=self._clients.timeout, metadata=MeshClients.for_tenant(tenant_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("flag %s not evaluated: %s", TOOLS_FLAG, error.code())
            return True
        if answer.value.WhichOneof("kind") != "bool_value":
            return True
        return answer.value.bool_value
