"""A test's service databases are copies of the session's migrated templates
(tests/support/templates.py): the copy, once its service's ``prepare_database`` has run, is
the same database a fresh migration makes, down to grants and the database's own settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import prepare_database as prepare_audit
from branchline_followup.bootstrap import prepare_database as prepare_followup
from branchline_intake.bootstrap import prepare_database as prepare_intake
from branchline_shared.crypto.keystore import prepare_key_database
from branchline_shared.settings import BranchlineSettings
from tests.support.stack import Infra, make_settings, unique
from tests.support.templates import TemplateDatabases, fresh_requested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FINGERPRINT = {
    "relations": """SELECT n.nspname, c.relname, c.relkind, c.reloptions, c.relacl::text,
                           pg_get_userbyid(c.relowner)
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg_toast%'
                     ORDER BY 1, 2""",
    "columns": """SELECT table_schema, table_name, column_name, data_type, column_default,
                         is_nullable
                    FROM information_schema.columns
                   WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                   ORDER BY 1, 2, 3""",
    "indexes": "SELECT schemaname, indexname, indexdef FROM pg_indexes"
    " WHERE schemaname NOT IN ('pg_catalog') ORDER BY 1, 2",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                        FROM pg_constraint WHERE connamespace NOT IN
                             ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                       ORDER BY 1, 2""",
    "functions": """SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text,
                           pg_get_userbyid(p.proowner)
                      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND p.prokind = 'f' ORDER BY 1""",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)"
    " FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    "schemas": "SELECT nspname, nspacl::text FROM pg_namespace ORDER BY 1",
    "migrations": "SELECT service, version, name, checksum FROM schema_migrations ORDER BY 1, 2",
    "settings": """SELECT setrole, setconfig FROM pg_db_role_setting
                    WHERE setdatabase = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())""",
}


async def fingerprint(url: str) -> dict[str, list[Any]]:
    conn = await asyncpg.connect(url)
    try:
        return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in FINGERPRINT.items()}
    finally:
        await conn.close()


async def prepare_all(settings: BranchlineSettings) -> None:
    await prepare_intake(settings)
    await prepare_followup(settings)
    await prepare_key_database(settings.keys_database_url)
    await prepare_audit(settings)


def urls(settings: BranchlineSettings) -> dict[str, str]:
    return {
        "intake": settings.intake_database_url,
        "followup": settings.followup_database_url,
        "keys": settings.keys_database_url,
        "audit": settings.audit_database_url,
    }


@pytest.fixture
def copied(infra: Infra) -> None:
    if fresh_requested(os.environ.get("BRANCHLINE_TEST_FRESH_DATABASES")):
        pytest.skip("BRANCHLINE_TEST_FRESH_DATABASES: every database is migrated fresh")


async def test_a_tests_databases_are_copies_of_the_migrated_templates(
    infra: Infra, tmp_path: Path, copied: None
) -> None:
    settings = make_settings(infra, tmp_path)
    admin = await asyncpg.connect(infra.postgres_admin_url)
    try:
        began = await admin.fetchval("SELECT clock_timestamp()")
    finally:
        await admin.close()
    await prepare_all(settings)
    for url in urls(settings).values():
        conn = await asyncpg.connect(url)
        try:
            # A copy keeps the template's record of when each migration was applied: all of
            # them before this test began (a fresh migration would have applied them now).
            applied = await conn.fetch("SELECT applied_at FROM schema_migrations")
        finally:
            await conn.close()
        assert applied
        assert all(row["applied_at"] < began for row in applied), url


async def test_a_copied_database_is_the_database_a_fresh_migration_makes(
    infra: Infra, tmp_path: Path, copied: None
) -> None:
    copy = make_settings(infra, tmp_path / "copy")
    tag = unique("fresh")  # not a make_settings name: created empty, migrated from scratch
    fresh = make_settings(
        infra,
        tmp_path / "fresh",
        **{
            f"{service}_database_url": infra.database_url(f"{tag}_{service}")
            for service in ("intake", "followup", "keys", "audit")
        },
    )
    await prepare_all(copy)
    await prepare_all(fresh)
    for service, url in urls(copy).items():
        assert await fingerprint(url) == await fingerprint(urls(fresh)[service]), service
    # followup's migration 002 sets the database's search_path: a copy carries it too.
    assert await search_path(copy) == await search_path(fresh) == "fu_read, public"


async def search_path(settings: BranchlineSettings) -> str:
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        return str(await conn.fetchval("SHOW search_path"))
    finally:
        await conn.close()


def test_only_the_names_make_settings_gives_are_copied(infra: Infra) -> None:
    templates = TemplateDatabases(infra.postgres_admin_url)
    assert (
        templates.template_for(infra.database_url("t0123456789ab_followup"))
        == (templates.names["followup"])
    )
    for name in ("fresh0123456789ab_followup", "t0123456789ab_other", "x", "t01_intake"):
        assert templates.template_for(infra.database_url(name)) is None
