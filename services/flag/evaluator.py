"""Flag definitions checked and evaluated by flagd's reference evaluator.

A tenant's stored flags are turned into a flagd document
(https://flagd.dev/reference/flag-definitions/) and loaded into one
``FlagdCore`` from ``openfeature-flagd-core`` (:class:`FlagSetEvaluator`), so
targeting, fractional rollouts and the custom operators behave exactly as in
flagd. A flag about to be written is checked alone, in a core of its own
(:func:`violations`). Outcomes are
reported in OpenFeature's terms (specification section 1.4, evaluation
details: value, variant, reason, error code).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode, OpenFeatureError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason

from services.flag import limits, schema
from services.flag.definitions import fields_of_row, to_definition
from services.flag.models import FlagRow, FlagState
from services.kit.errors import FieldViolation

log = logging.getLogger(__name__)

MAX_VARIANT_NAME = 200
#: The most violations of flagd's targeting schema one flag reports.
MAX_RULE_PROBLEMS = 5
#: Every stored flag is served whole in lists and evaluations: its values are bounded.
MAX_VARIANTS_BYTES = 64 * 1024
_STATES = frozenset(FlagState)
_DEFAULTS: dict[str, Any] = {"boolean": False, "string": "", "integer": 0, "float": 0.0, "object": {}}
#: The value types a caller may ask for (flagd's ``Resolve<Type>`` RPCs, OpenFeature's flag types).
KINDS = frozenset(_DEFAULTS)


@dataclass(frozen=True)
class Resolution:
    """The outcome of one evaluation.

    Attributes:
        value: The variant's JSON value; None when no variant was served.
        variant: The variant's name; empty with reason ``DISABLED`` or ``ERROR``.
        reason: OpenFeature reason (``STATIC``, ``DEFAULT``, ``TARGETING_MATCH``,
            ``DISABLED``, ``ERROR``).
        error_code: OpenFeature error code (``PARSE_ERROR``, ``GENERAL``...) when
            ``reason`` is ``ERROR``, else empty.
    """

    value: Any
    variant: str
    reason: str
    error_code: str = ""


def variant_kind(value: Any) -> str | None:
    """Return the flagd flag type of a variant value.

    Returns:
        ``boolean``, ``string``, ``float`` (any JSON number) or ``object``: the
        ``FlagdCore.resolve_<kind>_value`` method to use. None for null and arrays,
        which flagd variants may not be.
    """
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "float"
    if isinstance(value, dict):
        return "object"
    return None


def definition(flag: FlagRow, state: str | None = None) -> dict[str, Any]:
    """Returns a flag as a flagd flag definition (the value of its key under ``flags``), ``state`` replaced.

    The definition is :func:`services.flag.definitions.to_definition`'s: its metadata (description,
    flag set) is the flag metadata flagd reports with each evaluation.
    """
    result = to_definition(fields_of_row(flag))
    if state:
        result["state"] = state
    return result


class FlagSetEvaluator:
    """One tenant's flags loaded into one ``FlagdCore``, evaluated without touching the database.

    A flag without targeting, or a disabled one, resolves the same for every
    context; its resolution is computed here, once, by the same ``FlagdCore`` call
    an evaluation would make, and :meth:`static` returns it.

    Attributes:
        definitions: Flag key -> its flagd flag definition, as loaded.
        flag_sets: Flag key -> the ID of its flag set (empty: the tenant's default set).
        kinds: Flag key -> the type of its variants (:func:`variant_kind`: ``boolean``, ``string``,
            ``float`` for any number, ``object``).
        memo: Room for callers to keep what they derive from this set (the flag
            service keeps its encoded answers for static flags there); it lives and is
            replaced with the set, so it never outlives a change.

    Args:
        flags: The tenant's flags, each valid (:func:`violations` is empty).
    """

    def __init__(self, flags: Iterable[FlagRow]) -> None:
        flags = list(flags)
        self._core = FlagdCore()
        self.definitions = {flag.key: definition(flag) for flag in flags}
        # FlagdCore renames keys of the definitions it is given (defaultVariant -> default_variant):
        # it gets its own, so that the definitions synced to providers stay flagd's.
        self._core.set_flags({"flags": {flag.key: definition(flag) for flag in flags}})
        self.flag_sets = {flag.key: flag.flag_set for flag in flags}
        kinds = {flag.key: variant_kind(next(iter(flag.variants.values()))) or "object" for flag in flags}
        self.kinds = kinds
        self._resolvers = {key: getattr(self._core, f"resolve_{kind}_value") for key, kind in kinds.items()}
        self._typed = {kind: getattr(self._core, f"resolve_{kind}_value") for kind in KINDS}
        self._defaults = {key: _DEFAULTS[kind] for key, kind in kinds.items()}
        self._static = {
            flag.key: self.evaluate(flag.key, {})
            for flag in flags
            if flag.state == FlagState.DISABLED or not flag.targeting
        }
        self.memo: dict[str, Any] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._resolvers

    def selects(self, key: str, flag_set: str | None) -> bool:
        """Whether flag ``key`` is in the set and, unless ``flag_set`` is None, in flag set ``flag_set``."""
        return key in self._resolvers and (flag_set is None or self.flag_sets[key] == flag_set)

    def definitions_in(self, flag_set: str | None) -> dict[str, dict[str, Any]]:
        """Returns the definitions of the flags of flag set ``flag_set`` (None: every flag), by key."""
        if flag_set is None:
            return self.definitions
        return {key: value for key, value in self.definitions.items() if self.flag_sets[key] == flag_set}

    @staticmethod
    def refused(error_code: ErrorCode) -> Resolution:
        """Returns the resolution of an evaluation refused before it ran (reason ``ERROR``)."""
        return Resolution(None, "", Reason.ERROR.value, error_code.value)

    def static(self, key: str) -> Resolution | None:
        """Returns the resolution of a flag that no context can change, or None for a targeted one."""
        return self._static.get(key)

    def evaluate(self, key: str, context: Mapping[str, Any]) -> Resolution:
        """Evaluates a flag of the set for an evaluation context, with flagd's semantics.

        Args:
            key: The flag key; it must be in the set.
            context: The evaluation context as JSON; ``targetingKey`` (a string) becomes the
                OpenFeature targeting key, the subject of ``fractional`` rollouts.

        Returns:
            The resolution. A disabled flag serves no variant: value None, reason ``DISABLED``
            (the API has no caller default to return). Evaluation failures do not raise; they
            give reason ``ERROR`` and an OpenFeature error code, and are logged (OpenFeature
            specification requirements 1.4.8 to 1.4.11).

        Raises:
            KeyError: No flag ``key`` in the set.
        """
        return self._run(key, self._resolvers[key], self._defaults[key], context)

    def resolve(self, key: str, kind: str, context: Mapping[str, Any]) -> Resolution:
        """Evaluates a flag as a value of type ``kind``, as flagd's ``Resolve<Type>`` RPCs do.

        Args:
            key: The flag key; a key not in the set resolves to ``FLAG_NOT_FOUND``.
            kind: One of :data:`KINDS` (``boolean``, ``string``, ``integer``, ``float``,
                ``object``); a variant of another type resolves to ``TYPE_MISMATCH``.
            context: The evaluation context as JSON (see :meth:`evaluate`).

        Returns:
            The resolution; failures give reason ``ERROR`` and flagd's error code.
        """
        return self._run(key, self._typed[kind], _DEFAULTS[kind], context)

    def _run(self, key: str, resolve: Any, default: Any, context: Mapping[str, Any]) -> Resolution:
        attributes = dict(context)
        targeting_key = attributes.pop("targetingKey", None)
        subject = EvaluationContext(targeting_key if isinstance(targeting_key, str) else None, attributes)
        try:
            details: FlagResolutionDetails[Any] = resolve(key, default, subject)
        except Exception as error:  # a user's JsonLogic rule may raise anything (ZeroDivisionError...)
            code = error.error_code if isinstance(error, OpenFeatureError) else ErrorCode.GENERAL
            log.warning("flag %s: evaluation failed (%s): %s", key, code, error)
            return Resolution(None, "", Reason.ERROR.value, code.value)
        if details.reason == Reason.DISABLED:
            return Resolution(None, "", Reason.DISABLED.value)
        return Resolution(details.value, details.variant or "", str(details.reason or Reason.UNKNOWN))


def _resolve(flag: FlagRow, context: EvaluationContext, state: str) -> FlagResolutionDetails[Any]:
    """Loads ``flag`` alone into a fresh ``FlagdCore`` and resolves it (write-time validation).

    Raises:
        OpenFeatureError: flagd rejected the definition or the targeting result.
        Exception: Whatever a JsonLogic operator raises on the rule's data (e.g. ZeroDivisionError).
    """
    core = FlagdCore()
    core.set_flags({"flags": {flag.key: definition(flag, state)}})
    kind = variant_kind(next(iter(flag.variants.values()))) or "object"
    resolve = getattr(core, f"resolve_{kind}_value")
    details: FlagResolutionDetails[Any] = resolve(flag.key, _DEFAULTS[kind], context)
    return details


def violations(flag: FlagRow) -> list[FieldViolation]:
    """Check a flag definition against flagd's rules and the service's bounds.

    ``state`` is ``ENABLED`` or ``DISABLED``; there is at least one variant; all variant
    values share one JSON kind (boolean, string, number or object) and take at most
    :data:`MAX_VARIANTS_BYTES` together; ``default_variant`` names a variant; the
    targeting rule is within :mod:`services.flag.limits`, is valid by flagd's ``targeting.json``
    (:mod:`services.flag.schema`) and refers to no evaluator (``$ref``), loads into flagd and,
    evaluated with the context ``{"tenant": <tenant>}``, yields one of the flag's variants or none. A rule
    that names a missing variant only for other contexts shows at evaluation time
    (reason ``ERROR``).

    Returns:
        The violations, with field paths of the ``Flag`` resource under ``flag.``;
        empty when the definition is valid.
    """
    found: list[FieldViolation] = []
    if flag.state not in _STATES:
        found.append(FieldViolation("flag.state", "must be STATE_ENABLED or STATE_DISABLED"))
    kinds = {variant_kind(value) for value in flag.variants.values()}
    if not flag.variants:
        found.append(FieldViolation("flag.variants", "must name at least one variant"))
    elif None in kinds or len(kinds) > 1:
        found.append(
            FieldViolation(
                "flag.variants", "values must be all booleans, all strings, all numbers or all objects"
            )
        )
    if any(not name or len(name) > MAX_VARIANT_NAME for name in flag.variants):
        found.append(
            FieldViolation("flag.variants", f"variant names must be 1-{MAX_VARIANT_NAME} characters")
        )
    if flag.default_variant not in flag.variants:
        found.append(FieldViolation("flag.default_variant", "must be the name of one of flag.variants"))
    values_size = len(json.dumps(flag.variants, separators=(",", ":")))
    if values_size > MAX_VARIANTS_BYTES:
        found.append(FieldViolation("flag.variants", f"values must take at most {MAX_VARIANTS_BYTES} bytes"))
    if flag.targeting:
        found += limits.rule_violations(
            flag.targeting, len(json.dumps(flag.targeting, separators=(",", ":")))
        )
    if found:
        return found
    if flag.targeting:
        found += [
            FieldViolation(
                "flag.targeting", f"breaks flagd's schema at {problem.pointer or '/'}: {problem.message}"
            )
            for problem in schema.targeting_problems(flag.targeting)[:MAX_RULE_PROBLEMS]
        ]
        found += [
            FieldViolation(
                "flag.targeting",
                f'{{"$ref": ...}} at {pointer or "/"}: evaluators ($evaluators) exist only in imported '
                "documents, whose references are resolved when they are imported",
            )
            for pointer in schema.references(flag.targeting)[:MAX_RULE_PROBLEMS]
        ]
    if found:
        return found
    try:
        _resolve(flag, EvaluationContext(attributes={"tenant": flag.tenant_id}), "ENABLED")
    except OpenFeatureError as error:
        found.append(FieldViolation("flag.targeting", f"flagd rejects it: {error.error_message or error}"))
    except Exception as error:  # a user's JsonLogic rule may raise anything (ZeroDivisionError...)
        found.append(FieldViolation("flag.targeting", f"flagd cannot evaluate it: {error}"))
    return found
