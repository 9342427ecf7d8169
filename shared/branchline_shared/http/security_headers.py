"""Security headers on every answer (docs/access-control.md, "Abuse limits"), added by the
services' edge middleware (``edge.ServiceEdge``).

* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
  ``Referrer-Policy: no-referrer`` everywhere;
* ``Cache-Control: no-store`` on everything but the API docs' static assets: the APIs answer
  with client data, which no browser or proxy cache should keep;
* a ``Content-Security-Policy`` on ``/docs`` (served from packaged assets only: scripts and
  styles from this origin, no inline script). A header the app set itself is kept.
"""

from __future__ import annotations

from collections.abc import Iterable

Header = tuple[bytes, bytes]

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_CSP = (b"content-security-policy", DOCS_CSP.encode())
# The three sets a path can get, built once instead of per request.
_API = (*_ALWAYS, (b"cache-control", b"no-store"))
_DOCS = (*_API, _CSP)
_DOCS_ASSETS = (*_ALWAYS, _CSP)


def security_headers(path: str) -> tuple[Header, ...]:
    """The headers an answer to ``path`` gets (unless the app set them itself)."""
    if path == "/docs" or path.startswith("/docs/"):
        return _DOCS_ASSETS if path.startswith("/docs/assets/") else _DOCS
    return _API


def with_security_headers(headers: Iterable[Header], extra: tuple[Header, ...]) -> list[Header]:
    """``headers`` and those of ``extra`` they do not hold already (by name, any case)."""
    answer = list(headers)
    present = {bytes(k).lower() for k, _ in answer}
    answer += [(k, v) for k, v in extra if k not in present]
    return answer
