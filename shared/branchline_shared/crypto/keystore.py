"""Clients' data keys, stored wrapped by the master key (PostgreSQL, the intake database)."""

from __future__ import annotations

from typing import Protocol

from branchline_shared.crypto.sealing import DataKey, MasterKey, new_data_key
from branchline_shared.postgres.migrations import migrate_database
from branchline_shared.postgres.pool import PgPool, open_pool


async def prepare_key_database(url: str) -> None:
    """Create and migrate the key database (idempotent, safe to race)."""
    await migrate_database(url, [("keys", "branchline_shared.crypto.migrations")])


async def open_key_store(url: str, master: MasterKey) -> tuple[PostgresClientKeyStore, PgPool]:
    """The key store of a service process, and its pool (the caller closes it)."""
    await prepare_key_database(url)
    pool = await open_pool(url, min_size=1, max_size=4)
    return PostgresClientKeyStore(pool, master), pool


class ClientKeyStore(Protocol):
    async def key_for(self, client_id: str) -> DataKey:
        """The client's data key, created on first use."""
        ...

    async def existing_key(self, client_id: str) -> DataKey | None: ...


class PostgresClientKeyStore:
    def __init__(self, pool: PgPool, master: MasterKey) -> None:
        self._pool = pool
        self._master = master

    async def key_for(self, client_id: str) -> DataKey:
        existing = await self.existing_key(client_id)
        if existing is not None:
            return existing
        candidate = new_data_key()
        await self._pool.execute(
            "INSERT INTO pii_client_keys (client_id, key_id, wrapped_key) VALUES ($1, $2, $3) "
            "ON CONFLICT (client_id) DO NOTHING",
            client_id,
            candidate.key_id,
            self._master.wrap(candidate, client_id),
        )
        stored = await self.existing_key(client_id)  # a concurrent writer may have won
        if stored is None:
            raise KeyDestroyed(client_id)
        return stored

    async def existing_key(self, client_id: str) -> DataKey | None:
        row = await self._pool.fetchrow(
            "SELECT key_id, wrapped_key FROM pii_client_keys WHERE client_id = $1", client_id
        )
        if row is None:
            return None
        if row["wrapped_key"] is None:
            raise KeyDestroyed(client_id)
        return self._master.unwrap(bytes(row["wrapped_key"]), row["key_id"], client_id)


class KeyDestroyed(Exception):
    """The client's key was destroyed (D-04 erasure): their personal data is gone for good."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"the data key of client {client_id} was destroyed (D-04)")
        self.client_id = client_id


class InMemoryClientKeyStore:
    """The fake key store for application tests."""

    def __init__(self) -> None:
        self._keys: dict[str, DataKey | None] = {}

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

    def destroy(self, client_id: str) -> None:
        self._keys[client_id] = None
