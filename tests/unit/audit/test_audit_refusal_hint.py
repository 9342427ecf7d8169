"""Which stored refusal hints a refusal even checks (``RefusalHint.fits``, #12, Round 36): a
pair in order at or below the refused checkpoint. Any other row (written behind the ledger's
back, or left by a refusal at a larger checkpoint) is passed over and the refusal halves."""

from __future__ import annotations

import pytest

from branchline_audit.domain.verification import RefusalHint


@pytest.mark.parametrize(
    ("held", "failing", "refused", "fits"),
    [
        (39, 40, 64, True),  # a pair below the refused checkpoint
        (63, 64, 64, True),  # the failing one is the refused one itself
        (None, 1, 64, True),  # none holds
        (None, 64, 64, True),
        (10, 40, 64, True),  # not neighbours: the proof of the pair says so, not this
        (40, 39, 64, False),  # out of order
        (40, 40, 64, False),
        (39, 65, 64, False),  # above the refused checkpoint
        (None, 65, 64, False),
        (0, 40, 64, False),  # the empty checkpoint is never a pair's
        (-3, 40, 64, False),
        (None, 0, 64, False),
        (None, -1, 64, False),
    ],
)
def test_a_hint_fits_only_a_pair_in_order_at_or_below_the_refused_checkpoint(
    held: int | None, failing: int, refused: int, fits: bool
) -> None:
    assert RefusalHint(held=held, failing=failing).fits(refused) is fits
