"""Every tenant's flags in one flagd document, for the mesh's own in-process providers.

Orchestrall's services read their per-tenant flags (the agent's ``agent-tools``,
``agent-model-route``) with the OpenFeature flagd provider in in-process mode. A
tenant's provider syncs one tenant (the token's); a service serves every tenant,
so it syncs, on its own mesh identity (granted in :mod:`services.kit.policy`),
one stream whose document holds every tenant's flags under the key
``<tenant>/<flag>``. Tenant and flag IDs never contain ``/``, so the key names one
flag of one tenant, and the provider, which takes any string as a flag key,
evaluates ``<tenant>/agent-tools`` like any other.

Why one stream and namespaced keys rather than the alternatives flagd offers:

- one provider per tenant, each syncing its tenant's flag set by selector, costs
  a stream, a thread and an evaluator per tenant in every replica of every
  service, however few of them run anything; one stream costs one of each;
- one flag per name for all tenants, told apart by a targeting rule on
  ``tenant``, would merge every tenant's rules into one and let a tenant's edit
  change every other tenant's flag.

A namespaced key changes what a rule sees as ``$flagd.flagKey``. A rule that reads
it (``{"var": "$flagd.flagKey"}``) is rewritten here (:func:`namespaced`) to the
flag's own key, so it evaluates exactly as under that key. One thing cannot be
rewritten: a ``fractional`` rollout without a bucketing expression, which flagd
(``openfeature-flagd-core`` 2) buckets by the CBOR list ``[$flagd.flagKey,
targetingKey]``; a rule can only name a bucketing value that is not a list, so no
rewrite yields the same buckets. Such a rollout keeps its weights and puts each
subject in the same bucket every time, but by the namespaced key: which subjects
fall in which bucket differs from the tenant's own evaluations (a tenant who wants
the two to agree names the bucketing value, e.g. ``{"var": "targetingKey"}``).
"""

from __future__ import annotations

from typing import Any

from services.flag.evaluator import FlagSetEvaluator

_FLAG_KEY_VAR = "$flagd.flagKey"
#: Where a tenant's namespaced definitions are kept in its set's memo (flag IDs never contain ``/``).
_MEMO_KEY = "/namespaced"


def _rewritten(rule: Any, key: str) -> Any:
    """Returns JsonLogic ``rule`` with each ``{"var": "$flagd.flagKey"}`` replaced by ``key``."""
    if isinstance(rule, list):
        return [_rewritten(item, key) for item in rule]
    if not isinstance(rule, dict):
        return rule
    if len(rule) == 1:
        ((operator, args),) = rule.items()
        if operator == "var":
            name = args[0] if isinstance(args, list) and args else args
            if name == _FLAG_KEY_VAR:
                return key
    return {name: _rewritten(value, key) for name, value in rule.items()}


def namespaced(tenant: str, flags: FlagSetEvaluator) -> dict[str, dict[str, Any]]:
    """Returns a tenant's flag definitions keyed ``<tenant>/<flag>``, ``$flagd.flagKey`` spelled out.

    Kept in the set's memo: it is computed once per installed set and replaced with it.
    """
    found: dict[str, dict[str, Any]] | None = flags.memo.get(_MEMO_KEY)
    if found is None:
        found = {}
        for key, definition in flags.definitions.items():
            rewritten = dict(definition)
            if "targeting" in rewritten:
                rewritten["targeting"] = _rewritten(rewritten["targeting"], key)
            found[f"{tenant}/{key}"] = rewritten
        flags.memo[_MEMO_KEY] = found
    return found


def document(tenants: dict[str, FlagSetEvaluator]) -> dict[str, Any]:
    """Returns flagd's flag-definition document of every tenant's flags, keys ``<tenant>/<flag>``."""
    flags: dict[str, dict[str, Any]] = {}
    for tenant, evaluator in sorted(tenants.items()):
        flags.update(namespaced(tenant, evaluator))
    return {"flags": flags}
