"""The copies of a satellite classroom's video follow their originals at their own pace: a
keyframe handed on a packet at a time by a publisher that paces it (a browser does) must not
leave with its copies beside it, doubling its burst into a narrow link's queue."""

from __future__ import annotations

from collections.abc import Callable

from media.paced_copies import BURST, MAX_WAIT_S, TICK_S, PacedCopies

PACKET = 1340  # a full VP8 datagram as the bench's layers send them
PACE_BPS = 937_500.0  # 1.5 times a 360p layer of 625 kbit/s: 117 kB/s


class _Timer:
    def __init__(self, at: float, callback: Callable[[], None]) -> None:
        self.at, self.callback, self.cancelled = at, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """A clock and its timers, moved on by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[_Timer] = []

    def later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def run_until(self, until: float) -> None:
        while True:
            due = [t for t in self.timers if not t.cancelled and t.at <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.at)
            self.timers.remove(timer)
            self.now = max(self.now, timer.at)
            timer.callback()
        self.now = until


def _copies(clock: _Clock, sent: list[tuple[float, bytes]], on: list[bool]) -> PacedCopies:
    return PacedCopies(
        lambda data: sent.append((clock.now, data)),
        lambda: on[0],
        now=lambda: clock.now,
        call_later=clock.later,
    )


def test_a_keyframe_handed_on_a_packet_at_a_time_is_copied_at_the_pace() -> None:
    clock, sent, on = _Clock(), [], [True]
    copies = _copies(clock, sent, on)
    # 20 packets of a 26 kB keyframe, one every 2 ms (a publisher's pacer at ~5 Mbit/s): each
    # copy finds the ones before it gone, and none may take a whole burst for itself
    for i in range(20):
        copies.add(bytes([i]) * PACKET, PACE_BPS)
        clock.run_until(clock.now + 0.002)
    clock.run_until(clock.now + 0.4)
    assert [data[0] for _, data in sent] == list(range(20))
    took = sent[-1][0] - sent[0][0]
    # what the pace allows after the first burst: 19 copies at 117 kB/s, ~0.2 s (the copies
    # all came to the link at once before: 38 ms, the originals' own pace)
    assert took >= (20 * PACKET - BURST) * 8 / PACE_BPS - TICK_S
    assert took <= 20 * PACKET * 8 / PACE_BPS + 2 * TICK_S
    # never more than a burst ahead of the pace over any stretch
    for i, (at, _) in enumerate(sent):
        for j in range(i + 1, len(sent)):
            octets = (j - i + 1) * PACKET
            assert octets <= BURST + PACE_BPS * (sent[j][0] - at) / 8 + 1


def test_small_frames_at_the_pictures_pace_are_copied_at_once() -> None:
    clock, sent, on = _Clock(), [], [True]
    copies = _copies(clock, sent, on)
    # one 600-byte packet a frame at 30 frames a second: far under the pace, no copy waits
    for i in range(30):
        copies.add(bytes([i]) * 600, PACE_BPS)
        assert sent[-1] == (clock.now, bytes([i]) * 600)
        clock.run_until(clock.now + 1 / 30)
    assert len(copies) == 0


def test_copies_that_waited_too_long_or_are_no_longer_wanted_are_dropped() -> None:
    clock, sent, on = _Clock(), [], [True]
    copies = _copies(clock, sent, on)
    slow = 8 * PACKET / 0.1  # a packet every 100 ms
    for i in range(10):
        copies.add(bytes([i]) * PACKET, slow)
    clock.run_until(clock.now + 1.0)
    # one at once, then one each time the pace has earned it, while they waited under 0.5 s
    assert all(at - 100.0 <= MAX_WAIT_S + TICK_S for at, _ in sent)
    assert 5 <= len(sent) <= 7 and len(copies) == 0
    sent.clear()
    for i in range(10):
        copies.add(bytes([i]) * PACKET, PACE_BPS)
    on[0] = False  # the gate took the copies away: those waiting go with them
    clock.run_until(clock.now + 0.1)
    assert len(sent) <= 2 and len(copies) == 0


def test_close_stops_the_timer_and_forgets_the_copies() -> None:
    clock, sent, on = _Clock(), [], [True]
    copies = _copies(clock, sent, on)
    for i in range(5):
        copies.add(bytes([i]) * PACKET, PACE_BPS)
    copies.close()
    clock.run_until(clock.now + 1.0)
    assert len(sent) == 1 and len(copies) == 0
