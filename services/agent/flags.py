"""The agent service's own flags, read through OpenFeature from the flag service's sync stream.

The agent reads two flags of a run's tenant, ``agent-tools`` (whether its tools are
offered) and ``agent-model-route`` (the route of its agents that name no model),
with the OpenFeature SDK and flagd's provider in in-process mode: the provider
holds one ``flagd.sync.v1.FlagSyncService/SyncFlags`` stream to the flag service,
over the mesh's mutual TLS (the agent's own certificate, passed to the provider as
its channel credentials), and evaluates with flagd's evaluator in memory. A run
costs no call to the flag service and no I/O: :meth:`AgentFlags.tools_enabled` and
:meth:`AgentFlags.model_route` are plain function calls.

One stream carries every tenant's flags, keyed ``<tenant>/<flag>``: the agent's
identity syncs with no token, and the flag service then sends the whole mesh's
flags in one document (:mod:`services.flag.everyone` says why one stream with
namespaced keys, rather than a provider per tenant). A change made with
``UpdateFlag`` is pushed down the stream as soon as the flag service installs it.

OpenFeature semantics throughout (specification section 1.4.10): a missing flag, an
evaluation error, a value of another type, or a provider that has not synced yet
(the flag service is down when the agent starts) gives the caller's default, tools
enabled and the deployment's default route; the agent starts and serves all the
same, and the provider keeps reconnecting in its own threads.

The provider's own counts are not sent to the flag service's usage insight: these
evaluations do not show in a flag's evaluation counts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.provider.no_op_provider import NoOpProvider

from services.kit.clients import INITIAL_RECONNECT_BACKOFF_MS, MAX_RECONNECT_BACKOFF_MS
from services.kit.config import MeshSettings
from services.kit.mtls import TlsFiles, channel_credentials
from services.kit.tracing import tracing_enabled

log = logging.getLogger(__name__)

TOOLS_FLAG = "agent-tools"
#: The tenant's string flag naming the model route of its agents that name no model.
MODEL_ROUTE_FLAG = "agent-model-route"
#: How long start-up waits for the first sync before serving with defaults, in milliseconds.
FIRST_SYNC_MS = 500


def flag_key(tenant_id: str, flag: str) -> str:
    """Returns the key of a tenant's flag in the mesh's sync stream, ``<tenant>/<flag>``."""
    return f"{tenant_id}/{flag}"


class AgentFlags:
    """The agent's OpenFeature client, on a flagd in-process provider syncing every tenant's flags.

    Args:
        settings: The flag service's address and this workload's TLS folder.
        workload: The certificate presented to the flag service (its identity is granted
            ``SyncFlags`` in :mod:`services.kit.policy`).
        domain: The OpenFeature domain the provider is bound to; one per instance, since
            binding a domain again would shut down the provider bound before.
    """

    def __init__(self, settings: MeshSettings, workload: str, domain: str) -> None:
        host, _, port = settings.address_of("flag").rpartition(":")
        self._domain = domain
        self._provider = FlagdProvider(
            resolver_type=ResolverType.IN_PROCESS,
            host=host,
            port=int(port),
            channel_credentials=channel_credentials(TlsFiles.of(settings.tls_dir, workload)),
            # The flag service's certificate names it `flag` (services.kit.mtls).
            default_authority="flag",
            deadline_ms=FIRST_SYNC_MS,
            retry_backoff_ms=INITIAL_RECONNECT_BACKOFF_MS,
            retry_backoff_max_ms=MAX_RECONNECT_BACKOFF_MS,
            cache=CacheType.DISABLED,
            # GetMetadata is deprecated in flagd and not granted to the agent: SyncFlags alone.
            sync_metadata_disabled=True,
        )
        self._client: OpenFeatureClient = api.get_client(domain)
        # Each evaluation is a feature_flag.evaluation event on the span it happens in (OpenTelemetry's
        # feature flag semantic conventions), so a run's trace shows the flags it read in-process. A
        # flag the tenant never set is the common case, not an exception: the event's error.type
        # (flag_not_found) says it, with no exception event beside it. Only when spans are exported
        # (decided once per process from its environment, as services.kit.tracing decides it): the
        # hook costs an evaluation about as much again as the SDK's own path, 30 µs on the bench
        # machine, even with no span to record on.
        if tracing_enabled():
            self._client.add_hooks([TracingHook(exclude_exceptions=True)])

    @property
    def client(self) -> OpenFeatureClient:
        """The OpenFeature client the flags are read with (its handlers see the provider's events)."""
        return self._client

    async def start(self) -> None:
        """Binds the provider, waiting up to :data:`FIRST_SYNC_MS` for the first sync; never fails.

        The wait is in a thread: the flag service may be served by this very event loop
        (tests, the in-process stack), and must go on answering meanwhile.
        """
        ready = threading.Event()

        def on_ready(_details: EventDetails) -> None:
            ready.set()

        await asyncio.to_thread(api.set_provider, self._provider, self._domain)
        # Bound first: a READY handler runs at once for a provider that is ready, the unbound
        # domain's no-op provider included.
        self._client.add_handler(ProviderEvent.PROVIDER_READY, on_ready)
        try:
            if not await asyncio.to_thread(ready.wait, FIRST_SYNC_MS / 1000):
                log.warning("no flags synced from the flag service yet: serving with the defaults")
        finally:
            self._client.remove_handler(ProviderEvent.PROVIDER_READY, on_ready)

    async def stop(self) -> None:
        """Unbinds and shuts down the provider (its stream and threads)."""
        await asyncio.to_thread(api.set_provider, NoOpProvider(), self._domain)

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def _context(tenant_id: str, agent_name: str) -> EvaluationContext:
        # What the flag service's own evaluations see: the subject and its tenant. A pure function of
        # its arguments (the SDK merges contexts into new ones, never into this), so kept per agent:
        # nothing to invalidate, the least recently used dropped past 1024 agents.
        return EvaluationContext(agent_name, {"agent": agent_name, "tenant": tenant_id})

    def tools_enabled(self, tenant_id: str, agent_name: str) -> bool:
        """Evaluates the tenant's ``agent-tools`` flag for an agent; default (absent, broken) enabled."""
        return self._client.get_boolean_value(
            flag_key(tenant_id, TOOLS_FLAG), True, self._context(tenant_id, agent_name)
        )

    def model_route(self, tenant_id: str, agent_name: str) -> str:
        """Evaluates the tenant's ``agent-model-route`` flag: the route of its agents that name no model.

        Whether the route exists is the caller's to check.

        Returns:
            The route's name, e.g. ``fast``; ``""`` (the deployment's default) when absent or broken.
        """
        return self._client.get_string_value(
            flag_key(tenant_id, MODEL_ROUTE_FLAG), "", self._context(tenant_id, agent_name)
        )
