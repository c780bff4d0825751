"""The quicker strict JSON reading refuses and accepts exactly what the plain walks did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.document import _MAX_DEPTH, DocumentError, _parse_json, _shallow


def _oracle_shallow(document: Any) -> bool:
    """The stack walk ``_shallow`` was before it went level by level: the independent answer."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if value and depth >= _MAX_DEPTH:
            return False
        stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))
    return True


def _nest(depth: int, inner: Any, as_list: bool) -> Any:
    for _ in range(depth):
        inner = [inner] if as_list else {"k": inner}
    return inner


_LEAF = st.sampled_from([1, "x", None, [], {}, [1], {"a": 1}])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(_MAX_DEPTH - 3, _MAX_DEPTH + 2), _LEAF, st.booleans()),
             min_size=1, max_size=4)
)  # fmt: skip
def test_the_depth_check_agrees_with_the_stack_walk(branches: list[tuple[int, Any, bool]]) -> None:
    document = {str(i): _nest(depth, leaf, as_list) for i, (depth, leaf, as_list) in
                enumerate(branches)}  # fmt: skip
    assert _shallow(document) == _oracle_shallow(document)
    for depth, leaf, as_list in branches:
        nested = _nest(depth, leaf, as_list)
        assert _shallow(nested) == _oracle_shallow(nested)
    assert _shallow(3) and _shallow([]) and _shallow("text")


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ('{"a": 1, "b": 2, "a": 3}', "the key 'a' appears twice"),
        ('{"x": [{"b": 1, "c": 2, "c": 2}]}', "the key 'c' appears twice"),
        ('{"n": ' + "9" * 21 + "}", "a number of 21 digits"),
        ('{"n": -' + "9" * 21 + "}", "a number of 21 digits"),
    ],
)
def test_repeated_keys_and_long_numbers_are_refused_by_name(text: str, refusal: str) -> None:
    with pytest.raises(DocumentError, match=refusal):
        _parse_json(text, "f.json")


def test_numbers_at_the_length_limit_are_read_as_they_are() -> None:
    values = [int("9" * 20), -int("9" * 20), -int("9" * 19), 0, True, 1.5, -0.0]
    parsed = _parse_json(json.dumps({"v": values, "a": {"b": 1}, "c": 2}), "f.json")
    assert repr(parsed) == repr({"v": values, "a": {"b": 1}, "c": 2})
