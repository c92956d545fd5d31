"""The contracts: gen/ is fresh, buf lint is clean, every RPC has an access rule the kit understands."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pytest
from google.api import annotations_pb2 as http_annotations

from services.kit import protogen
from services.kit.auth import method_rules
from services.kit.config import SERVICES
from services.kit.policy import SERVICE_CALLS

ROOT = Path(__file__).resolve().parents[2]


def _service_descriptors():
    for name in SERVICES:
        module = __import__(f"orchestrall.{name}.v1.{name}_service_pb2", fromlist=["DESCRIPTOR"])
        yield from module.DESCRIPTOR.services_by_name.values()


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
    if shutil.which("buf") is None:
        pytest.fail("buf is not installed (buf-bin)")
    protogen.lint()


def test_every_rpc_is_external_with_http_or_internal_by_policy() -> None:
    rules = method_rules(_service_descriptors())
    assert len(rules) >= 25
    internal = {method for method, rule in rules.items() if rule.internal}
    assert internal == {
        "/orchestrall.billing.v1.BillingService/IngestUsageEvents",
        "/orchestrall.billing.v1.BillingService/CheckEntitlement",
    }
    anonymous = {method.rsplit("/", 1)[1] for method, rule in rules.items() if rule.anonymous}
    assert anonymous == {"CreateTenant", "IssueToken", "GetJwks", "GetOpenIdConfiguration"}
    policy_methods = set().union(*SERVICE_CALLS.values())
    assert policy_methods <= set(rules), "the policy table names RPCs that do not exist"


def test_external_rpcs_have_http_paths_under_v1_or_well_known() -> None:
    for service in _service_descriptors():
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(http_annotations.http):
                continue
            rule = options.Extensions[http_annotations.http]
            path = getattr(rule, rule.WhichOneof("pattern"))
            assert path.startswith(("/v1/", "/.well-known/")), f"{method.full_name}: {path}"
