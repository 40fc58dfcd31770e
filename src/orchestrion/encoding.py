"""JSON encoding for what orchestrion writes: records, traces, outbox files, webhook bodies.

orjson, because it is C-fast with and without indentation (the standard library's indented
encoder is pure Python; it was a third of a daily run). Datetimes come out as ISO 8601, numpy
scalars and arrays as numbers, non-string keys as strings, anything else as its ``str``.

>>> to_json({"at": __import__("datetime").date(2024, 1, 2), 1: "x"})
'{"at":"2024-01-02","1":"x"}'
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

__all__ = ["canonical", "to_json", "to_json_bytes"]

_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def to_json_bytes(value: Any, *, indent: bool = False) -> bytes:
    """``value`` as UTF-8 JSON; ``indent`` indents by two spaces (for files people open)."""
    return orjson.dumps(value, default=str, option=_OPTIONS | (orjson.OPT_INDENT_2 if indent else 0))


def to_json(value: Any, *, indent: bool = False) -> str:
    """``value`` as a JSON string (see :func:`to_json_bytes`)."""
    return to_json_bytes(value, indent=indent).decode()


def canonical(value: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal text (a side effect's identity, a
    stored action's arguments).

    >>> canonical({"b": 1, "a": [1, "é"]})
    '{"a":[1,"é"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
