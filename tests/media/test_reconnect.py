"""The waits between attempts to reach a source that dropped (a camera, an origin server)."""

from __future__ import annotations

from media.reconnect import STEADY_S, Backoff


def test_the_wait_doubles_up_to_the_most_while_the_source_stays_away() -> None:
    backoff = Backoff(1.0, 30.0)
    assert [backoff.after(0.0) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_connection_that_held_starts_the_waits_anew_and_a_short_one_does_not() -> None:
    backoff = Backoff(1.0, 30.0)
    for _ in range(4):
        backoff.after(0.0)
    assert backoff.after(STEADY_S - 1) == 16.0  # up a moment: still the same trouble
    assert backoff.after(STEADY_S) == 1.0  # a good connection lost: try again soon
    assert backoff.after(0.0) == 2.0
