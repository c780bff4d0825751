"""How probe documents are kept: a full document once, and the nights like it as a small patch.

A host's document barely changes from one night to the next when nothing happened on it: the
time it was taken, how long the probe ran, netstat's short-lived connections. Storing each one
whole cost about 4 KB a host-night. So a snapshot points at a *base* document (``documents``,
stored once per content) and, when its own document differs, holds a patch that turns the base
into it (``snapshots.document_delta``); a night whose patch would not be small enough gets a
base of its own. The exact bytes' digest stays on the snapshot (``document_sha256``), so the
same file imported twice is still recognised.

The patch is structural: ``apply_patch(base, make_patch(base, document)) == document`` for any
two JSON values, checked before a patch is kept. Key order within objects is not kept (JSON
does not give it a meaning).
"""

from __future__ import annotations

import io
import json
import pickle
import zlib
from difflib import SequenceMatcher
from typing import Any

# A patch is kept when it is at most this share of the compressed document it stands for.
_SMALL = 0.25

Patch = dict[str, Any]


def make_patch(base: Any, document: Any) -> Patch | None:
    """Return what turns ``base`` into ``document``, or None when they are equal."""
    if _equal(base, document):
        return None
    if isinstance(base, dict) and isinstance(document, dict):
        changed: dict[str, Patch] = {}
        for key, value in document.items():
            if key in base:
                patch = make_patch(base[key], value)
                if patch is not None:
                    changed[key] = patch
        added = {key: value for key, value in document.items() if key not in base}
        removed = [key for key in base if key not in document]
        return {"d": [changed, added, removed]}
    if isinstance(base, list) and isinstance(document, list):
        return {"l": _sequence_ops(base, document, nested=True)}
    if isinstance(base, str) and isinstance(document, str) and "\n" in base + document:
        # Raw command output: patch its lines (netstat's connections change, its listeners not).
        lines = _sequence_ops(base.splitlines(True), document.splitlines(True), nested=False)
        return {"s": [[i, j, "".join(new)] for i, j, new in lines]}
    return {"v": document}


def _equal(a: Any, b: Any) -> bool:
    """Tell whether two JSON values are the same, type for type (Python's == takes 1 for true).

    Python's == and ``_exact`` run at C speed and settle almost every pair: values that differ
    under == differ (JSON holds no NaN), and equal values written alike are the same value type
    for type. Only an equal pair written apart (another key order, or true against 1 somewhere
    inside) is walked, item by item.
    """
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, dict | list):
        return _exact(a) == _exact(b) or _equal_items(a, b)
    if isinstance(a, float):
        return repr(a) == repr(b)  # -0.0 == 0.0, but JSON writes them apart
    return True


def _exact(value: Any) -> bytes:
    """Write a JSON value so that two are written alike only when they are the same, in order.

    Pickled: true, 1 and 1.0 are apart, and so are 0.0 and -0.0 (their bits), and the keys go
    in their order, as repr would have it, but several times quicker. Without the memo ("fast"
    mode), which would write a string seen before by reference: how values share objects would
    tell equal values apart.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # JSON values never refer to themselves, which fast mode cannot write
    pickler.dump(value)
    return buffer.getvalue()


def _equal_items(a: dict[str, Any] | list[Any], b: dict[str, Any] | list[Any]) -> bool:
    """Compare two containers already equal under == item by item, type for type."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    return len(a) == len(b) and all(map(_equal, a, b))


def apply_patch(base: Any, patch: Patch | None) -> Any:
    """Return ``base`` with ``patch`` applied (``make_patch``'s inverse), ``base`` unchanged."""
    if patch is None:
        return base
    if "v" in patch:
        return patch["v"]
    if "d" in patch:
        changed, added, removed = patch["d"]
        result = {key: value for key, value in base.items() if key not in removed}
        for key, sub in changed.items():
            result[key] = apply_patch(base[key], sub)
        result.update(added)
        return result
    if "l" in patch:
        return _apply_ops(base, patch["l"])
    lines = base.splitlines(True)
    return "".join(_apply_ops(lines, [[i, j, [new] if new else []] for i, j, new in patch["s"]]))


def _sequence_ops(base: list[Any], document: list[Any], nested: bool) -> list[list[Any]]:
    """Return the edits turning one list into another: ``[i, j, items]`` or ``[i, patch]``.

    ``[i, j, items]`` puts ``items`` in place of ``base[i:j]``; ``[i, patch]`` patches the item
    at ``i`` (``nested``: a block replaced by as many items is patched item by item).
    """
    # repr tells true from 1 and is several times quicker than JSON text.
    keys = [repr(item) for item in base] if nested else base
    other = [repr(item) for item in document] if nested else document
    ops: list[list[Any]] = []
    matcher = SequenceMatcher(None, keys, other, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if nested and tag == "replace" and i2 - i1 == j2 - j1:
            ops.extend([i1 + k, make_patch(base[i1 + k], document[j1 + k])] for k in range(i2 - i1))
        else:
            ops.append([i1, i2, document[j1:j2]])
    return ops


def _apply_ops(base: list[Any], ops: list[list[Any]]) -> list[Any]:
    result: list[Any] = []
    position = 0
    for op in ops:
        start = op[0]
        result.extend(base[position:start])
        if len(op) == 2:
            result.append(apply_patch(base[start], op[1]))
            position = start + 1
        else:
            result.extend(op[2])
            position = op[1]
    result.extend(base[position:])
    return result


def encode_patch(patch: Patch) -> bytes:
    """Return a patch as it is stored: compact JSON, zlib-compressed."""
    return zlib.compress(json.dumps(patch, separators=(",", ":")).encode(), 6)


def small_patch(base: Any, document: dict[str, Any], compressed_size: int) -> bytes | None:
    """Return the stored patch from ``base`` to ``document`` when small enough, else None.

    None too when the patch would not give the document back exactly (never expected; a
    document stored whole is always right).
    """
    patch = make_patch(base, document)
    if patch is None:
        patch = {"d": [{}, {}, []]}
    encoded = encode_patch(patch)
    if len(encoded) > compressed_size * _SMALL:
        return None
    # Compared written out: Python's == takes 1 for true, and the patch must give back the
    # document value for value (a difference in key order only stores the document whole).
    if _exact(apply_patch(base, patch)) != _exact(document):
        return None
    return encoded


def stored_document(body: bytes | None, delta: bytes | None) -> dict[str, Any] | None:
    """Return a snapshot's document from its base's stored body and its own patch, if kept."""
    if body is None:
        return None
    base = json.loads(zlib.decompress(body))
    if delta is None:
        return dict(base)
    return dict(apply_patch(base, json.loads(zlib.decompress(delta))))
