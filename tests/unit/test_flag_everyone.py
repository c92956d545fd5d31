"""Every tenant's flags in one document: a namespaced flag evaluates as under its own key."""

from __future__ import annotations

import datetime as dt
from typing import Any

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from services.flag import everyone
from services.flag.evaluator import FlagSetEvaluator
from services.flag.models import FlagRow

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPLIT = {"a": "A", "b": "B", "c": "C"}
#: Rules that read the flag's key, or that do not, and evaluate the same under a namespaced key.
RULES: dict[str, dict[str, Any]] = {
    "seeded-rollout": {"fractional": [{"var": "email"}, ["a", 50], ["b", 50]]},
    "self-aware": {"if": [{"==": [{"var": "$flagd.flagKey"}, "self-aware"]}, "a", "b"]},
    "self-aware-default": {
        "if": [{"==": [{"var": ["$flagd.flagKey", "x"]}, "self-aware-default"]}, "a", "b"]
    },
    "plans": {"if": [{"==": [{"var": "plan"}, "pro"]}, "a", "c"]},
}
#: flagd's shorthand rollout, bucketed by ``[flag key, targeting key]``: by the namespaced key here.
SHORTHAND = {"fractional": [["a", 34], ["b", 33], ["c", 33]]}


def _rows(tenant: str) -> list[FlagRow]:
    return [
        FlagRow(tenant, key, "ENABLED", SPLIT, "c", rule, "", NOW, NOW)
        for key, rule in {**RULES, "rollout": SHORTHAND}.items()
    ]


def _core(tenants: dict[str, FlagSetEvaluator]) -> FlagdCore:
    core = FlagdCore()
    core.set_flags(everyone.document(tenants))
    return core


SUBJECTS = [f"user-{n}" for n in range(200)]


def test_namespaced_flags_evaluate_as_the_tenants_own_for_every_subject() -> None:
    tenant = FlagSetEvaluator(_rows("acme"))
    core = _core({"acme": tenant, "other": FlagSetEvaluator(_rows("other"))})
    for key in RULES:
        for subject in SUBJECTS:
            context = {"plan": "pro" if subject.endswith("7") else "free", "email": f"{subject}@example.com"}
            own = tenant.evaluate(key, {"targetingKey": subject, **context})
            mesh = core.resolve_string_value(f"acme/{key}", "", EvaluationContext(subject, context))
            assert (mesh.variant, mesh.reason) == (own.variant, own.reason), (key, subject)
    assert tenant.evaluate("self-aware", {}).variant == "a"


def test_a_shorthand_rollout_keeps_its_weights_and_buckets_by_the_namespaced_key() -> None:
    tenant = FlagSetEvaluator(_rows("acme"))
    core = _core({"acme": tenant})
    served = [
        core.resolve_string_value("acme/rollout", "", EvaluationContext(s, {})).variant for s in SUBJECTS
    ]
    again = [
        core.resolve_string_value("acme/rollout", "", EvaluationContext(s, {})).variant for s in SUBJECTS
    ]
    assert served == again
    assert all(served.count(variant) > 40 for variant in SPLIT), "every variant keeps its third"
    namespaced = FlagSetEvaluator(
        [FlagRow("acme", "acme/rollout", "ENABLED", SPLIT, "c", SHORTHAND, "", NOW, NOW)]
    )
    assert served == [namespaced.evaluate("acme/rollout", {"targetingKey": s}).variant for s in SUBJECTS]


def test_the_document_keys_every_tenants_flags_by_tenant_and_keeps_the_definitions() -> None:
    acme, other = FlagSetEvaluator(_rows("acme")), FlagSetEvaluator(_rows("other")[:1])
    flags = everyone.document({"other": other, "acme": acme})["flags"]
    assert sorted(flags) == sorted(
        [f"acme/{key}" for key in RULES] + ["acme/rollout", "other/seeded-rollout"]
    )
    assert flags["acme/seeded-rollout"] == acme.definitions["seeded-rollout"]
    assert flags["acme/self-aware"]["targeting"] == {"if": [{"==": ["self-aware", "self-aware"]}, "a", "b"]}
    assert acme.definitions["self-aware"]["targeting"] == RULES["self-aware"], (
        "the tenant's own stay as stored"
    )
