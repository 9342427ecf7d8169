"""Reading a module's calls from its syntax tree: the source-holding tests (which function a
file calls, and how) share this."""

from __future__ import annotations

import ast


def called_name(call: ast.Call) -> str | None:
    """The name a call calls: ``f(...)`` -> ``f``, ``a.b.f(...)`` -> ``f``; None otherwise."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
