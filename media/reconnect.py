"""How a source the server reaches out to (a camera, an origin server) is tried again after it
drops: a wait that doubles from the first to the most, and starts anew after a connection that
held a while."""

from __future__ import annotations

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# a connection that stayed live this long was a good one: the next drop starts the back-off anew
STEADY_S = 10.0


class Backoff:
    """The waits between one source's attempts."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, most_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self._next = first_s

    def after(self, held_s: float) -> float:
        """The wait before the next attempt, after one that held ``held_s`` (0: never live)."""
        if held_s >= STEADY_S:
            self._next = self.first_s
        wait = self._next
        self._next = min(wait * 2, self.most_s)
        return wait
