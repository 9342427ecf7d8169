"""Chinese and English: the locale of a request and the gettext catalogues.

The catalogues are Babel ``.po`` files shipped in the package and compiled in memory when
first used, so a clean checkout and an installed wheel work alike (no compiled ``.mo`` to
forget). English is the source language; Chinese (``zh``) is the standard's own.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"
LOCALE_COOKIE = "bl_lang"
DOMAIN = "messages"


def N_(message: str) -> str:
    """Marks an English source string for extraction; translated where it is shown."""
    return message


COMMON_VOCABULARY: dict[str, dict[str, str]] = {
    "role": {
        "rm": N_("Relationship manager"),
        "supervisor": N_("Supervisor"),
        "auditor": N_("Auditor"),
        "admin": N_("Administrator"),
        "branch_system": N_("Branch system"),
    },
    "sla": {
        "on_track": N_("On track"),
        "due_soon": N_("Due soon"),
        "overdue": N_("Overdue"),
        "done": N_("Done"),
    },
}
"""Closed value sets shown on every console, by group: code -> English source string."""


def catalogue_path(locale: str) -> resources.abc.Traversable:
    return resources.files(__package__).joinpath("locale", locale, "LC_MESSAGES", f"{DOMAIN}.po")


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of ``locale`` (English: the source strings themselves)."""
    if locale == "en":
        return NullTranslations()
    with catalogue_path(locale).open("rb") as po:
        catalogue = read_po(po, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The chosen locale (cookie, set by the switch), else the browser's first supported
    language (``Accept-Language`` by quality), else Chinese."""
    if cookie in LOCALES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if primary in LOCALES:
            return primary
    return DEFAULT_LOCALE


class Formatter:
    """Dates in the branch's time zone, in the page's locale."""

    def __init__(self, locale: str, default_zone: str, branch_zones: dict[str, str]) -> None:
        self.locale = locale
        self._babel_locale = Locale.parse("zh_Hans_CN" if locale == "zh" else "en_GB")
        self._default_zone = default_zone
        self._branch_zones = branch_zones

    def zone(self, branch_id: str | None = None) -> ZoneInfo:
        name = self._branch_zones.get(branch_id or "", self._default_zone)
        return ZoneInfo(name)

    def zone_name(self, branch_id: str | None = None) -> str:
        return self._branch_zones.get(branch_id or "", self._default_zone)

    def dt(self, value: datetime | str | None, branch_id: str | None = None) -> str:
        if value is None or value == "":
            return "—"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(self.zone(branch_id))
        return str(format_datetime(local, "yyyy-MM-dd HH:mm", locale=self._babel_locale))

    def iso(self, value: datetime | None, branch_id: str | None = None) -> str:
        """A machine-readable instant for ``<time datetime=...>``."""
        if value is None:
            return ""
        return value.astimezone(self.zone(branch_id)).isoformat()

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "—"
        return f"{value:.{digits}f}"

    def percent(self, value: float | None) -> str:
        if value is None:
            return "—"
        return f"{value * 100:.0f}%"
