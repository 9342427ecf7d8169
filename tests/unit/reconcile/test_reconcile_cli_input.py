"""``branchline reconcile``'s bad input is a usage error naming the option, exit 2, no
traceback, before anything is read (#12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from branchline_cli.main import app


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--findings", "{missing}/findings.jsonl"), "--findings"),
        (("--findings", "{dir}"), "--findings"),
        (("--page", "0"), "--page"),
        (("--keep", "-1"), "--keep"),
        (("--wait", "soon"), "--wait"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    filled = [a.format(missing=tmp_path / "nowhere", dir=tmp_path) for a in args]
    result = CliRunner().invoke(app, ["reconcile", *filled])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, OSError)
