"""The second copies of a classroom's video datagrams, sent after their originals at a pace.

A classroom on a long, lossy line is sent each video datagram twice (send_gate's
``video_repeat``): a lost packet is then repaired at once, not a round trip later. Sent with
its original, a keyframe's copy would double the keyframe's burst, and a narrow link's
drop-tail queue would lose the tail of both; so the copies follow at a pace of their own (a
token bucket: ``pace_bps``, up to ``BURST`` octets at once), and a copy that waited longer
than ``MAX_WAIT_S`` is dropped (a retransmission asked for meanwhile is on its way).

The pace is earned with time, whether copies wait or not: a publisher that paces its packets
(a browser does) hands a keyframe on a packet at a time, and a copy that found nothing
waiting must still not leave with a whole new burst of credit, or every copy leaves with its
original and the pace is never kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

BURST = 2400  # octets sent at once at most: about two full-size datagrams
TICK_S = 0.005  # while copies wait, the pace is looked at again this often
MAX_WAIT_S = 0.5


class _Timer(Protocol):
    def cancel(self) -> None: ...


def _call_later(delay: float, callback: Callable[[], None]) -> _Timer | None:
    try:
        return asyncio.get_running_loop().call_later(delay, callback)
    except RuntimeError:
        return None


class PacedCopies:
    """Copies waiting for their turn on one link. ``send`` puts one on the wire; ``active``
    says whether copies are still wanted (those waiting are dropped once it says no)."""

    __slots__ = (
        "_send",
        "_active",
        "_now",
        "_later",
        "_queue",
        "_pace",
        "_credit",
        "_at",
        "_timer",
    )

    def __init__(
        self,
        send: Callable[[bytes], None],
        active: Callable[[], bool],
        now: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], _Timer | None] = _call_later,
    ) -> None:
        self._send = send
        self._active = active
        self._now = now
        self._later = call_later
        self._queue: deque[tuple[float, bytes]] = deque()
        self._pace = 0.0
        self._credit = float(BURST)
        self._at: float | None = None
        self._timer: _Timer | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, data: bytes, pace_bps: float) -> None:
        """``data`` is to be sent again, at ``pace_bps`` with the copies before it."""
        self._queue.append((self._now(), data))
        self._pace = pace_bps
        if self._timer is None:
            self._flush()

    def _flush(self) -> None:
        """Send the copies the pace allows now; again a tick later while any wait."""
        self._timer = None
        now = self._now()
        if self._at is not None:
            self._credit = min(self._credit + self._pace * (now - self._at) / 8, BURST)
        self._at = now
        queue = self._queue
        active = self._active()
        while queue and (now - queue[0][0] > MAX_WAIT_S or not active):
            queue.popleft()
        while queue and self._credit >= len(queue[0][1]):
            data = queue.popleft()[1]
            self._credit -= len(data)
            self._send(data)
        if queue:
            self._timer = self._later(TICK_S, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
