"""A label and what it says are joined as the page's language joins them: ": " in English,
the full-width colon (U+FF1A) in Chinese (#12). Every console template joins them through the
catalogue's one "%(label)s: %(text)s" (the login form's refusals, an entry's missing proof,
the footer's time zone), none writes the ASCII colon after a value itself."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from tests.unit.console.test_console_login_form_page import opened, sign_in

from branchline_shared.console.i18n import translations

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = (
    ROOT / "shared/branchline_shared/console/templates",
    ROOT / "services/followup/branchline_followup/entrypoints/console/templates",
    ROOT / "services/audit/branchline_audit/entrypoints/console/templates",
)
COLON_AFTER_A_VALUE = re.compile(r"\}\}\s*:")
ERROR = re.compile(r'<p id="subject-error" class="error" role="alert">(.*?)</p>', re.S)
FOOTER = re.compile(r'<footer class="foot"><p>(.*?)</p></footer>', re.S)
FULL_WIDTH_COLON = "\uff1a"


def test_the_catalogue_joins_a_label_with_the_full_width_colon_in_chinese() -> None:
    joined = translations("zh").gettext("%(label)s: %(text)s")
    assert joined % {"label": "L", "text": "T"} == f"L{FULL_WIDTH_COLON}T"


def test_no_console_template_writes_a_colon_after_a_value_itself() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in TEMPLATES
        for path in sorted(folder.glob("*.html"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if COLON_AFTER_A_VALUE.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("locale", "said", "zone"),
    [
        ("zh", f"员工编号{FULL_WIDTH_COLON}员工编号由", f"时区显示{FULL_WIDTH_COLON}"),
        ("en", "Staff id: A staff id is", "time zone: "),
    ],
)
async def test_a_refused_field_and_the_footer_join_label_and_text_in_the_pages_language(
    locale: str, said: str, zone: str
) -> None:
    page = await sign_in({"role": "rm", "subject": "rm 7"}, locale=locale)
    assert page.status_code == 422, page.text
    error = ERROR.search(page.text)
    assert error is not None, page.text
    assert " ".join(html.unescape(error.group(1)).split()).startswith(said)
    for shown in (page, await opened("/console/login", locale=locale)):
        footer = FOOTER.search(shown.text)
        assert footer is not None, shown.text
        assert zone in html.unescape(footer.group(1))
