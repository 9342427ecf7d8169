"""Settings renamed for what they configure, with their former names still read.

A setting once named for the service that first read it (``intake_new_client_days``) is named
for what it configures (``lifecycle_new_client_days``) once a second service reads it; the
former environment variable and keyword keep working, so no deployment breaks.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices

ENV_PREFIX = "BRANCHLINE_"

FORMER_NAMES: dict[str, str] = {}
"""Former field name -> current field name (docs/configuration.md, "Former names")."""

_ENV_NAMES: dict[str, frozenset[str]] = {}
"""Current field name -> its environment variables (lower case, as they are read)."""


def renamed(current: str, former: str) -> AliasChoices:
    """The field's environment variables: its current name first, then its former one.

    (pydantic-settings reads an aliased field only under its aliases, without the prefix.)
    """
    names = (f"{ENV_PREFIX}{current.upper()}", f"{ENV_PREFIX}{former.upper()}")
    FORMER_NAMES[former] = current
    _ENV_NAMES[current] = frozenset(name.lower() for name in names)
    return AliasChoices(*names)


def with_current_names(values: Any) -> Any:
    """Keyword arguments given under a former name, under the current one.

    A keyword wins over the environment, as it does under the current name: the field's
    environment values are dropped. A value under the current name wins over the former one.
    """
    if not isinstance(values, dict) or not FORMER_NAMES.keys() & values.keys():
        return values
    renamed_here = {FORMER_NAMES[key] for key in values if key in FORMER_NAMES}
    shadowed = frozenset().union(*(_ENV_NAMES[current] for current in renamed_here))
    moved = {
        key: value
        for key, value in values.items()
        if key not in FORMER_NAMES and str(key).lower() not in shadowed
    }
    for key, value in values.items():
        if key in FORMER_NAMES:
            moved.setdefault(FORMER_NAMES[key], value)
    return moved
