"""What is wrong with which field of an input, in words that never echo the input.

Use cases name the offending fields of a refused input with :class:`FieldIssue`; the HTTP
edge lists them as a problem's ``errors`` (docs/api.md). Pydantic's errors become issues
through :func:`field_issues`, which drops what the caller sent (D-04: a refused value may be
personal data).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldIssue:
    field: str
    """The dotted path of the field (``data.phone``, ``type``, ``body``)."""
    message: str
    type: str
    """A short machine word: ``missing``, ``forbidden``, ``conflict``, pydantic's error types."""

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


def printable_field(name: str, limit: int = 200) -> str:
    """A field path as a problem may show it: a key sent with control characters or a lone
    surrogate is escaped (it could not even be encoded as UTF-8), and long ones are cut."""
    shown = "".join(
        c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else f"\\u{ord(c):04x}"
        for c in name
    )
    return shown if len(shown) <= limit else shown[:limit] + "..."


def field_issues(errors: Iterable[Mapping[str, Any]]) -> list[FieldIssue]:
    """pydantic errors as issues with dotted field paths.

    Never echoes what the caller sent (D-04: a refused value may be personal data): pydantic's
    ``input`` is dropped, a refused object key (the caller's text) is named ``<key>``, and a
    message quoting the input is replaced by one that does not."""
    out: list[FieldIssue] = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body",)]
        parts = [
            "<key>" if i + 1 < len(loc) and loc[i + 1] == "[key]" else str(p)
            for i, p in enumerate(loc)
            if p != "[key]"
        ]
        out.append(
            FieldIssue(
                field=printable_field(".".join(parts)) or "body",
                message=printable_field(_message_without_input(err), 500),
                type=err.get("type", ""),
            )
        )
    return out


_QUOTED = re.compile(r"`[^`]*`")


def _message_without_input(err: Mapping[str, Any]) -> str:
    message = _QUOTED.sub("`…`", str(err.get("msg", "")))  # e.g. "found `W` at 0" (uuid)
    sent = err.get("input")
    if isinstance(sent, str) and len(sent) >= 3 and sent in message:
        return f"invalid value ({err.get('type', 'value_error')})"
    return message
