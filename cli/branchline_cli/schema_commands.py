"""``branchline schemas generate|check``: the published event schemas in ``schemas/``.

``generate`` writes the JSON Schema of every event type at its current version, the envelope,
the AsyncAPI document and the index; it refuses to overwrite a committed version with a
breaking change. ``check`` (CI) fails on drift, breaking changes and missing upcasters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from branchline_cli.schema_tooling.check import SchemaProblem, check_schema_files
from branchline_cli.schema_tooling.files import schema_files
from branchline_shared.events.upcasting import UPCASTERS
from branchline_shared.kafka.topics import Topics, declare_topics
from branchline_shared.settings import BranchlineSettings

schemas_app = typer.Typer(
    help="Event schemas: JSON Schema per event type and version, envelope, AsyncAPI 3.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="The schemas folder (default: schemas/ of the checkout around here)."
    ),
]


def documented_topics() -> Topics:
    """The topics with the default namespace and settings (environment ignored), so the
    generated document is the same on every machine."""
    return declare_topics(BranchlineSettings.model_construct())


def default_schemas_dir(start: Path | None = None) -> Path:
    """``schemas/`` beside the nearest ``pyproject.toml`` above ``start`` (or the cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder / "schemas"
    return here / "schemas"


def read_committed(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: POSIX path relative to it → text."""
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def generated_files(committed: Mapping[str, str]) -> dict[str, str]:
    return schema_files(documented_topics(), committed)


def schema_problems(folder: Path) -> list[SchemaProblem]:
    committed = read_committed(folder)
    return check_schema_files(committed, generated_files(committed), UPCASTERS.registered())


def _report(problems: list[SchemaProblem]) -> None:
    for problem in problems:
        typer.secho(str(problem), fg=typer.colors.RED, err=True)


@schemas_app.command()
def generate(folder: DirOption = None) -> None:
    """Write schemas/ from the models; refuse a breaking change to a committed version."""
    folder = folder or default_schemas_dir()
    committed = read_committed(folder)
    files = generated_files(committed)
    problems = check_schema_files(committed, files, UPCASTERS.registered())
    refusals = [p for p in problems if p.kind in ("breaking", "stale")]
    if refusals:
        _report(refusals)
        typer.secho(
            f"refused: {len(refusals)} problem(s); nothing written. A breaking change needs the "
            "model's SCHEMA_VERSION bumped and an upcaster (branchline_shared.events.upcasting).",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    written = 0
    for relative, text in files.items():
        if committed.get(relative) == text:
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written += 1
    typer.echo(f"{written} file(s) written, {len(files) - written} unchanged, in {folder}")
    remaining = [p for p in problems if p.kind == "missing-upcaster"]
    if remaining:
        _report(remaining)
        raise typer.Exit(1)


@schemas_app.command()
def check(folder: DirOption = None) -> None:
    """Fail on drift (run generate), breaking changes and missing upcasters (for CI)."""
    folder = folder or default_schemas_dir()
    problems = schema_problems(folder)
    if problems:
        _report(problems)
        typer.secho(
            f"schemas check failed: {len(problems)} problem(s)", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1)
    typer.echo(f"schemas up to date in {folder}")
