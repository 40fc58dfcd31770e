"""nesting_error (the depth check every event and Segment message goes through before decoding)
refuses exactly the JSON values nested deeper than the limit, whatever their strings hold."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.ingest.events import nesting_error

# Strings full of what the check must not mistake for structure: brackets, quotes, backslashes
_tricky = st.text(alphabet='[]{}"\\ a\n\u00e9', max_size=6)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _tricky),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_tricky, children, max_size=3)),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(_json, st.integers(1, 6), st.booleans())
def test_refuses_exactly_what_nests_deeper_than_the_limit(value: Any, limit: int, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert (nesting_error(raw, limit) is not None) == (_depth(value) > limit)


def test_brackets_in_strings_and_escapes_are_not_structure() -> None:
    shallow = json.dumps({"a": "[[[[{{{{", "b": ['\\"]]]', "\\\\"], "c": {"d": '"[{'}}).encode()
    assert nesting_error(shallow, 2) is None
    assert nesting_error(json.dumps({"a": [[["x"]]]}).encode(), 2) is not None
