"""Master-key rotation: every data key re-wrapped by the new master key, old and new both
accepted meanwhile, nothing sealed touched, destroyed keys stay destroyed."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime

import pytest

from branchline_shared.crypto.keystore import (
    KeyDestroyed,
    PostgresClientKeyStore,
    PrivacyState,
    master_keys,
    prepare_key_database,
)
from branchline_shared.crypto.sealing import MasterKey, SealingError, seal, unseal
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_rotation_rewraps_every_key_without_touching_a_sealed_value(
    settings: BranchlineSettings,
) -> None:
    await prepare_key_database(settings.keys_database_url)
    old, new = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    assert old.key_id != new.key_id
    pool = await open_pool(settings.keys_database_url)
    try:
        before = PostgresClientKeyStore(pool, old)
        clients = [f"C-{i}" for i in range(7)]
        sealed = {}
        for client in clients:
            key = await before.key_for(client)
            sealed[client] = seal(
                "Zhuang Qiaolian", key, client_id=client, path="fields", sub_key="name"
            )
        hash_key = await before.service_secret("submission-hash", initial=b"h" * 32)
        # A key from before master-key ids existed (NULL): still found and re-wrapped.
        await pool.execute(
            "UPDATE pii_client_keys SET master_key_id = NULL WHERE client_id = 'C-0'"
        )
        assert await before.destroy("C-6") is not None
        wrapped_before = dict(
            await pool.fetch("SELECT client_id, wrapped_key FROM pii_client_keys")
        )

        # During the change: the new key is current, the old one still configured.
        during = PostgresClientKeyStore(pool, new, [old])
        report = await during.rotate(batch_size=2)  # several batches
        assert report.rewrapped == 7  # six clients and intake's submission-hash key
        assert report.destroyed == 1
        assert report.master_key_id == new.key_id
        again = await during.rotate()
        assert again.rewrapped == 0
        assert again.already_current == 7

        rows = await pool.fetch("SELECT client_id, wrapped_key, master_key_id FROM pii_client_keys")
        for row in rows:
            if row["client_id"] == "C-6":
                assert row["wrapped_key"] is None
                continue
            assert row["master_key_id"] == new.key_id
            assert bytes(row["wrapped_key"]) != bytes(wrapped_before[row["client_id"]])

        # After the change: only the new key is configured, and every value still opens.
        after = PostgresClientKeyStore(pool, new)
        for client in clients[:6]:
            opened = await after.existing_key(client)
            assert opened is not None
            assert unseal(
                sealed[client], opened, client_id=client, path="fields", sub_key="name"
            ) == ("Zhuang Qiaolian")
        with pytest.raises(KeyDestroyed):
            await after.existing_key("C-6")
        # A service secret keeps its value across the rotation (re-sent events stay duplicates).
        assert await after.service_secret("submission-hash", initial=b"n" * 32) == hash_key
        # The old key alone opens nothing any more.
        with pytest.raises(SealingError):
            await PostgresClientKeyStore(pool, old).existing_key("C-1")
    finally:
        await pool.close()


async def test_destroy_restrict_and_states(settings: BranchlineSettings) -> None:
    await prepare_key_database(settings.keys_database_url)
    pool = await open_pool(settings.keys_database_url)
    try:
        keys = PostgresClientKeyStore(pool, MasterKey(os.urandom(32)))
        await keys.key_for("C-A")
        await keys.key_for("C-B")
        await keys.restrict("C-B", at=_now(), source_event_id=uuid.uuid4())
        await keys.restrict("C-B", at=_now(), source_event_id=uuid.uuid4())  # idempotent
        key_id = await keys.destroy("C-A")
        assert key_id is not None
        assert await keys.destroy("C-A") == key_id  # idempotent: the same destroyed key
        assert await keys.destroy("C-NEVER") is None  # no key yet: none may ever be made
        with pytest.raises(KeyDestroyed):
            await keys.key_for("C-NEVER")
        assert await keys.states(["C-A", "C-B", "C-NEVER", "C-X"]) == {
            "C-A": PrivacyState.SHREDDED,
            "C-B": PrivacyState.RESTRICTED,
            "C-NEVER": PrivacyState.SHREDDED,
            "C-X": PrivacyState.ACTIVE,
        }
    finally:
        await pool.close()


def test_previous_master_keys_come_from_the_settings(settings: BranchlineSettings) -> None:
    old = os.urandom(32)
    configured = settings.model_copy(
        update={"master_keys_previous": [base64.b64encode(old).decode()]}
    )
    current, previous = master_keys(BranchlineSettings.model_validate(configured.model_dump()))
    assert current.key_id == MasterKey(settings.resolved_master_key()).key_id
    assert [k.key_id for k in previous] == [MasterKey(old).key_id]


def _now() -> datetime:
    return datetime.now(UTC)


def test_the_privacy_commands_run_against_the_configured_databases(
    settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from branchline_cli.main import app

    old, new = os.urandom(32), os.urandom(32)
    for name, value in {
        "BRANCHLINE_DATA_DIR": str(settings.data_dir),
        "BRANCHLINE_KEYS_DATABASE_URL": settings.keys_database_url,
        "BRANCHLINE_FOLLOWUP_DATABASE_URL": settings.followup_database_url,
        "BRANCHLINE_MASTER_KEY": base64.b64encode(old).decode(),
        # The legal-holds client signs its token with it; settings never generate it (#16).
        "BRANCHLINE_JWT_SECRET": settings.resolved_jwt_secret(),
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    async def one_key() -> None:
        await prepare_key_database(settings.keys_database_url)
        pool = await open_pool(settings.keys_database_url)
        try:
            await PostgresClientKeyStore(pool, MasterKey(old)).key_for("C-1")
        finally:
            await pool.close()

    asyncio.run(one_key())
    monkeypatch.setenv("BRANCHLINE_MASTER_KEY", base64.b64encode(new).decode())
    monkeypatch.setenv("BRANCHLINE_MASTER_KEYS_PREVIOUS", f'["{base64.b64encode(old).decode()}"]')
    rotated = runner.invoke(app, ["privacy", "rotate-master-key"])
    assert rotated.exit_code == 0, rotated.output
    assert f"master key {MasterKey(new).key_id}: 1 data keys re-wrapped" in rotated.output
    pending = runner.invoke(app, ["privacy", "shred-due", "--dry-run"])
    assert pending.exit_code == 0, pending.output
    assert "0 shredded, 0 pending" in pending.output
