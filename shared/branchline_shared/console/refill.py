"""A form page filled in again from what a refused request sent (#12): each field as long as
the form takes it, the names of those longer in ``too_long`` so that the form marks them
(``macros.too_long`` and ``macros.too_long_note``), never their values. The audit and the
followup consoles' form pages both build their way back with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

TOO_LONG = "too_long"
"""The query parameter naming the fields a refused request sent too long (names only)."""


def refilled(
    fields: Mapping[str, str], limits: Mapping[str, int], *, sent_as: str = ""
) -> dict[str, str]:
    """The form page's query: each field of ``limits`` as typed (whitespace trimmed) when at
    most its limit long and not blank, and the names of those longer in ``too_long``, in the
    order of ``limits``. ``sent_as``: the prefix the refused request's form gave the names
    (the work list's actions send its filters as ``f_status``, ...)."""
    kept: dict[str, str] = {}
    too_long: list[str] = []
    for name, limit in limits.items():
        value = fields.get(sent_as + name, "").strip()
        if len(value) > limit:
            too_long.append(name)  # its value is never sent back
        elif value:
            kept[name] = value
    if too_long:
        kept[TOO_LONG] = ",".join(too_long)
    return kept


def too_long_fields(sent: str | None, names: Iterable[str]) -> frozenset[str]:
    """The fields ``too_long`` names that the form has (any other name is ignored)."""
    return frozenset((sent or "").split(",")) & frozenset(names)
