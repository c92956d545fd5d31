"""The agent service's calls to billing, on its own mesh identity (its flags: :mod:`services.agent.flags`).

Stubs are made once, with the channels (:meth:`MeshClients.stub`); a run's
entitlement is one call for every meter it spends.

A run's quota is held by a billing reservation whose ID derives from the run ID
(:func:`reservation_id`), so every call about it is idempotent: :meth:`Peers.reserve`
before the run starts, then exactly one of :meth:`Peers.settle` (it spent something,
whatever its outcome, carrying the usage events it recorded) or :meth:`Peers.release`
(it spent nothing). The usage itself is metered by the usage outbox
(:mod:`services.agent.metering`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from orchestrall.billing.v1 import resources_pb2 as billing_res
from services.agent import errors
from services.kit.clients import MeshClients
from services.kit.names import TENANT, ResourceName
from services.kit.usage import UsageEventRow
from services.kit.usage import to_messages as usage_messages

log = logging.getLogger(__name__)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_RESERVATION = ResourceName.of(billing_res.Reservation)


def reservation_id(run_id: str) -> str:
    """Returns the ID of a run's billing reservation, ``run-{run_id}`` (an AIP-122 ID for a UUID run ID)."""
    return f"run-{run_id}"


def _quota_failure(error: grpc.aio.AioRpcError) -> error_details_pb2.QuotaFailure | None:
    """Returns the ``google.rpc.QuotaFailure`` of a failed call's status details, or None."""
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            failure = error_details_pb2.QuotaFailure()
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Unpack(failure):
                    return failure
    return None


class Peers:
    """Entitlement checks and usage metering.

    Args:
        clients: mTLS channels of this workload.
    """

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients
        self._billing = clients.stub(billing_grpc.BillingServiceStub, "billing")

    async def reserve(
        self, tenant_id: str, run_id: str, run_name: str, quantities: Mapping[str, float], ttl_seconds: float
    ) -> str:
        """Holds ``quantities`` (meter to amount) of the tenant's plan for a run about to start.

        All or nothing, and idempotent: the reservation's ID derives from the run ID, so a
        retry (also gRPC's own, on UNAVAILABLE) returns the reservation the first call made.

        Args:
            tenant_id: The tenant.
            run_id: The run's ID.
            run_name: The run's resource name, the subject of the usage it settles.
            quantities: What the run may spend at most, e.g. ``{"agent_runs": 1,
                "model_output_tokens": 2560}``.
            ttl_seconds: How long the hold lasts unless settled or released first: the
                run's deadline and a margin; billing takes 1 to 86,400, whole seconds up.

        Returns:
            The reservation's name, ``tenants/{tenant}/reservations/run-{run_id}``.

        Raises:
            ResourceExhausted: ``QUOTA_EXCEEDED``, naming the first meter short and its limit.
            Unavailable: ``BILLING_UNAVAILABLE``; billing could not answer (runs fail closed).
        """
        request = billing_pb.CreateReservationRequest(
            parent=TENANT.format(tenant_id),
            reservation_id=reservation_id(run_id),
            reservation=billing_res.Reservation(
                quantities=dict(quantities),
                ttl=duration_pb2.Duration(seconds=max(1, math.ceil(ttl_seconds))),
                subject=run_name,
            ),
        )
        try:
            answer = await self._billing.CreateReservation(request, timeout=self._clients.timeout)
        except grpc.aio.AioRpcError as error:
            failure = _quota_failure(error) if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else None
            if failure is not None and failure.violations:
                first = failure.violations[0]
                raise errors.quota_exceeded(request.parent, first.quota_metric, first.quota_value) from None
            log.warning("reservation for %s failed: %s", run_name, error.code())
            raise errors.billing_unavailable() from None
        return answer.name

    async def settle(
        self, tenant_id: str, run_id: str, run_name: str, usage: Sequence[UsageEventRow]
    ) -> bool:
        """Settles a run's reservation with the usage events the run recorded, once.

        Billing records the events (deduplicated by ``source`` and ``id``, so events the
        usage outbox delivers as well count once) and closes the reservation in one
        transaction; a retry records nothing more. When billing has no hold for the run
        (released, or never made), the usage outbox meters it all the same.

        Args:
            tenant_id: The tenant.
            run_id: The ID the reservation derives from (:func:`reservation_id`).
            run_name: The run's name, for logs.
            usage: The usage events (:mod:`services.agent.metering`).

        Returns:
            Whether the reservation holds nothing now; on False it is freed when it expires.
        """
        name = _RESERVATION.format(tenant_id, reservation_id(run_id))
        request = billing_pb.SettleReservationRequest(name=name, usage_events=usage_messages(usage))
        try:
            await self._billing.SettleReservation(request, timeout=self._clients.timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return True
            log.error("reservation of %s not settled: %s %s", run_name, error.code(), error.details())
            return False
        return True

    async def release(self, tenant_id: str, run_id: str) -> bool:
        """Frees a run's reservation without usage, for a run that spent nothing; idempotent.

        Returns:
            Whether the reservation holds nothing now (released, settled, or never made);
            on False it is freed when it expires.
        """
        name = _RESERVATION.format(tenant_id, reservation_id(run_id))
        try:
            await self._billing.ReleaseReservation(
                billing_pb.ReleaseReservationRequest(name=name), timeout=self._clients.timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return True
            log.warning("reservation %s not released: %s", name, error.code())
            return False
        return True
