"""Which of several payload classes an event's payload is, asked once per class.

The rules pick their guard by the payload's class: a chain of ``isinstance`` checks, or a
``match`` on class patterns, per candidate. The catalogue's models are pydantic models, whose
metaclass is an ``ABCMeta``: each ``isinstance`` against one runs ``ABCMeta.__instancecheck__``
(a Python call), and a new client's registration went through about fifteen of them on its
way through ``decide`` (#12: the decider was the largest piece of intake's CPU per batch
event). The answer depends on the payload's class alone, so it is computed by the same checks
in the same order the first time a class is seen and remembered: a pure function's memo,
bounded by the number of payload classes.
"""

from __future__ import annotations


class KindOf:
    """``KindOf(A, B, C)(payload)``: the first of ``A, B, C`` that ``payload`` is an instance
    of, in that order (as an ``isinstance`` chain or a ``match`` answers), or ``None``."""

    __slots__ = ("_kinds", "_known")

    def __init__(self, *kinds: type) -> None:
        self._kinds = kinds
        self._known: dict[type, type | None] = {}

    def __call__(self, payload: object) -> type | None:
        cls = type(payload)
        try:
            return self._known[cls]
        except KeyError:
            found = next((kind for kind in self._kinds if isinstance(payload, kind)), None)
            self._known[cls] = found
            return found
