"""The Retry-After a full queue sends grows with refused demand over served demand."""

from __future__ import annotations

from dayfly.scheduler.pressure import MAX_RETRY_AFTER_S, Pressure


def test_retry_after_is_refusals_over_served_of_the_last_second():
    p = Pressure(now=0.0)
    assert p.note_refused(now=0.1) == 1  # nothing measured yet
    for _ in range(9):
        p.note_refused(now=0.5)
    for _ in range(4):
        p.note_served(now=0.6)
    # the last full second: 10 refused, 4 served -> come back in 1 + 3 s
    assert p.note_refused(now=1.2) == 4


def test_a_burst_gets_longer_answers_within_its_first_second():
    p = Pressure(now=0.0)
    for _ in range(250):
        p.note_served(now=0.5)
    # 250 served a second; 2,300 callers arrive at once and are refused in turn
    waits = [p.note_refused(now=1.1) for _ in range(2300)]
    assert waits[0] == 1 and waits[250] == 2 and waits[-1] == 1 + 10


def test_retry_after_is_capped_and_forgets_an_old_overload():
    p = Pressure(now=0.0)
    for _ in range(1000):
        p.note_refused(now=0.5)
    assert p.note_refused(now=1.5) == MAX_RETRY_AFTER_S  # nothing served: the cap
    assert p.note_refused(now=5.0) == 1  # a quiet gap: the overload is over
