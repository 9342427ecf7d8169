"""The standing legal holds (D-11), as the audit service records them (``audit.legal_hold_*``
entries of its ledger, served by ``GET /v1/audit/legal-holds``). The erasure job asks before it
destroys anything: a client under hold is never shredded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx

from branchline_followup.application.ports import LegalHolds as LegalHolds
from branchline_shared.http.auth import Role, TokenCodec
from branchline_shared.http.token_keys import token_codec
from branchline_shared.settings import FollowupSettings

READER = "privacy-shredder"
PURPOSE = "erasure due: legal holds checked before destroying personal data (D-04, D-11)"


class LegalHoldsUnknown(Exception):
    """The hold register could not be read: nothing may be destroyed this round."""


class NoRecordedHolds:
    """For a deployment without the audit service's register: only configured holds count."""

    async def held(self, client_ids: Sequence[str]) -> set[str]:
        return set()


class AuditApiLegalHolds:
    """The audit API's register, read with a short-lived auditor token (the read is recorded
    in the trail with its purpose, like every audit read)."""

    def __init__(self, url: str, codec: TokenCodec, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._codec = codec
        self._timeout_s = timeout_s

    async def held(self, client_ids: Sequence[str]) -> set[str]:
        if not client_ids:
            return set()
        token = self._codec.issue(
            READER, [Role.AUDITOR], ttl=timedelta(minutes=5), now=datetime.now(UTC)
        )
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(
                    self._url,
                    params={"purpose": PURPOSE},
                    headers={"Authorization": f"Bearer {token}"},
                )
        except httpx.HTTPError as exc:
            raise LegalHoldsUnknown(f"legal holds unreadable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise LegalHoldsUnknown(f"legal holds unreadable: HTTP {response.status_code}")
        try:
            holds = response.json()["holds"]
            standing = {str(h["client_id"]) for h in holds}
        except (ValueError, KeyError, TypeError):
            raise LegalHoldsUnknown("legal holds unreadable: unexpected answer") from None
        return standing & set(client_ids)


def legal_holds_from_settings(settings: FollowupSettings) -> LegalHolds:
    """The audit API's register of standing holds (D-11)."""
    url = settings.privacy_legal_holds_url or (
        f"http://127.0.0.1:{settings.audit_port}/v1/audit/legal-holds"
    )
    return AuditApiLegalHolds(url, token_codec(settings, "audit"))
