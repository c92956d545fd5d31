"""The contracts: gen/ is fresh, buf lint is clean, every RPC has an access rule the kit understands."""

from __future__ import annotations

import filecmp
from pathlib import Path

from google.api import annotations_pb2 as http_annotations

from services.kit import protogen
from services.kit.auth import MethodRule, method_rules
from services.kit.contracts import (
    adopted_descriptors_of,
    adopted_permissions,
    all_descriptors,
    descriptors_of,
)
from services.kit.policy import SERVICE_CALLS
from services.kit.roles import ROLE_ORDER, ROLE_PERMISSIONS, may_grant, permissions_of

ROOT = Path(__file__).resolve().parents[2]


def _service_descriptors():
    for descriptors in all_descriptors().values():
        yield from descriptors


def _differences(left: Path, right: Path) -> list[str]:
    compared = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in {left.name}: {n}" for n in compared.left_only]
    found += [f"only in fresh: {n}" for n in compared.right_only]
    found += [f"differs: {n}" for n in compared.diff_files]
    for sub in compared.common_dirs:
        found += _differences(left / sub, right / sub)
    return found


def test_gen_is_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "gen"
    protogen.generate(fresh)
    assert _differences(ROOT / "gen", fresh) == [], "gen/ is stale: run `make proto`"


def test_buf_lint_is_clean() -> None:
    protogen.lint()


def test_every_rpc_is_external_with_http_or_internal_by_policy() -> None:
    rules = method_rules(_service_descriptors())
    assert len(rules) >= 25
    internal = {method for method, rule in rules.items() if rule.internal}
    assert internal == {
        "/orchestrall.billing.v1.BillingService/IngestUsageEvents",
        "/orchestrall.billing.v1.BillingService/CheckEntitlement",
        "/orchestrall.billing.v1.BillingService/CreateReservation",
        "/orchestrall.billing.v1.BillingService/SettleReservation",
        "/orchestrall.billing.v1.BillingService/ReleaseReservation",
        "/orchestrall.billing.v1.BillingService/CreatePlan",
        "/orchestrall.billing.v1.BillingService/UpdatePlan",
        "/orchestrall.billing.v1.BillingService/ArchivePlan",
        "/orchestrall.billing.v1.BillingService/FinalizeInvoice",
        "/orchestrall.billing.v1.BillingService/MarkInvoicePaid",
        "/orchestrall.billing.v1.BillingService/VoidInvoice",
        "/orchestrall.auth.v1.AuthService/IngestAuditEvents",
        "/orchestrall.auth.v1.AuthService/RotateSigningKey",
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    }
    anonymous = {method.rsplit("/", 1)[1] for method, rule in rules.items() if rule.anonymous}
    assert anonymous == {"CreateTenant", "IssueToken", "GetJwks", "GetOpenIdConfiguration", "DeliverWebhook"}
    policy_methods = set().union(*SERVICE_CALLS.values())
    assert policy_methods <= set(rules), "the policy table names RPCs that do not exist"


def test_flagds_protocols_are_served_by_flag_with_a_token_and_no_rest_binding() -> None:
    flag = descriptors_of("flag")
    assert {d.full_name for d in adopted_descriptors_of("flag")} == {
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "flagd.sync.v1.FlagSyncService",
    }
    rules = method_rules(flag)
    adopted = adopted_permissions()
    assert set(adopted) <= set(rules) and len(adopted) == 16
    for method in adopted:
        rule = rules[method]
        assert not rule.anonymous and not rule.internal and not rule.audited, method
        assert rule.permission in permissions_of(["viewer"]), method
    for name in ("auth", "agent", "workflow"):
        assert adopted_descriptors_of(name) == []


def test_envoys_rate_limit_protocol_is_served_by_billing_to_the_gateway_alone() -> None:
    assert [d.full_name for d in adopted_descriptors_of("billing")] == [
        "envoy.service.ratelimit.v3.RateLimitService"
    ]
    path = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    assert method_rules(descriptors_of("billing"))[path] == MethodRule(
        anonymous=False, internal=True, permission="", audited=False
    )
    assert [caller for caller, methods in SERVICE_CALLS.items() if path in methods] == ["gateway"]
    assert SERVICE_CALLS["gateway"] == {path}


#: Paths a protocol owned elsewhere fixes: OFREP's (open-feature/protocol), served by OfrepService only.
FOREIGN_PATHS = {"orchestrall.flag.v1.OfrepService": "/ofrep/v1/"}


def test_external_rpcs_have_http_paths_under_v1_or_well_known() -> None:
    for service in _service_descriptors():
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(http_annotations.http):
                continue
            rule = options.Extensions[http_annotations.http]
            path = getattr(rule, rule.WhichOneof("pattern"))
            foreign = FOREIGN_PATHS.get(service.full_name)
            allowed = (foreign,) if foreign else ("/v1/", "/.well-known/")
            assert path.startswith(allowed), f"{method.full_name}: {path}"


def test_every_external_rpc_declares_a_permission_some_role_grants() -> None:
    rules = method_rules(_service_descriptors())
    missing = [m for m, r in rules.items() if not r.anonymous and not r.internal and not r.permission]
    assert missing == [], "RPCs without (orchestrall.api.v1.access).permission"
    declared = {r.permission for r in rules.values() if r.permission}
    assert declared - permissions_of(["owner"]) == set(), "permissions no role grants"
    assert set().union(*ROLE_PERMISSIONS.values()) - declared == set(), "roles grant permissions no RPC uses"
    for service, descriptors in all_descriptors().items():  # a service's permissions are its own
        for method, rule in method_rules(descriptors).items():
            assert not rule.permission or rule.permission.startswith(f"{service}."), method


def test_roles_are_nested_and_grants_never_escalate() -> None:
    for lower, higher in zip(ROLE_ORDER, ROLE_ORDER[1:], strict=False):
        assert ROLE_PERMISSIONS[lower] <= ROLE_PERMISSIONS[higher]
    assert "agent.agents.create" not in permissions_of(["viewer"])
    assert "auth.apiKeys.create" not in permissions_of(["developer"])
    assert may_grant(["admin"], ["developer", "admin"]) and not may_grant(["admin"], ["owner"])
    assert not may_grant(["viewer"], ["developer"]) and not may_grant([], ["viewer"])


def test_mutating_rpcs_are_audited() -> None:
    rules = method_rules(_service_descriptors())
    audited = {m.rsplit("/", 1)[1] for m, r in rules.items() if r.audited}
    assert {"CreateTenant", "IssueToken", "CreateAgent", "DeleteAgent", "CreateRun", "UpdateFlag"} <= audited
    assert not {"GetAgent", "ListRuns", "EvaluateFlag", "GetJwks", "CheckEntitlement"} & audited


def _messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        if not nested.GetOptions().map_entry:
            yield from _messages(nested)


def test_every_string_bytes_repeated_and_map_field_has_a_bound() -> None:
    """Each such field carries a protovalidate size rule, so nothing a client sends is unbounded."""
    from buf.validate import validate_pb2
    from google.protobuf.descriptor import FieldDescriptor

    unbounded = []
    for module in {
        d.file for ds in all_descriptors().values() for d in ds if d.file.package.startswith("orchestrall.")
    }:
        # Adopted protocols (flagd's) are bounded by their handlers and the transport, not by rules.
        # The services' own files and the resources they import (not orchestrall.api, which holds options).
        files = [
            module,
            *(
                f
                for f in module.dependencies
                if f.package.startswith("orchestrall.") and ".api." not in f.package + "."
            ),
        ]
        for file in files:
            for message in file.message_types_by_name.values():
                for descriptor in _messages(message):
                    for field in descriptor.fields:
                        rules = field.GetOptions().Extensions[validate_pb2.field]
                        if field.message_type is not None and field.message_type.GetOptions().map_entry:
                            bounded = rules.map.HasField("max_pairs")
                        elif field.is_repeated:
                            bounded = rules.repeated.HasField("max_items")
                        elif field.type == FieldDescriptor.TYPE_STRING:
                            bounded = rules.string.HasField("max_len")
                        elif field.type == FieldDescriptor.TYPE_BYTES:
                            bounded = rules.bytes.HasField("max_len")
                        else:
                            continue
                        if not bounded:
                            unbounded.append(field.full_name)
    assert unbounded == []
