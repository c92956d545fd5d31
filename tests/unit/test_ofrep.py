"""OFREP's pieces without a stack: request bodies, value types, entity tags, the gateway's header."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.api import httpbody_pb2

from gateway.envoy import render
from services.flag import ofrep
from services.flag.evaluator import FlagSetEvaluator
from services.flag.models import FlagRow

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def flags(**variants: dict[str, Any]) -> FlagSetEvaluator:
    return FlagSetEvaluator(
        FlagRow("t", key, "ENABLED", values, next(iter(values)), None, "", NOW, NOW)
        for key, values in variants.items()
    )


def body(data: bytes) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)


def test_the_gateway_applies_the_header_the_service_writes() -> None:
    assert render.OFREP_STATUS_HEADER == ofrep.STATUS_HEADER


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", {"tenant": "t"}),
        (b"{}", {"tenant": "t"}),
        (b'{"context": null}', {"tenant": "t"}),
        (b'{"context": {"targetingKey": "u", "tenant": "other"}}', {"targetingKey": "u", "tenant": "t"}),
        (b"{oops", "PARSE_ERROR"),
        (b'"text"', "PARSE_ERROR"),
        (b'{"context": {"x": Infinity}}', "PARSE_ERROR"),
        (b"[" * 50_000, "PARSE_ERROR"),
        (b'{"context": []}', "INVALID_CONTEXT"),
        (b'{"context": {"a": [' + b"1," * 200 + b"1]}}", "INVALID_CONTEXT"),
    ],
)
def test_evaluation_context_is_the_tenants_or_an_openfeature_error(data: bytes, expected: Any) -> None:
    got = ofrep.evaluation_context(body(data), "t")
    assert (got[0] if isinstance(got, tuple) else got) == expected


def test_values_keep_their_json_type() -> None:
    evaluator = flags(
        whole={"a": 10, "b": 20},
        mixed={"a": 1, "b": 1.5},
        on={"a": True, "b": False},
        theme={"a": {"depth": 2}},
    )
    items = {key: ofrep.evaluation(evaluator, key, evaluator.evaluate(key, {})) for key in evaluator.kinds}
    assert type(items["whole"]["value"]) is int and items["whole"]["value"] == 10
    assert type(items["mixed"]["value"]) is float and items["mixed"]["value"] == 1.0
    assert items["on"] == {"key": "on", "value": True, "reason": "STATIC", "variant": "a", "metadata": {}}
    assert items["theme"]["value"] == {"depth": 2}


def test_if_none_match_compares_weakly_and_takes_lists() -> None:
    tag = ofrep.etag_of(b'{"flags":[]}')
    assert tag == ofrep.etag_of(b'{"flags":[]}') != ofrep.etag_of(b'{"flags":[{}]}')
    assert ofrep.matches(tag, tag)
    assert ofrep.matches(f'"other", W/{tag}', tag)
    assert ofrep.matches("*", tag)
    assert not ofrep.matches(None, tag)
    assert not ofrep.matches('"other"', tag)
    assert not ofrep.matches(tag.strip('"'), tag)
