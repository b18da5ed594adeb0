"""Which of a source's layers one classroom is fed (DESIGN §4.7): the options a source offers
(each spatial layer at each temporal depth, with what it costs now), the best set that fits a
classroom's budget, and the hysteresis that keeps a classroom from flapping between them.

Options are ranked best first: the top spatial layer at its full frame rate, then at half of
it (only while that is still MIN_FPS: a lower resolution that moves is better than a sharp
picture that jerks), then the next spatial layer the same way; the lowest spatial layer goes
down to its base temporal layer. An option that costs no less than a better one is left out.
Going down is fast (the link is full now: the sound suffers within a second); going up waits
until the estimate has had room for the better option for a while, and waits twice as long
after a step up that did not last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layers import MAX_TID

if TYPE_CHECKING:
    from .producer import Producer

# Stepping down: when what is sent is more than the budget, and the estimate says the link is
# congested, or the budget has stayed under DOWN_SHARE of it for DOWN_HOLD_S; then to what fits
# in FIT_SHARE of the budget.
DOWN_SHARE = 0.85
DOWN_HOLD_S = 1.0
FIT_SHARE = 0.9
# Stepping up: to what fits with UP_MARGIN to spare, once that has held for UP_HOLD_S (doubled,
# up to UP_HOLD_MAX_S, each time a step up was followed by a step down within STABLE_S).
MIN_FPS = 15.0  # a spatial layer above the lowest is not fed at a lower frame rate than this
UP_MARGIN = 1.1
UP_HOLD_S = 3.0
UP_HOLD_MAX_S = 60.0
STABLE_S = 30.0
# A step down the estimate did not call for (the classroom's picture kept breaking on what it
# was fed) caps what the estimate may step back up to for CAP_HOLD_S, doubled up to
# CAP_HOLD_MAX_S each time the same happens within STABLE_S of the cap's end.
CAP_HOLD_S = 30.0
CAP_HOLD_MAX_S = 240.0


@dataclass(frozen=True)
class LayerOption:
    """One way to feed a source: a spatial layer up to a temporal layer, and what that costs."""

    layer: Producer
    max_tid: int  # MAX_TID: every temporal layer
    bps: float
    width: int
    height: int
    fps: float

    @property
    def key(self) -> tuple[int, int]:
        return id(self.layer), self.max_tid


def options_of(group: Producer) -> list[LayerOption]:
    """What ``group``'s layers offer now, best first (empty while none has been measured)."""
    ranked = [layer for layer in group.ranked_layers() if layer.meter.bitrate > 0]
    out: list[LayerOption] = []
    for index, layer in enumerate(ranked):
        meter = layer.meter
        top = meter.temporal_layers - 1
        # every spatial layer at its full frame rate, and at half of it if that is fluid
        # enough; the lowest at every temporal layer down to its base
        if index == len(ranked) - 1:
            lowest = 0
        else:
            lowest = top - 1 if top > 0 and meter.fps / 2 >= MIN_FPS else top
        for tid in range(top, lowest - 1, -1):
            bps = meter.bitrate_up_to(tid if tid < top else MAX_TID)
            if out and bps >= out[-1].bps:
                continue  # no cheaper than a better option
            out.append(
                LayerOption(
                    layer,
                    MAX_TID if tid == top else tid,
                    bps,
                    meter.width,
                    meter.height,
                    meter.fps / (1 << (top - tid)),
                )
            )
    return out


def allocate(options: Sequence[Sequence[LayerOption]], budget: float) -> list[int]:
    """For each source (the first has priority), the index of the best option such that all
    fit in ``budget``; the lowest where even that does not fit (0 for a source with none yet:
    an index of -1 would read as a lower layer, and keep a classroom on its best 'reduced')."""
    chosen = [max(len(opts) - 1, 0) for opts in options]
    left = budget - sum(opts[-1].bps for opts in options if opts)
    for i, opts in enumerate(options):
        if not opts:
            continue
        base = opts[-1].bps
        for j, option in enumerate(opts):
            if option.bps - base <= left:
                chosen[i] = j
                left -= option.bps - base
                break
    return chosen


class LayerSelector:
    """One classroom's choice among its video sources' options, with hysteresis."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] | None = None  # per source, the chosen option's key
        self._bps: list[float] = []  # ... and what it cost when chosen
        self._short_since: float | None = None
        self._room_since: float | None = None
        self._up_hold = UP_HOLD_S
        self._up_at = -math.inf
        self._cap: float | None = None  # what a step up may cost at most, until _cap_until
        self._cap_until = -math.inf
        self._cap_hold = CAP_HOLD_S
        self.switches = 0

    def current(self, options: Sequence[Sequence[LayerOption]]) -> list[int]:
        """The indexes of the chosen options (a vanished one: the best that costs no more)."""
        if self.keys is None or len(self.keys) != len(options):
            return [0] * len(options)
        out = []
        for opts, key, bps in zip(options, self.keys, self._bps, strict=True):
            index = next((j for j, o in enumerate(opts) if o.key == key), None)
            if index is None:
                index = next((j for j, o in enumerate(opts) if o.bps <= bps), len(opts) - 1)
            out.append(max(index, 0))
        return out

    def choose(self, options: Sequence[Sequence[LayerOption]], indexes: list[int]) -> None:
        pairs = list(zip(options, indexes, strict=True))
        self.keys = [opts[i].key if opts else (0, 0) for opts, i in pairs]
        self._bps = [opts[i].bps if opts else 0.0 for opts, i in pairs]

    def decide(
        self,
        options: Sequence[Sequence[LayerOption]],
        budget: float,
        congested: bool,
        warm: bool,
        now: float,
        at_once: bool = False,
    ) -> list[int] | None:
        """New indexes to take, or None to stay. ``budget``: what the classroom's link carries
        for video; ``congested``: its estimate sees loss with queueing; ``warm``: its estimate
        has been heard long enough to act on without congestion; ``at_once``: a probe has just
        shown the link carries the budget (no wait before a step up)."""
        if not any(options):
            return None
        current = self.current(options)
        need = _cost(options, current)
        if need > budget and (congested or warm):
            short = congested or budget < need * DOWN_SHARE
            if short and self._short_since is None:
                self._short_since = now
            if short and (congested or now - self._short_since >= DOWN_HOLD_S):  # type: ignore[operator]
                target = allocate(options, budget * FIT_SHARE)
                if _cost(options, target) < need:
                    if now - self._up_at < STABLE_S:
                        self._up_hold = min(self._up_hold * 2, UP_HOLD_MAX_S)
                    return self._take(options, target, now, up=False)
            return None
        self._short_since = None
        room = budget / UP_MARGIN
        if self._cap is not None and now < self._cap_until:
            room = min(room, self._cap)
        target = allocate(options, room)
        if _cost(options, target) <= need or target == current:
            self._room_since = None
            return None
        if self._room_since is None:
            self._room_since = now
        if now - self._room_since < self._up_hold and not at_once:
            return None
        if now - self._up_at >= STABLE_S:
            self._up_hold = UP_HOLD_S
        return self._take(options, target, now, up=True)

    def step_down(
        self, options: Sequence[Sequence[LayerOption]], source: int, now: float
    ) -> list[int] | None:
        """Feed ``source`` a smaller picture than now (the next spatial layer down, else the
        next option), though its estimate has room: the classroom could not use what it was
        fed. What may be taken back up is capped at the new choice for a while. None: it is
        already on its lowest."""
        current = self.current(options)
        opts = options[source]
        index = current[source]
        if not opts or index >= len(opts) - 1:
            return None
        lower = next(
            (j for j in range(index + 1, len(opts)) if opts[j].layer is not opts[index].layer),
            index + 1,
        )
        target = list(current)
        target[source] = lower
        if now - self._up_at < STABLE_S:
            self._up_hold = min(self._up_hold * 2, UP_HOLD_MAX_S)
        again = now - self._cap_until < STABLE_S
        self._cap_hold = min(self._cap_hold * 2, CAP_HOLD_MAX_S) if again else CAP_HOLD_S
        self._cap = _cost(options, target)
        self._cap_until = now + self._cap_hold
        return self._take(options, target, now, up=False)

    def next_need(self, options: Sequence[Sequence[LayerOption]], now: float) -> float | None:
        """What the next better set of options costs (None: the best is taken, or capped):
        the rate a probe must show the link carries before a step up."""
        current = self.current(options)
        for i, index in enumerate(current):
            if index > 0:
                better = list(current)
                better[i] = index - 1
                need = _cost(options, better)
                if self._cap is not None and now < self._cap_until and need > self._cap:
                    return None  # no probe shows what a step down for broken pictures saw
                return need
        return None

    def _take(
        self, options: Sequence[Sequence[LayerOption]], target: list[int], now: float, up: bool
    ) -> list[int]:
        self.choose(options, target)
        self.switches += 1
        self._short_since = self._room_since = None
        if up:
            self._up_at = now
        return target


def _cost(options: Sequence[Sequence[LayerOption]], indexes: list[int]) -> float:
    return sum(opts[i].bps for opts, i in zip(options, indexes, strict=True) if opts)
