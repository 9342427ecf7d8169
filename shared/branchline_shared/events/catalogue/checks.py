"""The validator shapes that several payload models share, written once.

Each helper keeps the exact message (and error location) the models had when they wrote the
check themselves, so a refusal reads the same whichever family it comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, model_validator

__all__ = ["client_was_told", "times_in_order", "unique"]

_V = TypeVar("_V", bound=Hashable)


def unique(what: str) -> AfterValidator:
    """A tuple field whose values must not repeat (purposes, disclosure items, client types)."""

    def check(values: tuple[_V, ...]) -> tuple[_V, ...]:
        if len(set(values)) != len(values):
            raise ValueError(f"{what} must not repeat a value")
        return values

    return AfterValidator(check)


def times_in_order(earlier: str, later: str, *, strictly: bool) -> Any:
    """A model check: the time under ``later`` (when present) is after the one under
    ``earlier`` (``strictly``) or not before it. Assign it in the model's body:
    ``_ordered = times_in_order("started_at", "ended_at", strictly=False)``."""
    message = (
        f"{later} must be after {earlier}" if strictly else f"{later} must not be before {earlier}"
    )

    def check(model: BaseModel) -> BaseModel:
        first: datetime | None = getattr(model, earlier)
        second: datetime | None = getattr(model, later)
        if first is None or second is None:
            return model
        if second < first or (strictly and second == first):
            raise ValueError(message)
        return model

    return _after_model(check)


def client_was_told(field: str = "client_told") -> Any:
    """A model check of a renegotiated promise (D-17): ``field`` must be true, since a promise
    is renegotiated with the client, never behind their back."""

    def check(model: BaseModel) -> BaseModel:
        if getattr(model, field) is not True:
            raise ValueError(f"{field} must be true: a promise is renegotiated with the client")
        return model

    return _after_model(check)


def _after_model(check: Callable[[BaseModel], BaseModel]) -> Any:
    return model_validator(mode="after")(check)
