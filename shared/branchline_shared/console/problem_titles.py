"""The problem titles the services answer with, as Babel messages: the console's refused page
says a refusal's title in the page's language when the catalogue has it, and the server's
English title (marked as English) only when it does not (#12). A unit test checks that every
title of the services' problem tables and of the shared handlers is here."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from branchline_shared.console.i18n import N_, translations

PROBLEM_TITLES: frozenset[str] = frozenset(
    {
        # shared handlers (http/problems.py, the edge's limits, the auth codec)
        N_("Invalid request"),
        N_("Malformed JSON"),
        N_("Not found"),
        N_("Method not allowed"),
        N_("Unauthorized"),
        N_("Forbidden"),
        N_("Internal error"),
        N_("Service unavailable"),
        N_("Unavailable"),
        N_("Outcome unknown"),
        N_("Too many requests"),
        N_("Payload too large"),
        N_("Request header fields too large"),
        N_("Query too large"),
        N_("Batch too large"),
        N_("Request timed out"),
        N_("Form expired"),
        # intake
        N_("Not allowed to speak for this actor"),
        N_("Idempotency key reused"),
        N_("Stream version mismatch"),
        N_("Unknown event type"),
        N_("Not a branch event"),
        N_("Wrong subject"),
        N_("Refused by a rule"),
        N_("Client erased"),
        N_("Member of staff erased"),
        N_("Institution's key destroyed"),
        # followup
        N_("Task closed"),
        N_("Refused"),
        N_("Client not warned"),
        N_("Personal data restricted"),
        N_("Personal data destroyed"),
        N_("Clock would go backwards"),
        # audit
        N_("Ledger integrity failure"),
        N_("Conflict"),
        N_("Too many exports"),
        N_("A verify is running"),
        N_("The verify was stopped"),
    }
)


def translated_title(title: str, gettext: Callable[[str], str]) -> str | None:
    """``title`` in the page's language, or none when the catalogue does not know it (the
    page then quotes the server's English title as it came)."""
    return gettext(title) if title in PROBLEM_TITLES else None


@cache
def page_titles(locale: str) -> dict[str, str]:
    """The catalogue's titles in ``locale``, by the English title the services send (none in
    English): every console page carries them for ``console.js``, which says a refused htmx
    request's title in the page's language from them (#12)."""
    if locale == "en":
        return {}
    gettext = translations(locale).gettext
    return {title: gettext(title) for title in sorted(PROBLEM_TITLES)}
