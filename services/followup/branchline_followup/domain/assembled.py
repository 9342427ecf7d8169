"""Frozen domain models made from values already checked, without validating them again (#12).

The followup worker makes a task, its creation command and its two timers for every task the
rules create, each a pydantic model validated from values that are already what validation
keeps: ids that are ``uuid.UUID``, enum members, texts that are ``str``, instants in UTC
(checked where they came in: an event's envelope, the policy's deadline arithmetic). That
validation was about 15 µs per created task on the worker's path; pydantic's own
``model_construct`` is slower still (a Python loop over every field, its aliases and
defaults). :func:`assembled` makes the object ``Model(**values)`` would make, as
``model_construct`` makes it: the field values (every field, in the model's order, defaults
included), the fields set (those named in the call), no extra fields, no private state.

A caller checks that every value is of the exact type validation keeps unchanged before it
assembles, and otherwise validates as before (so a value validation would refuse or convert
gets the model's own error or conversion): ``tests/unit/followup/test_followup_assembled.py``
compares both, field by field and with their fields set, over random inputs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def assembled(cls: type[M], values: dict[str, Any], fields_set: frozenset[str]) -> M:
    """``cls(**...)`` of checked ``values`` (all its fields, in order), ``fields_set`` named."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(fields_set))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def is_utc(moment: object) -> bool:
    """A ``datetime`` (not a subclass) in UTC: what a ``UtcDatetime`` field keeps as it is."""
    return type(moment) is datetime and moment.tzinfo is UTC


def is_text(value: object) -> bool:
    return type(value) is str


def is_uuid(value: object) -> bool:
    return type(value) is uuid.UUID
