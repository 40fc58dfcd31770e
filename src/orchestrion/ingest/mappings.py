"""Custom event mappings: the ``[[mappings]]`` tables of ``orchestrion.toml``.

A Segment-style ``track`` (or ``page``/``screen``) whose name no published spec covers is stored as
it came (type = its name) and reported by ``orchestrion stats`` as unmapped. A mapping turns it
into a canonical event instead::

    [[mappings]]
    event = "Song Played"            # the event name as the app sends it
    type = "play"                    # the canonical type the goals read
    item = "properties.track_id"     # where the item id is (a path into the message)
    value = "properties.plays"       # a path, or a number such as 1
    domain = "music"                 # else the event's own, else the source's

Paths start at ``properties`` or ``context`` and go down objects by key. A mapping for an event
name of a published spec (``Order Completed``, ``Video Content Completed``, ...) replaces the
spec's mapping. The rules are checked when the settings are read: a bad one stops the start with
the table and the field named.

>>> rule = MappingRule(event="Song Played", type="play", item="properties.track.id", value=1)
>>> lookup({"properties": {"track": {"id": "t9"}}}, rule.item)
't9'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MappingRule", "lookup"]

_PATH: Final = re.compile(r"^(properties|context)(\.[^.\s]+)+$")
_PATH_HELP: Final = "a path such as properties.track_id or context.page.path (properties.… or context.…)"


class MappingRule(BaseModel):
    """One ``[[mappings]]`` table: an event name → a canonical type, item, value and domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1, max_length=256, description="The event name as sent (track's event).")
    type: str = Field(min_length=1, max_length=64, description="The canonical type, e.g. play or purchase.")
    item: str | None = Field(None, description="Path to the item id, e.g. properties.track_id.")
    value: str | float | None = Field(None, description="Path to the value, or a constant number.")
    domain: str | None = Field(None, min_length=1, max_length=64, description="The domain, e.g. music.")

    @field_validator("event", "type")
    @classmethod
    def _printable(cls, text: str) -> str:
        if text != text.strip() or not text.isprintable():
            raise ValueError(f"{text!r} must be printable text without surrounding spaces")
        return text

    @field_validator("item")
    @classmethod
    def _item_path(cls, path: str | None) -> str | None:
        if path is not None and not _PATH.match(path):
            raise ValueError(f"{path!r} is not {_PATH_HELP}")
        return path

    @field_validator("value")
    @classmethod
    def _value_path(cls, value: str | float | None) -> str | float | None:
        if isinstance(value, str) and not _PATH.match(value):
            raise ValueError(f"{value!r} is neither a number nor {_PATH_HELP}")
        return value


def lookup(message: Mapping[str, Any], path: str | None) -> Any:
    """The value at ``path`` (``properties.a.b``) in ``message``, or None where any step is missing."""
    if path is None:
        return None
    found: Any = message
    for key in path.split("."):
        if not isinstance(found, Mapping):
            return None
        found = found.get(key)
    return found
