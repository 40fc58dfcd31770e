"""The goal template registry: the built-in templates plus plugins found through entry points.

A third party adds a template by publishing an object (or a class that needs no arguments)
under the ``orchestrion.goal_templates`` entry-point group, e.g. in its ``pyproject.toml``::

    [project.entry-points."orchestrion.goal_templates"]
    wine = "mypkg.wine:WineTemplate"

It must follow :class:`~orchestrion.goals.base.GoalTemplate` and pass the shared contract test
(``tests/test_goals_contract.py``). A plugin that fails to load or does not follow the protocol
is skipped with a warning naming it, so one broken plugin cannot stop the daily proposals; a
plugin may not replace a built-in template of the same name.

>>> sorted(templates())
['digest', 'playlist', 'reorder', 'watchlist']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from types import MappingProxyType
from typing import Any, Final

from orchestrion.errors import UsageError
from orchestrion.goals.base import GoalTemplate
from orchestrion.goals.digest import Digest
from orchestrion.goals.playlist import Playlist
from orchestrion.goals.reorder import Reorder
from orchestrion.goals.watchlist import Watchlist

__all__ = ["BUILT_IN", "ENTRY_POINT_GROUP", "PluginWarning", "discover_plugins", "templates"]

ENTRY_POINT_GROUP: Final = "orchestrion.goal_templates"
BUILT_IN: Final[Mapping[str, Callable[[], GoalTemplate]]] = MappingProxyType(
    {"digest": Digest, "playlist": Playlist, "reorder": Reorder, "watchlist": Watchlist}
)


class PluginWarning(UserWarning):
    """Issued when an ``orchestrion.goal_templates`` plugin cannot be used (it is skipped)."""


def _instance(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def discover_plugins(entry_points: Iterable[metadata.EntryPoint] | None = None) -> dict[str, GoalTemplate]:
    """The plugin templates by name; ``entry_points`` defaults to the installed ones of the group.

    Passing the entry points in keeps discovery testable with real distributions on a
    temporary path rather than patching importlib.
    """
    found: dict[str, GoalTemplate] = {}
    points = metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points
    for point in points:
        try:
            template = _instance(point.load())
        except Exception as exc:  # a plugin's import error must not stop the proposals
            warnings.warn(
                f"goal template plugin {point.name!r} ({point.value}) failed to load: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        if not isinstance(template, GoalTemplate):
            warnings.warn(
                f"goal template plugin {point.name!r} ({point.value}) does not follow the GoalTemplate protocol "
                "(name, domain, variants, description, propose(ctx)); skipped",
                PluginWarning,
                stacklevel=2,
            )
            continue
        if template.name in BUILT_IN:
            warnings.warn(
                f"goal template plugin {point.name!r} may not replace the built-in {template.name!r}; "
                "give it another name",
                PluginWarning,
                stacklevel=2,
            )
            continue
        found[template.name] = template
    return found


def templates(
    names: Iterable[str] | None = None,
    *,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    extra: Iterable[GoalTemplate] = (),
) -> dict[str, GoalTemplate]:
    """Built-in and plugin templates by name (all of them, or only ``names``).

    ``extra`` adds templates directly (a notebook, a test) with the same rules as plugins.
    """
    every: dict[str, GoalTemplate] = {name: make() for name, make in BUILT_IN.items()}
    every.update(discover_plugins(entry_points))
    for template in extra:
        if template.name in BUILT_IN:
            raise UsageError(f"template {template.name!r} is built in; give the new one another name")
        every[template.name] = template
    if names is None:
        return every
    wanted = list(names)
    unknown = [n for n in wanted if n not in every]
    if unknown:
        raise UsageError(f"unknown goal templates {unknown}; available: {', '.join(sorted(every))}")
    return {n: every[n] for n in wanted}
