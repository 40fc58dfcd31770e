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
spec's mapping. The rules (:class:`~orchestrion.config.MappingRule`) are checked when the settings
are read: a bad one stops the start with the table and the field named.

>>> from orchestrion.config import MappingRule
>>> rule = MappingRule(event="Song Played", type="play", item="properties.track.id", value=1)
>>> lookup({"properties": {"track": {"id": "t9"}}}, rule.item)
't9'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["lookup"]


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
