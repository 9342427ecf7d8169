"""The tools build the service's checked ledger (D-11, #12, Round 31): ``audit verify``, the
dead-letter replay and the chaos test's verify take ``bootstrap.audit_context``'s ledger (its
reads of legal holds and relationship ends held against their signed checkpoint), as the prune
and holds commands did since Round 29. Until Round 31 those three built ``PostgresLedger(pool)``
(none read holds, and a bare ledger refuses to: ``test_audit_unchecked_facts.py``). The one
bare ledger left is verify's without the log's key (the chain checked alone, no hold read)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.support.source_calls import called_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
TOOLS = (
    "cli/branchline_cli/audit_commands.py",
    "cli/branchline_cli/dlq_commands.py",
    "tests/chaos/test_nothing_accepted_is_lost.py",
)


def _calls(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and called_name(node) == name


def _bare_ledgers(tree: ast.AST) -> list[int]:
    """Lines of ``PostgresLedger(...)`` calls, except the else-branch of a conditional whose
    other branch is ``audit_context(...)``'s (verify without the log's key)."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.IfExp)
            and _calls(node.orelse, "PostgresLedger")
            and any(_calls(n, "audit_context") for n in ast.walk(node.body))
        ):
            allowed.add(id(node.orelse))
    return [
        node.lineno
        for node in ast.walk(tree)
        if _calls(node, "PostgresLedger") and id(node) not in allowed
    ]


@pytest.mark.parametrize("path", TOOLS, ids=[Path(p).stem for p in TOOLS])
def test_a_tool_builds_the_checked_ledger(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    assert _bare_ledgers(tree) == [], f"{path}: build the ledger with audit_context (D-11)"
    assert any(
        isinstance(n, ast.Call) and called_name(n) == "audit_context" for n in ast.walk(tree)
    )
