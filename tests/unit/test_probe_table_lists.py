"""The consumers' probes name each table of their list once (#12, Round 32): the worker's
``UNIT_WRITTEN_TABLES`` and the audit consumer's ``APPEND_WRITTEN_TABLES`` hold no table
twice, and each probe statement takes the write lock of exactly those tables, in their order,
each once. Whether the lists hold every table a unit writes is the integration tests'
(``test_followup_written_tables.py``, ``test_audit_written_tables.py``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pytest

from branchline_audit.adapters.ledger import APPEND_WRITTEN_TABLES, LEDGER_LOCK_PROBE
from branchline_followup.adapters.pg_schemas import SWAP_LOCK_PROBE, UNIT_WRITTEN_TABLES

pytestmark = pytest.mark.unit

LISTS = [(UNIT_WRITTEN_TABLES, SWAP_LOCK_PROBE[0]), (APPEND_WRITTEN_TABLES, LEDGER_LOCK_PROBE[0])]
IDS = ["followup", "audit"]


@pytest.mark.parametrize(("tables", "probe"), LISTS, ids=IDS)
def test_a_list_holds_each_table_once(tables: Sequence[tuple[str, str]], probe: str) -> None:
    assert [t for t, n in Counter(t for t, _ in tables).items() if n > 1] == []


@pytest.mark.parametrize(("tables", "probe"), LISTS, ids=IDS)
def test_the_probe_locks_each_listed_table_once_and_nothing_else(
    tables: Sequence[tuple[str, str]], probe: str
) -> None:
    inserted = re.findall(r"INSERT INTO (\S+) \(", probe)
    assert inserted == [t for t, _ in tables]
    assert probe.count("INSERT INTO") == len(tables)
    assert len(set(inserted)) == len(inserted)
