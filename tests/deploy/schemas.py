"""Offline validation of rendered manifests: Kubernetes' own kinds and Istio's CRDs.

Kubernetes kinds go through ``kubernetes-validate`` (its bundled JSON schemas, strict: unknown
fields are errors). Istio kinds are checked against the ``openAPIV3Schema`` of their CRD
(``tests/deploy/istio-crds``) the way the API server checks a custom resource: unknown fields are
errors (kubectl's ``--validate=strict``), ``nullable`` and ``x-kubernetes-int-or-string`` are
honoured, and every CEL rule (``x-kubernetes-validations``) whose field is present is evaluated
with cel-python. Their ``metadata`` is an ObjectMeta, checked with Kubernetes' schema.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import celpy
import jsonschema
import kubernetes_validate
import yaml
from celpy import celtypes

ISTIO_CRDS = Path(__file__).parent / "istio-crds" / "crd-all.gen.yaml"
#: Kubernetes versions every object must validate against: the oldest this deployment
#: supports (ContainerResource HPA metrics, PDB unhealthyPodEvictionPolicy) and the newest.
KUBERNETES_VERSIONS = ("1.31", "1.37")


class InvalidObject(AssertionError):
    """A rendered object that the API server would refuse."""


def object_name(obj: dict[str, Any]) -> str:
    """``Kind/name`` of a manifest object."""
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_kubernetes(obj: dict[str, Any], version: str) -> None:
    """Validates a built-in kind with kubernetes-validate (strict).

    Raises:
        InvalidObject: The object does not fit its schema, or the schema is unknown.
    """
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        raise InvalidObject(f"{object_name(obj)} at {path}: {error.message} (Kubernetes {version})") from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise InvalidObject(f"{object_name(obj)}: {error.message}") from None


def _strict(schema: Any) -> Any:
    """The structural schema as JSON Schema that rejects unknown fields (the API server would prune them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a CRD."""

    group: str
    version: str
    kind: str
    schema: dict[str, Any]
    deprecated: bool


@functools.cache
def istio_crds() -> dict[tuple[str, str], CrdVersion]:
    """Returns every served version of Istio's CRDs, by ``(apiVersion, kind)``."""
    found = {}
    for crd in yaml.safe_load_all(ISTIO_CRDS.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served"):
                continue
            entry = CrdVersion(
                group=spec["group"],
                version=version["name"],
                kind=spec["names"]["kind"],
                schema=version["schema"]["openAPIV3Schema"],
                deprecated=bool(version.get("deprecated")),
            )
            found[(f"{entry.group}/{entry.version}", entry.kind)] = entry
    return found


def is_istio(obj: dict[str, Any]) -> bool:
    """Whether the object's API group is one of Istio's."""
    return str(obj.get("apiVersion", "")).split("/")[0].endswith(".istio.io")


# Kubernetes' CEL library functions the Istio rules use, beyond standard CEL (cel-python):
# url(s).getScheme() from the URL library ("Kubernetes CEL libraries", k8s.io/apiserver).
_K8S_CEL_FUNCTIONS = {
    "url": lambda value: value,
    "getScheme": lambda value: celtypes.StringType(urlsplit(str(value)).scheme),
}
_CEL = celpy.Environment()


@functools.cache
def _cel_program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule), functions=_K8S_CEL_FUNCTIONS)


def _cel_rules(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, str, str | None]]:
    """Yields ``(path, rule, failure or None)`` for every CEL rule that applies to ``value``."""
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if "oldSelf" in rule:  # transition rules need the stored object; a create has none
            continue
        result = _cel_program(rule).evaluate({"self": celpy.json_to_cel(value)})
        failure = (
            None if result is True or result == celtypes.BoolType(True) else validation.get("message", rule)
        )
        yield path, rule, failure
    if isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}):
                yield from _cel_rules(schema["properties"][key], item, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _cel_rules(schema["additionalProperties"], item, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _cel_rules(schema["items"], item, f"{path}[{index}]")


def validate_istio(obj: dict[str, Any]) -> int:
    """Validates an Istio object against its CRD's schema, CEL rules included.

    Returns:
        How many CEL rules were evaluated (all passed).

    Raises:
        InvalidObject: No served, non-deprecated CRD version for it, or the schema refuses it.
    """
    crd = istio_crds().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if crd is None:
        raise InvalidObject(f"{object_name(obj)}: no served Istio CRD for {obj.get('apiVersion')}")
    if crd.deprecated:
        raise InvalidObject(f"{object_name(obj)}: {obj['apiVersion']} is deprecated")
    root = copy.deepcopy(crd.schema)
    # Every object has these at its root; a CRD's schema lists only spec and status.
    root.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    )
    schema = _strict(root)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.path)
        raise InvalidObject(f"{object_name(obj)} at {path}: {first.message} (of {len(errors)} errors)")
    # metadata is `type: object` in a CRD; the API server checks it as an ObjectMeta.
    validate_kubernetes(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, KUBERNETES_VERSIONS[-1]
    )
    evaluated = 0
    for path, rule, failure in _cel_rules(crd.schema, obj, ""):
        evaluated += 1
        if failure is not None:
            raise InvalidObject(f"{object_name(obj)} at {path}: {failure} ({rule})")
    return evaluated
