"""The console speaks Chinese and English: every string of its templates and code is in the
Chinese catalogue, translated, with the same placeholders; locale negotiation; dates in the
branch's time zone; vendored assets match their pinned packages."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from branchline_shared.console.i18n import Formatter, catalogue_path, negotiate, translations
from branchline_shared.console.pages import safe_next
from branchline_shared.console.web import shared_dir

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SOURCES = (
    ROOT / "shared/branchline_shared/console",
    ROOT / "services/followup/branchline_followup/entrypoints/console",
    ROOT / "services/audit/branchline_audit/entrypoints/console",
)
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def source_strings() -> set[str]:
    found: set[str] = set()
    for folder in SOURCES:
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(folder), METHODS, keywords=KEYWORDS
        ):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_console_string_is_translated_into_chinese() -> None:
    with catalogue_path("zh").open("rb") as po:
        catalogue = read_po(po, locale="zh")
    strings = source_strings()
    assert len(strings) > 200  # the extraction really found the templates
    missing = sorted(s for s in strings if not (catalogue.get(s) and catalogue.get(s).string))
    assert missing == [], f"untranslated (run `make translations`, then translate): {missing}"
    for message in strings:
        entry = catalogue.get(message)
        assert not entry.fuzzy, message
        assert sorted(PLACEHOLDER.findall(message)) == sorted(PLACEHOLDER.findall(entry.string)), (
            message
        )


def test_the_catalogue_compiles_and_translates() -> None:
    assert translations("zh").gettext("My day") == "今日工作"
    assert translations("en").gettext("My day") == "My day"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "en-GB,en;q=0.9", "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, "fr-FR, en;q=0.5, zh;q=0.7", "zh"),
        (None, "fr-FR", "zh"),
        (None, None, "zh"),
        ("en", "zh-CN", "en"),
        ("xx", "en", "en"),
        (None, "en;q=abc, zh;q=0.1", "zh"),
    ],
)
def test_locale_from_the_switch_then_the_browser(
    cookie: str | None, header: str | None, expected: str
) -> None:
    assert negotiate(cookie, header) == expected


def test_dates_are_shown_in_the_branch_time_zone() -> None:
    fmt = Formatter("en", "Asia/Shanghai", {"BR-LDN": "Europe/London"})
    moment = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
    assert fmt.dt(moment) == "2026-12-03 09:30"
    assert fmt.dt(moment, "BR-LDN") == "2026-12-03 01:30"
    assert fmt.dt(None) == "—"
    assert fmt.iso(moment).endswith("+08:00")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/team", "/console/team"),
        ("/console/?status=open", "/console/?status=open"),
        ("https://evil.example/", None),
        ("//evil.example/console/", None),
        ("/console/\\evil", None),
        ("/other", None),
        ("", None),
        (None, None),
    ],
)
def test_login_redirects_only_inside_the_console(target: str | None, expected: str | None) -> None:
    assert safe_next(target) == expected


def test_vendored_assets_match_the_pinned_packages() -> None:
    static = shared_dir("static")
    table = (static / "VENDORED.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| .*? \| `([0-9a-f]{64})` \|$", table, re.MULTILINE)
    assert rows, "VENDORED.md lists the vendored files with their sha256"
    for name, digest in rows:
        assert hashlib.sha256((static / name).read_bytes()).hexdigest() == digest, name
