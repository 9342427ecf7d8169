"""The ports of audit's use cases: the ledger and its checkpoints, exactly as the use cases
call them (docs/audit.md, "Ledger behind ports"; the style of ADR-0013).

Use cases type against these protocols and never import an adapter; the composition root
(``bootstrap.py``) builds the PostgreSQL implementations (``adapters/ledger.py``,
``adapters/checkpoints.py``) and hands them in through :class:`AuditContext`. The ledger's
lock is the adapter's business: a use case that must decide and append with nobody in between
(a legal hold) calls :meth:`AuditLedger.append_decided`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.merkle import RangeHasher
from branchline_audit.domain.personal import ClientDataState
from branchline_audit.domain.relationships import LedgerFact
from branchline_audit.domain.staff import StaffRetentionState
from branchline_audit.domain.subtrees import NodeKey, Requirements
from branchline_audit.domain.verification import (
    RefusalHint,
    Segment,
    SegmentResult,
    StoredCheckpoint,
    StoredEntry,
)
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection

NoteSigner = Callable[[int, bytes], str]
"""``sign(tree_size, root) -> signed checkpoint note``."""


class AuditLedger(Protocol):
    """The insert-only, hash-chained ledger (D-11): appends, reads, Merkle ranges, prunes."""

    async def append(
        self,
        events: Sequence[dict[str, Any]],
        *,
        now: datetime,
        positions: Mapping[uuid.UUID, SourcePosition] | None = None,
    ) -> int:
        """Append events not yet in the ledger (by event id); how many were new."""
        ...

    async def append_decided(
        self,
        event_types: Sequence[str],
        decide: Callable[[list[LedgerFact]], dict[str, Any]],
        *,
        now: datetime,
    ) -> int:
        """Under the ledger's lock: ``decide`` builds the event from the facts of
        ``event_types`` (raising to refuse), the event is appended; its position."""
        ...

    async def entries(
        self, filters: LedgerFilters, *, after_position: int, limit: int, up_to: int | None = None
    ) -> list[StoredEntry]: ...

    async def entry(self, position: int) -> StoredEntry | None: ...

    async def first_altered(self, filters: LedgerFilters) -> StoredEntry | None:
        """The first entry of ``filters`` holding a time no append writes (#12)."""
        ...

    def scan_stored(
        self, *, page_size: int = 2000, after_position: int = 0
    ) -> AsyncIterator[StoredEntry]:
        """Every entry with its stored columns, in ledger order (constant memory)."""
        ...

    def scan_rows(
        self, *, page_size: int = 5000, after_position: int = 0, through: int | None = None
    ) -> AsyncIterator[Sequence[Any]]:
        """Every stored row (``ROW_FIELDS`` of :mod:`~branchline_audit.domain.verification`)
        in ledger order, a page at a time (constant memory), from after ``after_position``
        up to ``through`` (None: to the end)."""
        ...

    async def size(self) -> int: ...

    async def client_states(self, client_ids: Iterable[str]) -> dict[str, ClientDataState]:
        """What may be shown of each client (D-04)."""
        ...

    async def facts(
        self, event_types: Sequence[str], client_id: str | None = None
    ) -> list[LedgerFact]:
        """Entries of ``event_types`` (of ``client_id`` when given), in ledger order."""
        ...

    async def staff_retention(self) -> StaffRetentionState:
        """The ends of employment and gift clients recorded for members of staff (D-11)."""
        ...

    async def range_hasher(
        self, ranges: Iterable[tuple[int, int]], *, conn: PgConnection | None = None
    ) -> RangeHasher:
        """A hasher answering ``ranges``; ``conn`` is the one :meth:`AuditCheckpoints.create`
        hands its ``range_root`` (same transaction), else None."""
        ...

    async def tree_data(
        self, needs: Requirements, *, conn: PgConnection | None = None
    ) -> tuple[dict[int, bytes], dict[NodeKey, bytes]]:
        """The entry hashes (by leaf index) and cached nodes ``needs`` names; what is not
        stored is missing from them."""
        ...

    async def expired_candidates(
        self,
        *,
        before: datetime,
        after_position: int,
        limit: int,
        clients: Sequence[str] | None = None,
    ) -> list[StoredEntry]:
        """Up to ``limit`` unpruned entries appended before ``before``, in (appended_at,
        position) order, after the entry at ``after_position`` (the previous page's last
        candidate; 0 for the first page). Append times need not follow positions (#12).
        With ``clients``: only entries without a client or of one of them."""
        ...

    async def prune(
        self, markers: dict[int, dict[str, Any]], *, now: datetime, record: dict[str, Any]
    ) -> int:
        """Replace the events at ``markers``' positions by their markers and append
        ``record``, in one transaction; how many were pruned."""
        ...


class AuditCheckpoints(Protocol):
    """Signed checkpoints of the ledger (insert-only like it)."""

    async def latest(self) -> StoredCheckpoint | None: ...

    async def at(self, tree_size: int) -> StoredCheckpoint | None: ...

    async def all(self) -> list[StoredCheckpoint]: ...

    async def sizes_below(self, tree_size: int) -> list[int]:
        """The sizes of the non-empty checkpoints below ``tree_size``, ascending."""
        ...

    async def from_to(self, low: int, high: int) -> list[StoredCheckpoint]:
        """The non-empty checkpoints from size ``low`` to ``high``, ascending, at most three."""
        ...

    async def refusal_hint(self, tree_size: int) -> RefusalHint | None:
        """The latest stored hint whose failing checkpoint is at or below ``tree_size``."""
        ...

    async def record_refusal_hint(
        self, tree_size: int, hint: RefusalHint, *, now: datetime
    ) -> None:
        """Store where a refusal at ``tree_size`` located the rewrite (a cache, #12), the
        hints it supersedes deleted with it (at most 16 kept, Round 37)."""
        ...

    async def unsigned_since(self) -> tuple[int, int, datetime | None]:
        """``(latest checkpoint size, ledger size, appended_at of the first unsigned entry)``."""
        ...

    async def create(
        self,
        sign: NoteSigner,
        range_root: Callable[[Any, int], Any],
        *,
        now: datetime,
    ) -> StoredCheckpoint:
        """Sign and store a checkpoint at the ledger's current size (or return the one
        there); ``range_root(conn, size)`` is awaited for the root over ``size`` leaves."""
        ...


class SegmentVerifiers(Protocol):
    """Verifies segments of the ledger each apart, at once (processes of their own, #12)."""

    @property
    def processes(self) -> int:
        """How many segments to split the ledger into, the first verified by the caller
        (1: verify it in one pass)."""
        ...

    @property
    def min_entries(self) -> int:
        """Ledgers smaller than this are verified in one pass."""
        ...

    async def verify(
        self, segments: Sequence[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult]:
        """Each segment's :class:`~branchline_audit.domain.verification.SegmentAuditor`
        result, in order."""
        ...

    async def verify_apart(
        self, segments: Sequence[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult | None]:
        """As :meth:`verify`, every segment apart from the caller's event loop; None for a
        segment that could not be verified there (the caller verifies it); cancelled, no
        verifying work is left running."""
        ...


class VerifySlotLost(Exception):
    """A verify's slot stopped being held while the verify ran (its lock's session ended, or
    the session is not the one the lock was taken on): the verify is stopped rather than run
    on beyond the limit (#12, docs/audit.md "The API's verify")."""


class VerifySlots(Protocol):
    """The API's verifies running at once, across every API process of a deployment (#12,
    docs/audit.md "The API's verify")."""

    @property
    def limit(self) -> int:
        """How many may run at once."""
        ...

    def held(self) -> AbstractAsyncContextManager[bool]:
        """Whether a slot is held for the block (False: all are taken, nothing is held);
        freed when the block ends however it ends, the holding process's death included. A
        slot found lost while the block runs cancels the block, which then raises
        :class:`VerifySlotLost`."""
        ...
