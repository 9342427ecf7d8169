"""The migration runner's pure parts: a file's directives, its statements, the checksums it
accepts; and the shipped series checked against them (#12: index builds on tables that can
be large run CONCURRENTLY, and a database migrated with the former texts still starts)."""

from __future__ import annotations

import re

import pytest
from tests.support.migration_texts import PACKAGES, former_file, former_texts, sha256

from branchline_shared.postgres.migrations import (
    Migration,
    MigrationError,
    Statement,
    concurrent_statements,
    load_migrations,
    parse_directives,
    split_statements,
)

pytestmark = pytest.mark.unit

A = "a" * 64
B = "b" * 64


def test_a_file_without_directives_runs_in_a_transaction_and_accepts_only_itself() -> None:
    migration = Migration(1, "x", "CREATE TABLE t (id int);\n")
    assert migration.directives.transactional
    assert migration.directives.former_checksums == frozenset()
    assert migration.accepts(migration.checksum)
    assert not migration.accepts(sha256("CREATE TABLE t (id int, x int);\n"))


def test_the_leading_directives_are_read() -> None:
    sql = (
        f"-- branchline: no-transaction\n-- branchline: former-checksum {A}\n"
        f"-- branchline: former-checksum {B}\n-- why\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x);\n"
    )
    directives = parse_directives(sql)
    assert not directives.transactional
    assert directives.former_checksums == {A, B}
    migration = Migration(2, "i", sql)
    assert migration.accepts(A)
    assert migration.accepts(B)
    assert migration.accepts(migration.checksum)
    assert not migration.accepts("c" * 64)
    assert not migration.accepts(A.upper())


@pytest.mark.parametrize(
    "sql",
    [
        "-- branchline: no-transactions\nSELECT 1;",  # misspelt
        "-- branchline: former-checksum abc\nSELECT 1;",  # not a sha256
        f"-- branchline: former-checksum {A.upper()}\nSELECT 1;",
        "-- why\n-- branchline: no-transaction\nSELECT 1;",  # not among the first lines
        "SELECT 1;\n-- branchline: no-transaction\n",
    ],
)
def test_an_unknown_or_misplaced_directive_is_refused(sql: str) -> None:
    with pytest.raises(MigrationError, match="directive"):
        parse_directives(sql)


def test_statements_split_only_at_semicolons_that_end_them() -> None:
    sql = """-- a comment; not a statement
CREATE INDEX a ON t (x) WHERE y = 'one;two' AND z = 'it''s;';
/* block; /* nested; */ still; */ DROP INDEX b ;
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
SELECT "odd;name" FROM t;
-- trailing; comment
"""
    assert split_statements(sql) == [
        "CREATE INDEX a ON t (x) WHERE y = 'one;two' AND z = 'it''s;'",
        "DROP INDEX b",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$",
        'SELECT "odd;name" FROM t',
    ]
    assert split_statements("-- only\n/* comments */;\n;") == []


@pytest.mark.parametrize("sql", ["SELECT 'x;", 'SELECT "x', "SELECT $$x;", "/* x"])
def test_an_unterminated_quote_or_comment_is_refused(sql: str) -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements(sql)


def test_a_no_transaction_migration_names_what_each_build_creates() -> None:
    sql = """CREATE INDEX CONCURRENTLY IF NOT EXISTS a_x ON a (x);
create unique index concurrently if not exists S_b_y on S.b (y) where y > 0;
DROP INDEX CONCURRENTLY IF EXISTS s.old;
CREATE INDEX CONCURRENTLY IF NOT EXISTS c_e ON ONLY c ((lower(e)));
CREATE INDEX CONCURRENTLY IF NOT EXISTS d_x ON d(x)"""
    assert concurrent_statements(sql) == [
        Statement("CREATE INDEX CONCURRENTLY IF NOT EXISTS a_x ON a (x)", "a_x", "a"),
        Statement(
            "create unique index concurrently if not exists S_b_y on S.b (y) where y > 0",
            "s_b_y",
            "s.b",
        ),
        Statement("DROP INDEX CONCURRENTLY IF EXISTS s.old"),
        Statement("CREATE INDEX CONCURRENTLY IF NOT EXISTS c_e ON ONLY c ((lower(e)))", "c_e", "c"),
        Statement("CREATE INDEX CONCURRENTLY IF NOT EXISTS d_x ON d(x)", "d_x", "d"),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX a_x ON a (x)",  # would hold a SHARE lock, and cannot be repeated
        "CREATE INDEX CONCURRENTLY a_x ON a (x)",  # cannot be repeated after an interruption
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ON a (x)",  # unnamed: nothing to check
        "DROP INDEX CONCURRENTLY a_x",
        "DROP INDEX IF EXISTS a_x",
        "ALTER TABLE a ADD COLUMN y int",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_x ON a.b.c (x)",
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "A x" ON a (x)',
    ],
)
def test_a_no_transaction_migration_refuses_what_a_rerun_could_not_repeat(statement: str) -> None:
    with pytest.raises(MigrationError, match="no-transaction migration holds only"):
        concurrent_statements(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS ok ON a (x);\n{statement};")


def test_a_no_transaction_migration_may_hold_a_do_block_run_as_one_statement() -> None:
    """Followup 016 finds indexes by definition in a DO block, then drops CONCURRENTLY."""
    block = "DO $r$ BEGIN PERFORM 1; END $r$"
    assert concurrent_statements(f"-- why\n{block};\nDROP INDEX CONCURRENTLY IF EXISTS a_x;") == [
        Statement(block),
        Statement("DROP INDEX CONCURRENTLY IF EXISTS a_x"),
    ]


def test_a_comment_inside_a_no_transaction_do_block_is_refused() -> None:
    """The runner joins a statement's lines: the comment would swallow the block's rest."""
    with pytest.raises(MigrationError, match="inside a no-transaction DO block"):
        concurrent_statements("DO $$ BEGIN -- why\n PERFORM 1; END $$;")


def test_a_no_transaction_migration_without_statements_is_refused() -> None:
    with pytest.raises(MigrationError, match="without statements"):
        Migration(1, "x", "-- branchline: no-transaction\n-- nothing\n").check()


# Shipped series ------------------------------------------------------------------------------

_CREATE_TABLE = re.compile(r"^CREATE TABLE (?:IF NOT EXISTS )?([\w.]+)", re.IGNORECASE)
_INDEX_ON = re.compile(r"^CREATE (?:UNIQUE )?INDEX (?!CONCURRENTLY)\w+ ON ([\w.]+)", re.IGNORECASE)
_DROP_INDEX = re.compile(r"^DROP INDEX (?!CONCURRENTLY)", re.IGNORECASE)

BLOCKING_BUILDS_KEPT = {
    # Each mixes its index build with other DDL in one file, and each was applied by every
    # deployed database long before #12 (docs/operations.md, "Migrations").
    ("branchline_audit.migrations", 2): "ALTER TABLE audit_ledger ADD COLUMN pruned_at",
    ("branchline_followup.migrations", 3): "ALTER TABLE fu_read.fu_clients ADD COLUMN",
    ("branchline_followup.migrations", 4): "ADD COLUMN applied_seq ... GENERATED (a rewrite)",
    # #12: the refusals' RM column, its backfill (a rewrite of every refusal under the
    # column's ACCESS EXCLUSIVE lock) and the triggers that keep it must commit together; the
    # runner's no-transaction files hold only index statements, and this work had one number.
    ("branchline_followup.console_migrations", 4): "ADD COLUMN rm_id, backfill, triggers",
}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_shipped_migration_loads(package: str) -> None:
    assert load_migrations(package)  # check() ran on each


@pytest.mark.parametrize("package", PACKAGES)
def test_no_migration_builds_an_index_on_an_earlier_table_in_a_transaction(package: str) -> None:
    """An index on a table of an earlier migration (one a bank's database may hold millions
    of rows in) is built CONCURRENTLY; a table's own migration may index it as it creates it."""
    for migration in load_migrations(package):
        if not migration.directives.transactional:
            continue
        statements = split_statements(migration.sql)
        created = {m[1].lower() for s in statements if (m := _CREATE_TABLE.match(s))}
        blocking = [
            s
            for s in statements
            if ((m := _INDEX_ON.match(s)) and m[1].lower() not in created) or _DROP_INDEX.match(s)
        ]
        if (package, migration.version) in BLOCKING_BUILDS_KEPT:
            assert blocking, "kept on the list but no longer blocking: take it off"
        else:
            assert not blocking, f"{migration.version:03d}_{migration.name}: {blocking}"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_former_checksum_is_a_kept_former_text_with_the_same_statements(
    package: str,
) -> None:
    """A former checksum is accepted only for the text it names, kept in the tests as git had
    it; that text's statements are the new ones but for CONCURRENTLY / IF [NOT] EXISTS."""
    former = former_texts(package)
    for migration in load_migrations(package):
        declared = migration.directives.former_checksums
        if migration.version not in former:
            assert not declared, f"{migration.version:03d}: no former text kept"
            continue
        old = former[migration.version]
        assert declared == {sha256(old)}, former_file(package, migration)
        bare = [
            re.sub(r" CONCURRENTLY IF (NOT )?EXISTS", "", s)
            for s in split_statements(migration.sql)
        ]
        assert bare == split_statements(old)
