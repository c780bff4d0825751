"""Documents kept as patches: any JSON value comes back exactly from its base and its patch."""

from __future__ import annotations

import json
import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store.documents import apply_patch, make_patch, small_patch, stored_document

_LINES = st.lists(st.sampled_from(["a\n", "b\r\n", "TCP 1\n", "", "x"]), max_size=6).map("".join)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | _LINES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from("abcd"), inner),
    max_leaves=20,
)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@settings(max_examples=300)
@given(_JSON, _JSON)
def test_a_patch_gives_the_document_back(base: Any, document: Any) -> None:
    assert _text(apply_patch(base, make_patch(base, document))) == _text(document)


def test_an_unchanged_night_is_a_small_patch_and_a_changed_one_is_stored_whole() -> None:
    netstat = "".join(f"  TCP 0.0.0.0:{port} LISTENING 4\r\n" for port in range(135, 200))
    base = {"taken_at": "2026-12-01T02:00:00Z", "raw": {"netstat": netstat}, "n": 1}
    night = {"taken_at": "2026-12-02T02:00:00Z", "raw": {"netstat": netstat + "x\r\n"}, "n": True}
    delta = small_patch(base, night, compressed_size=2000)
    assert delta is not None and len(delta) < 200
    body = json.dumps(base).encode()
    assert stored_document(zlib.compress(body), delta) == night
    assert _text(stored_document(zlib.compress(body), delta)) == _text(night)  # true, not 1
    assert small_patch(base, {"other": list(range(500))}, compressed_size=2000) is None
    assert stored_document(None, None) is None
