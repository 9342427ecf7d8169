"""The migration series as shipped, and as deployed databases applied them before #12 made
their index builds concurrent: the former texts are kept under ``former_migrations/``,
exactly as git history had them (``git show <commit>:<path>``), one folder per package."""

from __future__ import annotations

import hashlib
from pathlib import Path

from branchline_shared.postgres.migrations import Migration, load_migrations

FORMER = Path(__file__).parent / "former_migrations"

PACKAGES = (
    "branchline_shared.eventstore.migrations",
    "branchline_shared.crypto.migrations",
    "branchline_intake.migrations",
    "branchline_followup.migrations",
    "branchline_followup.console_migrations",
    "branchline_audit.migrations",
)


def former_file(package: str, migration: Migration) -> Path:
    return FORMER / package.replace(".", "_") / f"{migration.version:03d}_{migration.name}.sql"


def former_texts(package: str) -> dict[int, str]:
    """Each migration's former text by version (only those that have one)."""
    found: dict[int, str] = {}
    for migration in load_migrations(package):
        path = former_file(package, migration)
        if path.exists():
            found[migration.version] = path.read_text(encoding="utf-8")
    return found


def as_formerly_shipped(package: str) -> list[Migration]:
    """The series with every migration that has a former text in that text."""
    former = former_texts(package)
    return [
        Migration(m.version, m.name, former.get(m.version, m.sql)) for m in load_migrations(package)
    ]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
