"""The benchmark's resends (#12, ``bench.intake_cpu --resend-share P``): a share of the single
POSTs repeats, body and id, one its branch system sent and had answered shortly before; the
guessed writes they refuse are counted from the server's log."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bench.branchline_measures import (
    RESENT_FROM,
    log_offset,
    unique_violations_in_log,
    with_event_id,
    with_refusals,
    with_resends,
)
from bench.workload import event_body

pytestmark = pytest.mark.unit

CONNECTIONS, SYSTEMS = 64, 16


def _bodies(count: int) -> list[bytes]:
    return [orjson.dumps(with_event_id(event_body(i, "r"), True)) for i in range(count)]


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2])
def test_about_the_share_is_resent_by_the_same_branch_system_after_its_answer(
    share: float,
) -> None:
    bodies = _bodies(3000)
    sent = with_resends(bodies, share, CONNECTIONS, SYSTEMS)
    assert len(sent) == len(bodies)
    first_at = {body: i for i, body in enumerate(bodies)}
    resent = [i for i, body in enumerate(sent) if body != bodies[i]]
    assert abs(len(resent) / len(bodies) - share) < max(0.01, share / 4)
    for i in resent:
        j = first_at[sent[i]]  # the original, the same bytes: the same id and body
        assert sent[j] == bodies[j]  # an original, sent as such
        assert j % CONNECTIONS % SYSTEMS == i % CONNECTIONS % SYSTEMS  # its token
        assert j <= i - 2 * CONNECTIONS  # two rounds of its connection earlier: answered
    # shortly before: among its system's last few originals that far back
    for i in resent:
        j = first_at[sent[i]]
        system = i % CONNECTIONS % SYSTEMS
        later = [
            k
            for k in range(j + 1, i - 2 * CONNECTIONS + 1)
            if k % CONNECTIONS % SYSTEMS == system and sent[k] == bodies[k]
        ]
        assert len(later) < RESENT_FROM


def test_no_share_resends_nothing_and_the_pattern_is_the_same_for_both_trees() -> None:
    bodies = _bodies(1000)
    assert with_resends(bodies, 0.0, CONNECTIONS, SYSTEMS) == bodies
    assert with_resends(bodies, 0.2, CONNECTIONS, SYSTEMS) == with_resends(
        bodies, 0.2, CONNECTIONS, SYSTEMS
    )


def test_refused_guessed_writes_are_counted_for_intake_past_the_offset(tmp_path: Path) -> None:
    unique = 'ERROR:  duplicate key value violates unique constraint "es_streams_pkey"'
    log = tmp_path / "postgres.log"
    line = "2026-12-06 10:00:00.000 UTC:4242:{}:{}\n"
    log.write_text(line.format("branchline_intake", unique))
    offset = log_offset(log)
    with log.open("a") as f:
        f.write(line.format("branchline_intake", unique))
        f.write(line.format("branchline_intake", "DETAIL:  Key (stream_id)=(client-C-1) exists."))
        f.write(line.format("branchline_followup", unique))
        f.write(line.format("branchline_intake", unique.replace("es_streams", "es_events")))
    assert unique_violations_in_log(log, offset, "branchline_intake") == 2
    assert unique_violations_in_log(log, 0, "branchline_intake") == 3
    assert unique_violations_in_log(log, offset, "branchline_followup") == 1
    assert unique_violations_in_log(None, 0, "branchline_intake") == 0


def test_the_resend_line_is_in_the_report_beside_the_ids_line() -> None:
    """``bl_ids16_resend5`` (Round 26): the own-ids line with 5 % resends, right after the
    ids line's figures, as a ratio to it, its share in its title."""
    from bench.run import MEASURES, PROFILES, RATIOS, RESEND_SHARE, summarise

    keys = [key for key, _title, _unit in MEASURES]
    at = keys.index("bl_ids16_resend5")
    assert keys[at - 1] == "bl_ids16_lock_cycle_reruns"
    assert keys[at + 1 : at + 4] == [
        "bl_ids16_resend5_p99",
        "bl_ids16_resend5_cpu_ms",
        "bl_ids16_resend5_unique_violations",
    ]
    units = {key: unit for key, _title, unit in MEASURES}
    assert units["bl_ids16_resend5_unique_violations"] == "times"  # may be 0 (the smoke)
    assert RATIOS["bl_ids16_resend5"] == ["bl_ids16"]
    assert RESEND_SHARE == 0.05
    measures = summarise([{"bl_ids16": 1000.0, "bl_ids16_resend5": 900.0}], PROFILES["standard"])
    assert "5% of them resends" in measures["bl_ids16_resend5"]["title"]


def test_about_the_refused_share_is_consents_for_clients_never_registered() -> None:
    """``--refused-share P`` (Round 28, #12): about P of the POSTs become consents, each for a
    client of its own that nothing registers (refused by D-09); the rest as they were; the
    same pattern for both trees of a pair."""
    bodies = _bodies(3000)
    sent = with_refusals(bodies, 0.05, "r", True)
    assert len(sent) == len(bodies)
    changed = [i for i, body in enumerate(sent) if body != bodies[i]]
    assert abs(len(changed) / len(bodies) - 0.05) < 0.0125
    registered = {orjson.loads(b)["client_id"] for b in bodies}
    consents = [orjson.loads(sent[i]) for i in changed]
    assert {c["type"] for c in consents} == {"client.consent_granted"}
    assert not {c["client_id"] for c in consents} & registered
    assert len({c["client_id"] for c in consents}) == len(consents)
    assert len({c["event_id"] for c in consents}) == len(consents)
    again = with_refusals(bodies, 0.05, "r", True)
    assert [i for i, body in enumerate(again) if body != bodies[i]] == changed
