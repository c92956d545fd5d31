"""The kit's JSON Patch (RFC 6902) differences."""

from __future__ import annotations

from services.kit.jsonpatch import diff


def test_objects_are_compared_member_by_member_and_other_values_replaced_whole() -> None:
    before = {"a": {"x": 1, "y": [1, 2]}, "gone": True, "same": "s"}
    after = {"a": {"x": 2, "y": [1, 2, 3]}, "new": None, "same": "s"}
    assert diff(before, after) == [
        {"op": "remove", "path": "/gone"},
        {"op": "replace", "path": "/a/x", "value": 2},
        {"op": "replace", "path": "/a/y", "value": [1, 2, 3]},
        {"op": "add", "path": "/new", "value": None},
    ]
    assert diff(after, after) == []


def test_json_types_are_compared_exactly_and_names_escaped() -> None:
    assert diff({"v": 1}, {"v": True}) == [{"op": "replace", "path": "/v", "value": True}]
    assert diff({"v": 1}, {"v": 1.5}) == [{"op": "replace", "path": "/v", "value": 1.5}]
    assert diff({}, {"a/b~c": 1}) == [{"op": "add", "path": "/a~1b~0c", "value": 1}]
    assert diff([1], {"k": 1}) == [{"op": "replace", "path": "", "value": {"k": 1}}]
