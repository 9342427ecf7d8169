"""Clients' data keys, stored wrapped by the master key (PostgreSQL, their own database shared
by intake and followup), and the D-04 register of restricted clients.

Key hierarchy (docs/privacy.md): the master key (configured, never stored in a database)
wraps one AES-256 data key per client; the data key seals that client's personal values.
Destroying a client's data key (``destroy``) crypto-shreds every copy of their personal data
at once: event stores, topics, read models, exports and backups hold only ciphertext.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from branchline_shared.crypto.sealing import (
    DataKey,
    MasterKey,
    SealingError,
    new_data_key,
)
from branchline_shared.postgres.migrations import migrate_database
from branchline_shared.postgres.pool import PgPool, open_pool

if TYPE_CHECKING:
    from branchline_shared.settings import PersonalDataSettings

SERVICE_KEY_PREFIX = "/service/"
"""Row ids of services' own secrets in the key table (a client id never holds a "/")."""
DESTROYED_WITHOUT_KEY = "-"
"""``key_id`` of a client shredded before any key was made: no key may ever be made for them."""


class PrivacyState(StrEnum):
    """What may be done with a client's personal data (D-04)."""

    ACTIVE = "active"
    RESTRICTED = "restricted"
    """Erasure requested: shown to nobody, not processed, awaiting destruction."""
    SHREDDED = "shredded"
    """The data key is destroyed: nothing readable is left."""


async def prepare_key_database(url: str) -> None:
    """Create and migrate the key database (idempotent, safe to race)."""
    await migrate_database(url, [("keys", "branchline_shared.crypto.migrations")])


def master_keys(settings: PersonalDataSettings) -> tuple[MasterKey, tuple[MasterKey, ...]]:
    """The current master key and those being rotated away from."""
    import base64

    previous: list[MasterKey] = []
    for configured in settings.master_keys_previous:
        raw = base64.b64decode(configured.get_secret_value())
        previous.append(MasterKey(raw))
    return MasterKey(settings.resolved_master_key()), tuple(previous)


async def open_key_store(
    url: str, master: MasterKey, previous: Sequence[MasterKey] = ()
) -> tuple[PostgresClientKeyStore, PgPool]:
    """The key store of a service process, and its pool (the caller closes it)."""
    await prepare_key_database(url)
    pool = await open_pool(url, min_size=1, max_size=4)
    return PostgresClientKeyStore(pool, master, previous), pool


async def open_configured_key_store(
    settings: PersonalDataSettings,
) -> tuple[PostgresClientKeyStore, PgPool]:
    """:func:`open_key_store` with the master keys the settings configure."""
    master, previous = master_keys(settings)
    return await open_key_store(settings.keys_database_url, master, previous)


class ClientKeyStore(Protocol):
    async def key_for(self, client_id: str) -> DataKey:
        """The client's data key, created on first use."""
        ...

    async def existing_key(self, client_id: str) -> DataKey | None: ...

    async def restrict(
        self, client_id: str, *, at: datetime, source_event_id: uuid.UUID
    ) -> None: ...

    async def states(self, client_ids: Sequence[str]) -> dict[str, PrivacyState]: ...

    async def destroy(self, client_id: str) -> str | None: ...


class KeyDestroyed(Exception):
    """The client's key was destroyed (D-04 erasure): their personal data is gone for good."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"the data key of client {client_id} was destroyed (D-04)")
        self.client_id = client_id


@dataclass(frozen=True)
class RotationReport:
    rewrapped: int
    """Data keys now wrapped by the current master key that were not before."""
    already_current: int
    destroyed: int
    """Destroyed keys (nothing to re-wrap)."""
    master_key_id: str


class PostgresClientKeyStore:
    def __init__(self, pool: PgPool, master: MasterKey, previous: Sequence[MasterKey] = ()) -> None:
        self._pool = pool
        self._master = master
        self._by_id = {k.key_id: k for k in (*previous, master)}

    @property
    def master_key_id(self) -> str:
        return self._master.key_id

    async def key_for(self, client_id: str) -> DataKey:
        existing = await self.existing_key(client_id)
        if existing is not None:
            return existing
        candidate = new_data_key()
        await self._pool.execute(
            "INSERT INTO pii_client_keys (client_id, key_id, wrapped_key, master_key_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO NOTHING",
            client_id,
            candidate.key_id,
            self._master.wrap(candidate, client_id),
            self._master.key_id,
        )
        stored = await self.existing_key(client_id)  # a concurrent writer may have won
        if stored is None:
            raise KeyDestroyed(client_id)
        return stored

    async def existing_key(self, client_id: str) -> DataKey | None:
        row = await self._pool.fetchrow(
            "SELECT key_id, wrapped_key, master_key_id FROM pii_client_keys WHERE client_id = $1",
            client_id,
        )
        if row is None:
            return None
        if row["wrapped_key"] is None:
            raise KeyDestroyed(client_id)
        return self._unwrap(
            client_id, row["key_id"], bytes(row["wrapped_key"]), row["master_key_id"]
        )

    def _unwrap(
        self, client_id: str, key_id: str, wrapped: bytes, master_key_id: str | None
    ) -> DataKey:
        if master_key_id is not None:
            master = self._by_id.get(master_key_id)
            if master is None:
                raise SealingError(
                    f"the data key of {client_id} is wrapped by master key {master_key_id}, "
                    "which is not configured (BRANCHLINE_MASTER_KEYS_PREVIOUS during a rotation)"
                )
            return master.unwrap(wrapped, key_id, client_id)
        # Wrapped before master keys had ids: by one of the configured keys, newest first.
        for master in reversed(list(self._by_id.values())):
            try:
                return master.unwrap(wrapped, key_id, client_id)
            except SealingError:
                continue
        raise SealingError(f"the data key of {client_id} unwraps with no configured master key")

    async def service_secret(self, name: str, *, initial: bytes) -> bytes:
        """A service's own 32-byte secret (e.g. the key of intake's submission hashes), stored
        wrapped like a data key so a master-key rotation re-wraps it and its value survives
        the rotation. ``initial`` is its value the first time it is asked for."""
        row_id = f"{SERVICE_KEY_PREFIX}{name}"  # "/" is never in a client id
        stored = await self.existing_key(row_id)
        if stored is None:
            await self._pool.execute(
                "INSERT INTO pii_client_keys (client_id, key_id, wrapped_key, master_key_id) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO NOTHING",
                row_id,
                name,
                self._master.wrap(DataKey(name, initial), row_id),
                self._master.key_id,
            )
            stored = await self.existing_key(row_id)
        if stored is None:
            raise SealingError(f"service secret {name} is missing")
        return stored.secret

    async def destroy(self, client_id: str) -> str | None:
        """Destroy the client's data key for good (crypto-shredding, D-04); returns the
        destroyed key's id (``None``: the client never had one, and now never will).
        Idempotent: destroying again returns the same id."""
        key_id = await self._pool.fetchval(
            "UPDATE pii_client_keys SET wrapped_key = NULL, "
            "destroyed_at = coalesce(destroyed_at, now()) WHERE client_id = $1 RETURNING key_id",
            client_id,
        )
        if key_id is None:
            await self._pool.execute(
                "INSERT INTO pii_client_keys (client_id, key_id, wrapped_key, destroyed_at) "
                "VALUES ($1, $2, NULL, now()) ON CONFLICT (client_id) DO UPDATE SET "
                "wrapped_key = NULL, destroyed_at = coalesce(pii_client_keys.destroyed_at, now())",
                client_id,
                DESTROYED_WITHOUT_KEY,
            )
            return None
        return None if key_id == DESTROYED_WITHOUT_KEY else str(key_id)

    async def restrict(self, client_id: str, *, at: datetime, source_event_id: uuid.UUID) -> None:
        """Register the client as restricted (erasure requested, D-04); idempotent."""
        await self._pool.execute(
            "INSERT INTO pii_client_restrictions (client_id, restricted_at, source_event_id) "
            "VALUES ($1, $2, $3) ON CONFLICT (client_id) DO NOTHING",
            client_id,
            at,
            source_event_id,
        )

    async def states(self, client_ids: Sequence[str]) -> dict[str, PrivacyState]:
        """The privacy state of each client (shredded beats restricted; absent: active)."""
        wanted = sorted(set(client_ids))
        if not wanted:
            return {}
        rows = await self._pool.fetch(
            "SELECT c.client_id, "
            "EXISTS (SELECT 1 FROM pii_client_keys k WHERE k.client_id = c.client_id "
            "        AND k.wrapped_key IS NULL) AS shredded, "
            "EXISTS (SELECT 1 FROM pii_client_restrictions r WHERE r.client_id = c.client_id) "
            "        AS restricted "
            "FROM unnest($1::text[]) AS c(client_id)",
            wanted,
        )
        states: dict[str, PrivacyState] = {}
        for row in rows:
            if row["shredded"]:
                states[row["client_id"]] = PrivacyState.SHREDDED
            elif row["restricted"]:
                states[row["client_id"]] = PrivacyState.RESTRICTED
            else:
                states[row["client_id"]] = PrivacyState.ACTIVE
        return states

    async def rotate(self, *, batch_size: int = 500) -> RotationReport:
        """Re-wrap every data key not yet wrapped by the current master key (rotation).

        The data keys themselves do not change, so no sealed value and no event is touched.
        Batches commit one by one (``FOR UPDATE SKIP LOCKED``): an interrupted rotation is
        resumed by running it again, and services keep working meanwhile because they are
        configured with both the old and the new master key."""
        current = self._master.key_id
        rewrapped = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT client_id, key_id, wrapped_key, master_key_id FROM pii_client_keys "
                    "WHERE wrapped_key IS NOT NULL AND master_key_id IS DISTINCT FROM $1 "
                    "ORDER BY client_id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    current,
                    batch_size,
                )
                for row in rows:
                    key = self._unwrap(
                        row["client_id"],
                        row["key_id"],
                        bytes(row["wrapped_key"]),
                        row["master_key_id"],
                    )
                    await conn.execute(
                        "UPDATE pii_client_keys SET wrapped_key = $2, master_key_id = $3, "
                        "rewrapped_at = now() WHERE client_id = $1",
                        row["client_id"],
                        self._master.wrap(key, row["client_id"]),
                        current,
                    )
            rewrapped += len(rows)
            if len(rows) < batch_size:
                break
        counts = await self._pool.fetchrow(
            "SELECT count(*) FILTER (WHERE wrapped_key IS NOT NULL AND master_key_id = $1) "
            "AS current, count(*) FILTER (WHERE wrapped_key IS NULL) AS destroyed, "
            "count(*) FILTER (WHERE wrapped_key IS NOT NULL AND master_key_id "
            "IS DISTINCT FROM $1) AS left FROM pii_client_keys",
            current,
        )
        assert counts is not None  # an aggregate always answers one row
        if counts["left"]:
            raise SealingError(
                f"{counts['left']} data keys are still wrapped by another master key "
                "(locked by a concurrent rotation?): run the rotation again"
            )
        return RotationReport(
            rewrapped=rewrapped,
            already_current=int(counts["current"]) - rewrapped,
            destroyed=int(counts["destroyed"]),
            master_key_id=current,
        )


class InMemoryClientKeyStore:
    """The fake key store for application tests."""

    def __init__(self) -> None:
        self._keys: dict[str, DataKey | None] = {}
        self._restricted: set[str] = set()

    async def key_for(self, client_id: str) -> DataKey:
        if client_id not in self._keys:
            self._keys[client_id] = new_data_key()
        key = self._keys[client_id]
        if key is None:
            raise KeyDestroyed(client_id)
        return key

    async def existing_key(self, client_id: str) -> DataKey | None:
        if client_id not in self._keys:
            return None
        key = self._keys[client_id]
        if key is None:
            raise KeyDestroyed(client_id)
        return key

    async def restrict(self, client_id: str, *, at: datetime, source_event_id: uuid.UUID) -> None:
        self._restricted.add(client_id)

    async def states(self, client_ids: Sequence[str]) -> dict[str, PrivacyState]:
        def state(client_id: str) -> PrivacyState:
            if client_id in self._keys and self._keys[client_id] is None:
                return PrivacyState.SHREDDED
            if client_id in self._restricted:
                return PrivacyState.RESTRICTED
            return PrivacyState.ACTIVE

        return {c: state(c) for c in client_ids}

    async def destroy(self, client_id: str) -> str | None:
        key = self._keys.get(client_id)
        self._keys[client_id] = None
        return key.key_id if key is not None else None
