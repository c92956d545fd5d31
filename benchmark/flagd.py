"""flagd-compatible evaluation: RPC latency, in-process cost, change propagation to providers.

On the SQLite stack (real processes, Envoy in front), with the bench tenant's token:

- **RPC evaluation latency**, one call at a time from this process, p50/p99: OFREP
  (``POST /ofrep/v1/evaluate/flags/{key}``) through Envoy over keep-alive HTTP/1.1;
  the flagd provider in RPC mode through Envoy (OpenFeature ``get_boolean_value``,
  ``flagd.evaluation.v2`` as native gRPC); ``EvaluateFlag`` direct over mTLS.
- **In-process evaluation**, per call: the OpenFeature client on the flagd provider in
  in-process mode (synced from the flag service through Envoy) against
  ``openfeature-flagd-core``'s ``FlagdCore`` alone, loaded with the same document
  (``FetchAllFlags``), the same flags (static, string rules, ``sem_ver``,
  ``fractional``) and contexts, in alternating rounds of this process, which runs alone
  on the measured core meanwhile. The ratio's goal is the issue's: at most 1.2. A
  context row times the provider's ``resolve_*_details`` called without the SDK, which
  tells the SDK's share (hooks, four context merges, hook contexts, details) from the
  provider's; another times the same client calls on a provider that answers a constant
  (no hooks, no evaluation): the SDK's own cost per call, which no provider can go below.
- **Change propagation**, p50/p99: from ``UpdateFlag``'s reply to a connected
  provider's ``PROVIDER_CONFIGURATION_CHANGED`` event for the flag, then a check that
  it evaluates the new variant: the RPC-mode provider (event stream), the tenant's
  in-process provider (sync stream, both through Envoy) and the mesh's own in-process
  provider (the agent's certificate, every tenant's flags, direct over mTLS: what the
  agent service runs). Changes start at random moments, 0-200 ms apart.

``python -m benchmark.flagd`` runs this group alone (on a SQLite stack of its own).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf import field_mask_pb2, struct_pb2
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from benchmark.harness import MEASURED_CORE, OTHER_CORE, Goal, Row, Throughput, percentile, pin, render_table
from benchmark.mesh import FLAG, TENANT, Bench, MeshUnderTest, Settings
from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.agent.flags import flag_key
from services.kit import mtls

#: Sequential calls timed per RPC path.
RPC_CALLS = 2000
#: Evaluations per round of the in-process comparison, and rounds (alternating the two sides).
ROUND_CALLS = 5000
ROUNDS = 11
#: A change not seen after this long counts as this long (and fails the goal).
GIVE_UP_SECONDS = 5.0
_FLAG_KEY = FLAG.rsplit("/", 1)[1]

#: The flags of the in-process comparison: flag ID -> (type, variants, default variant, targeting).
FLAGS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any] | None]] = {
    "bench-static": ("boolean", {"on": True, "off": False}, "on", None),
    "bench-greeting": (
        "string",
        {"staff": "Hi colleague", "beta": "Hi tester", "plain": "Hello"},
        "plain",
        {
            "if": [
                {"ends_with": [{"var": "email"}, "@acme.example"]},
                "staff",
                {"starts_with": [{"var": "email"}, "beta-"]},
                "beta",
                None,
            ]
        },
    ),
    "bench-page-size": (
        "integer",
        {"large": 100, "small": 10},
        "small",
        {"if": [{"sem_ver": [{"var": "app_version"}, ">=", "2.0.0"]}, "large", "small"]},
    ),
    "bench-rollout": ("string", {"a": "A", "b": "B"}, "a", {"fractional": [["a", 50], ["b", 50]]}),
}
_DEFAULTS: dict[str, Any] = {"boolean": False, "string": "", "integer": 0}
_CONTEXTS = [
    EvaluationContext(f"user-{n}", {"email": email, "app_version": version})
    for n, (email, version) in enumerate(
        [("ann@acme.example", "2.1.0"), ("beta-bob@example.com", "1.9.3"), ("cy@example.com", "3.0.0")] * 4
    )
]


def _value(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    if isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, str):
        message.string_value = value
    else:
        message.number_value = value
    return message


class _Constant(AbstractProvider):
    """A provider that answers every flag with the caller's default, evaluating nothing."""

    def get_metadata(self) -> Metadata:
        """Returns the provider's name."""
        return Metadata(name="constant")

    def _answer(self, flag_key: str, default_value: Any, evaluation_context: Any = None) -> Any:
        return FlagResolutionDetails(default_value, variant="default", reason=Reason.STATIC)

    resolve_boolean_details = resolve_string_details = resolve_integer_details = _answer
    resolve_float_details = resolve_object_details = _answer


@dataclass
class _Watch:
    """A provider's client, the flag key it knows the bench flag by, and when it last reported a change."""

    client: OpenFeatureClient
    key: str
    seen: threading.Event = field(default_factory=threading.Event)
    at: float = 0.0

    def handler(self, details: EventDetails) -> None:
        if self.key in (details.flags_changed or ()) and not self.seen.is_set():
            self.at = time.perf_counter()
            self.seen.set()


class FlagdFigures:
    """RPC and in-process evaluation and change propagation to OpenFeature providers.

    Args:
        mesh: The stack measured (the bench's SQLite one).
        settings: How many changes are timed.
    """

    def __init__(self, mesh: MeshUnderTest, settings: Settings) -> None:
        self._mesh = mesh
        self._settings = settings
        self._providers: list[FlagdProvider] = []

    @classmethod
    def of(cls, bench: Bench) -> FlagdFigures:
        """The group on the bench's SQLite stack (an entry of ``benchmark.__main__.GROUPS``)."""
        return cls(bench.sqlite, bench.settings)

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: these figures are latencies and per-call times, measured in :meth:`rows`."""
        return []

    # -- setup -------------------------------------------------------------------------------------

    def _gateway(self) -> tuple[str, int]:
        parts = urlsplit(self._mesh.config.gateway_url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def _tenant_credentials(self) -> grpc.ChannelCredentials:
        """Plaintext to the gateway's port with the tenant's token, as a tenant's provider connects."""
        return grpc.composite_channel_credentials(
            grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
            grpc.access_token_call_credentials(self._mesh.token),
        )

    def _provider(
        self, name: str, resolver: ResolverType, *, mesh_identity: bool = False
    ) -> OpenFeatureClient:
        """Binds a flagd provider to domain ``name`` and waits for it to be ready."""
        if mesh_identity:  # what the agent service runs: its certificate, every tenant's flags
            files = mtls.TlsFiles.of(self._mesh.config.tls_dir, "agent")
            host, port = "127.0.0.1", self._mesh.config.service_ports["flag"]
            credentials, authority = mtls.channel_credentials(files), "flag"
        else:
            (host, port), credentials, authority = self._gateway(), self._tenant_credentials(), None
        provider = FlagdProvider(
            resolver_type=resolver,
            host=host,
            port=port,
            channel_credentials=credentials,
            default_authority=authority,
            deadline_ms=10_000,
            cache=CacheType.DISABLED,
            sync_metadata_disabled=mesh_identity,
        )
        api.set_provider_and_wait(provider, name)
        self._providers.append(provider)
        return api.get_client(name)

    def _create_flags(self) -> None:
        with self._mesh.channel("flag") as channel:
            stub = pb_grpc.FlagServiceStub(channel)
            for key, (_kind, variants, default, targeting) in FLAGS.items():
                flag = res.Flag(
                    state=res.Flag.STATE_ENABLED,
                    variants={name: _value(value) for name, value in variants.items()},
                    default_variant=default,
                )
                if targeting is not None:
                    flag.targeting.update(targeting)
                stub.CreateFlag(
                    pb.CreateFlagRequest(parent=f"tenants/{TENANT}", flag_id=key, flag=flag),
                    metadata=self._mesh.metadata,
                    timeout=10,
                )

    def _document(self) -> str:
        """The tenant's flag document as its in-process provider receives it (``FetchAllFlags``)."""
        host, port = self._gateway()
        with grpc.secure_channel(f"{host}:{port}", self._tenant_credentials()) as channel:
            answer = sync_pb2_grpc.FlagSyncServiceStub(channel).FetchAllFlags(
                sync_pb2.FetchAllFlagsRequest(), timeout=10
            )
        return answer.flag_configuration

    # -- RPC latency -------------------------------------------------------------------------------

    @staticmethod
    def _latencies(call: Callable[[], None]) -> list[float]:
        for _ in range(100):  # connections, caches
            call()
        found = []
        for _ in range(RPC_CALLS):
            began = time.perf_counter()
            call()
            found.append(time.perf_counter() - began)
        return found

    def _rpc_rows(self, rpc_client: OpenFeatureClient) -> list[Row]:
        context = {"context": {"targetingKey": "user-1", "plan": "pro"}}
        headers = {"authorization": f"Bearer {self._mesh.token}"}
        found: dict[str, list[float]] = {}
        with httpx.Client(base_url=self._mesh.config.gateway_url, headers=headers, timeout=10) as http:

            def ofrep() -> None:
                http.post(f"/ofrep/v1/evaluate/flags/{_FLAG_KEY}", json=context).raise_for_status()

            found["OFREP via Envoy"] = self._latencies(ofrep)
        subject = EvaluationContext("user-1", {"plan": "pro"})

        def provider() -> None:
            if rpc_client.get_boolean_details(_FLAG_KEY, False, subject).error_code is not None:
                raise RuntimeError("the RPC provider failed to evaluate")

        found["flagd RPC provider via Envoy"] = self._latencies(provider)
        with self._mesh.channel("flag") as channel:
            stub = pb_grpc.FlagServiceStub(channel)
            request = pb.EvaluateFlagRequest(name=FLAG)
            request.context.update(context["context"])
            metadata = self._mesh.metadata

            def direct() -> None:
                stub.EvaluateFlag(request, metadata=metadata, timeout=10)

            found["EvaluateFlag direct gRPC"] = self._latencies(direct)
        return [
            Row(
                f"flag evaluation, {path}, SQLite, one at a time",
                percentile(values, 0.99) * 1e3,
                "ms",
                shown=f"p50 {percentile(values, 0.5) * 1e3:.2f}, p99 {percentile(values, 0.99) * 1e3:.2f} ms",
            )
            for path, values in found.items()
        ]

    # -- in-process evaluation ---------------------------------------------------------------------

    def _in_process_rows(self, client: OpenFeatureClient, provider: FlagdProvider) -> list[Row]:
        core = FlagdCore()
        core.set_flags(self._document())
        calls = [(key, kind) for key, (kind, *_rest) in FLAGS.items()]
        plan = [(calls[n % len(calls)], _CONTEXTS[n % len(_CONTEXTS)]) for n in range(ROUND_CALLS)]
        sdk: dict[str, Callable[..., Any]] = {
            "boolean": client.get_boolean_value,
            "string": client.get_string_value,
            "integer": client.get_integer_value,
        }
        own: dict[str, Callable[..., Any]] = {
            "boolean": core.resolve_boolean_value,
            "string": core.resolve_string_value,
            "integer": core.resolve_integer_value,
        }
        # The provider's own resolve methods, without the SDK's hooks, context merging and details.
        bare: dict[str, Callable[..., Any]] = {
            "boolean": provider.resolve_boolean_details,
            "string": provider.resolve_string_details,
            "integer": provider.resolve_integer_details,
        }
        # The SDK alone: the same client calls on a provider that evaluates nothing.
        api.set_provider(_Constant(), "bench-sdk-floor")
        floor_client = api.get_client("bench-sdk-floor")
        floor: dict[str, Callable[..., Any]] = {
            "boolean": floor_client.get_boolean_value,
            "string": floor_client.get_string_value,
            "integer": floor_client.get_integer_value,
        }
        for (key, kind), context in plan[: len(calls) * len(_CONTEXTS)]:  # both sides agree
            expected = own[kind](key, _DEFAULTS[kind], context).value
            if sdk[kind](key, _DEFAULTS[kind], context) != expected:
                raise RuntimeError(f"the in-process provider and FlagdCore disagree on {key}")

        def round_of(resolvers: dict[str, Callable[..., Any]]) -> float:
            began = time.perf_counter()
            for (key, kind), context in plan:
                resolvers[kind](key, _DEFAULTS[kind], context)
            return (time.perf_counter() - began) / len(plan)

        times: dict[str, list[float]] = {"sdk": [], "bare": [], "core": [], "floor": []}
        sides = {"sdk": sdk, "bare": bare, "core": own, "floor": floor}
        pin(os.getpid(), MEASURED_CORE)
        try:
            for resolvers in sides.values():  # warm-up
                round_of(resolvers)
            for _ in range(ROUNDS):
                for side, resolvers in sides.items():
                    times[side].append(round_of(resolvers))
        finally:
            pin(os.getpid(), OTHER_CORE)
        sdk_us, bare_us, core_us, floor_us = (statistics.median(times[side]) * 1e6 for side in sides)
        return [
            Row(
                "in-process evaluation, OpenFeature client + flagd provider ÷ FlagdCore alone, per call",
                sdk_us,
                "µs",
                baseline=core_us,
                goal=Goal("<= 1.2", max_ratio=1.2),
                shown=f"{sdk_us:.1f} µs",
            ),
            Row(
                "in-process evaluation, flagd provider's resolve_* without the SDK ÷ FlagdCore alone",
                bare_us,
                "µs",
                baseline=core_us,
                shown=f"{bare_us:.1f} µs",
            ),
            Row(
                "in-process evaluation, the OpenFeature client on a constant provider ÷ FlagdCore alone",
                floor_us,
                "µs",
                baseline=core_us,
                shown=f"{floor_us:.1f} µs",
            ),
        ]

    # -- change propagation ------------------------------------------------------------------------

    def _propagation_rows(self, watches: dict[str, _Watch]) -> list[Row]:
        rng = random.Random(11)
        mask = field_mask_pb2.FieldMask(paths=["default_variant"])
        found: dict[str, list[float]] = {name: [] for name in watches}
        for watch in watches.values():
            watch.client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, watch.handler)
        try:
            with self._mesh.channel("flag") as channel:
                stub = pb_grpc.FlagServiceStub(channel)
                for change in range(self._settings.flag_changes):
                    variant = "off" if change % 2 == 0 else "on"
                    time.sleep(rng.uniform(0.0, 0.2))
                    for watch in watches.values():
                        watch.seen.clear()
                    stub.UpdateFlag(
                        pb.UpdateFlagRequest(
                            flag=res.Flag(name=FLAG, default_variant=variant), update_mask=mask
                        ),
                        metadata=self._mesh.metadata,
                        timeout=10,
                    )
                    changed = time.perf_counter()
                    for name, watch in watches.items():
                        seen = watch.seen.wait(GIVE_UP_SECONDS)
                        found[name].append(
                            min(watch.at - changed, GIVE_UP_SECONDS) if seen else GIVE_UP_SECONDS
                        )
                        if watch.client.get_boolean_details(watch.key, variant == "on").variant != variant:
                            raise RuntimeError(f"{name} was told of the change but serves the old variant")
        finally:
            for watch in watches.values():
                watch.client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, watch.handler)
        rows = []
        for name, values in found.items():
            p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
            rows.append(
                Row(
                    f"flag change -> {name}, SQLite, {len(values)}×",
                    p99,
                    "ms",
                    goal=Goal("p99 < 1 s", max_value=1000),
                    shown=f"p50 {p50:.1f}, p99 {p99:.1f} ms",
                )
            )
        return rows

    def rows(self) -> Sequence[Row]:
        """Creates the comparison's flags, connects the providers, measures; returns the rows."""
        self._create_flags()
        try:
            rpc = self._provider("bench-flagd-rpc", ResolverType.RPC)
            in_process = self._provider("bench-flagd-in-process", ResolverType.IN_PROCESS)
            mesh = self._provider("bench-flagd-mesh", ResolverType.IN_PROCESS, mesh_identity=True)
            rows = self._rpc_rows(rpc)
            rows += self._in_process_rows(in_process, self._providers[1])
            watches = {
                "RPC provider (event stream, via Envoy)": _Watch(rpc, _FLAG_KEY),
                "in-process provider (sync, via Envoy)": _Watch(in_process, _FLAG_KEY),
                "agent's in-process provider (all tenants, mTLS)": _Watch(mesh, flag_key(TENANT, _FLAG_KEY)),
            }
            rows += self._propagation_rows(watches)
        finally:
            for provider in self._providers:
                provider.shutdown()
        return rows


def main() -> None:
    """Starts a SQLite stack, measures this group alone and prints its rows."""
    settings = Settings()
    pin(os.getpid(), OTHER_CORE)
    with tempfile.TemporaryDirectory(prefix="orchestrall-bench-flagd-") as tmp:
        mesh = MeshUnderTest("sqlite", Path(tmp) / "sqlite")
        try:
            print("starting the sqlite stack", file=sys.stderr, flush=True)
            mesh.start()
            rows = FlagdFigures(mesh, settings).rows()
        finally:
            mesh.stop()
    print(
        render_table(
            [
                ("goals", [r for r in rows if r.goal is not None]),
                ("context", [r for r in rows if r.goal is None]),
            ]
        )
    )


if __name__ == "__main__":
    main()
