"""The patch's C-speed equality agrees with the plain recursive one, type for type."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store.documents import _equal, _exact, apply_patch, make_patch, small_patch


def _oracle(a: Any, b: Any) -> bool:
    """The recursive equality the patch used before its fast path: the independent answer."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_oracle(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_oracle, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


# Scalars that Python's == confuses: true and 1, false and 0 and 0.0, 1 and 1.0, 0.0 and -0.0.
_TRICKY = st.sampled_from([True, False, 1, 0, 1.0, 0.0, -0.0, None, "1", "", "a\n", 2.5])
_JSON = st.recursive(
    _TRICKY | st.integers(-2, 2) | st.floats(allow_nan=False, width=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abc"), inner),
    max_leaves=12,
)


def _reordered(value: Any) -> Any:
    """The same value with every object's keys in reverse order (equal, other repr)."""
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(value)}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


def _swapped(value: Any) -> Any:
    """The value with each true, 1.0 and -0.0 turned into what Python's == takes it for."""
    if isinstance(value, dict):
        return {key: _swapped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_swapped(item) for item in value]
    twins = {repr(True): 1, repr(False): 0, repr(1.0): 1, repr(-0.0): 0.0, repr(0.0): -0.0}
    return twins.get(repr(value), value)


@settings(max_examples=500, deadline=None)
@given(_JSON, _JSON)
def test_equality_agrees_with_the_recursive_one(a: Any, b: Any) -> None:
    for other in (b, a, _reordered(a), _swapped(a), _reordered(_swapped(a))):
        assert _equal(a, other) == _oracle(a, other), (a, other)


def test_values_python_takes_for_equal_are_told_apart() -> None:
    pairs = [
        (True, 1), (1, 1.0), (0.0, -0.0), (False, 0), ([1, True], [1, 1]),
        ({"a": [0.0]}, {"a": [-0.0]}), ({"a": {"b": 1}}, {"a": {"b": 1.0}}),
    ]  # fmt: skip
    for a, b in pairs:
        assert not _equal(a, b) and not _oracle(a, b)
        assert _equal(a, a) and _equal(b, b)
    # Key order carries no meaning: equal whichever order the keys come in.
    assert _equal({"a": 1, "b": [True]}, {"b": [True], "a": 1})


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_a_patch_gives_back_the_value_type_for_type(base: Any) -> None:
    for document in (_swapped(base), _reordered(_swapped(base))):
        patched = apply_patch(base, make_patch(base, document))
        assert json.dumps(patched, sort_keys=True) == json.dumps(document, sort_keys=True)
        assert _oracle(patched, document)


def _copied(value: Any) -> Any:
    """The same value made of new objects (strings too): shares nothing with the original."""
    if isinstance(value, dict):
        return {"".join(key): _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, str):
        return "".join(list(value))
    return value


@settings(max_examples=500, deadline=None)
@given(_JSON, _JSON)
def test_values_are_written_alike_exactly_when_their_reprs_are_alike(a: Any, b: Any) -> None:
    # repr, which the patch's check used before, is the oracle: type for type, key order kept.
    shared = [a, a, b]
    for x, y in ((a, b), (a, _copied(a)), (a, _swapped(a)), (a, _reordered(a)),
                 (shared, [a, _copied(a), b]), (shared, _copied(shared))):  # fmt: skip
        assert (_exact(x) == _exact(y)) == (repr(x) == repr(y)), (x, y)


def test_a_night_patched_from_objects_of_both_documents_is_kept() -> None:
    # The patched value mixes objects of the base and of the document (shared keys, strings):
    # how objects are shared must not make it differ from the document.
    base = {"host": {"name": "a", "os": {"build": 1}}, "raw": {"netstat": "x\n" * 50}, "k": [1]}
    night = _copied(base) | {"k": [True], "taken_at": "2026-12-02T02:00:00Z"}
    assert small_patch(base, night, compressed_size=2000) is not None
