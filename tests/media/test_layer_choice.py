"""The per-classroom layer selector, driven by estimate traces shaped like the weak-links
profiles: what it picks, how fast it goes down, how slowly it goes back up, and that it does
not flap."""

from __future__ import annotations

from typing import Any

from media.layer_choice import (
    DOWN_HOLD_S,
    MIN_FPS,
    UP_HOLD_S,
    LayerOption,
    LayerSelector,
    allocate,
    options_of,
)
from media.layers import MAX_TID, LayerMeter


def teacher_options() -> list[LayerOption]:
    """A teacher page's three simulcast layers, each L1T3 (full and half frame rate; the
    lowest also at a quarter)."""
    high, mid, low = object(), object(), object()
    rows: list[tuple[Any, int, float, int, float]] = [
        (high, MAX_TID, 1_700_000, 720, 30),
        (high, 1, 1_000_000, 720, 15),
        (mid, MAX_TID, 520_000, 360, 30),
        (mid, 1, 310_000, 360, 15),
        (low, MAX_TID, 160_000, 180, 30),
        (low, 1, 100_000, 180, 15),
        (low, 0, 65_000, 180, 7.5),
    ]
    return [LayerOption(layer, tid, bps, h * 16 // 9, h, fps) for layer, tid, bps, h, fps in rows]


OPTIONS = [teacher_options()]


def run(trace: list[tuple[float, bool]], step: float = 0.5) -> list[int]:
    """Feed ``(budget, congested)`` one row per ``step`` seconds; the option chosen after each."""
    selector = LayerSelector()
    chosen = []
    now = 100.0
    for budget, congested in trace:
        target = selector.decide(OPTIONS, budget, congested, True, now)
        chosen.append(selector.current(OPTIONS)[0] if target is None else target[0])
        now += step
    return chosen


def test_allocate_picks_the_best_that_fits_camera_first() -> None:
    assert allocate(OPTIONS, 5_000_000) == [0]
    assert allocate(OPTIONS, 900_000) == [2]  # 360p at 30 fps
    assert allocate(OPTIONS, 400_000) == [3]  # 360p at 15 fps
    assert allocate(OPTIONS, 10_000) == [6]  # nothing fits: the lowest
    slides = teacher_options()[2:]
    # the camera has the budget first (the other's lowest kept aside); the courseware gets
    # what is left
    assert allocate([OPTIONS[0], slides], 1_100_000) == [1, 3]
    assert allocate([OPTIONS[0], slides], 2_300_000) == [0, 0]
    # a page negotiates slots for sources nobody sends yet (courseware, a classroom on
    # stage): they have no options, and take nothing from the camera's budget
    assert allocate([OPTIONS[0], [], []], 5_000_000) == [0, 0, 0]
    assert allocate([[], OPTIONS[0]], 400_000) == [0, 3]


def test_a_good_link_keeps_the_top_layer_through_its_noise() -> None:
    # a 3 Mbit/s link whose estimate wobbles by 25 %, with random loss that retransmission
    # repairs (no congestion)
    trace = [(3_000_000 * (0.75 if i % 3 else 1.0), False) for i in range(240)]
    assert set(run(trace)) == {0}


def test_a_poor_link_goes_down_within_a_second_and_stays_on_what_fits() -> None:
    # the estimate settles at 1 Mbit/s minus the sound: 360p at 30 fps fits, 720p does not
    trace = [(3_000_000, False)] * 4 + [(900_000, False)] * 120
    chosen = run(trace)
    first_down = next(i for i, c in enumerate(chosen) if c != 0)
    assert (first_down - 4) * 0.5 <= DOWN_HOLD_S + 0.5
    assert chosen[first_down] == 2
    assert set(chosen[first_down:]) == {2}


def test_congestion_goes_down_at_once() -> None:
    chosen = run([(3_000_000, False)] * 2 + [(1_200_000, True)])
    assert chosen[-1] == 1  # 720p at 15 fps fits 90 % of 1.2 Mbit/s


def test_collapse_and_recovery_without_oscillation() -> None:
    good, collapsed = (3_000_000, False), (250_000, True)
    trace = [good] * 20 + [collapsed] * 40 + [good] * 60
    chosen = run(trace)
    assert chosen[19] == 0
    assert chosen[22] == 6 or chosen[22] >= 4  # down to the lowest layer at once
    back = next(i for i in range(60, len(chosen)) if chosen[i] == 0)
    waited = (back - 60) * 0.5
    assert UP_HOLD_S <= waited <= UP_HOLD_S + 1.0
    switches = sum(1 for a, b in zip(chosen, chosen[1:], strict=False) if a != b)
    assert switches == 2  # one down, one back up


def test_an_estimate_on_the_edge_does_not_flap() -> None:
    # the estimate swings around 720p's need every 6 s for two minutes: each step up that
    # does not last doubles the wait before the next
    trace = []
    for i in range(240):
        phase = (i // 12) % 2
        trace.append((2_200_000 if phase else 1_300_000, not phase and i % 12 == 0))
    chosen = run(trace)
    switches = sum(1 for a, b in zip(chosen, chosen[1:], strict=False) if a != b)
    assert switches <= 8  # ≤ 4 a minute, where a selector without hysteresis makes 20
    assert chosen[-1] in (0, 1)


def test_a_vanished_layer_falls_to_the_best_that_costs_no_more() -> None:
    selector = LayerSelector()
    selector.choose(OPTIONS, [2])  # 360p
    without_mid = [[o for o in OPTIONS[0] if o.height != 360]]
    assert without_mid[0][selector.current(without_mid)[0]].height == 180


class _Layer:
    """A layer as options_of reads it: its meter, already measured."""

    def __init__(self, height: int, fps: float, bitrate: float, tids: int) -> None:
        self.meter = LayerMeter()
        self.meter.height, self.meter.width = height, height * 16 // 9
        self.meter.fps, self.meter.bitrate = fps, bitrate
        self.meter.tids = (1 << tids) - 2 if tids > 1 else 0  # layers 1.. seen (0 always)
        share = [0.5, 0.2, 0.3][:tids] if tids == 3 else [1.0]
        self.meter.tid_bitrate = [bitrate * s for s in share] + [0.0] * (4 - len(share))


class _Group:
    def __init__(self, *layers: _Layer) -> None:
        self.layers = list(layers)

    def ranked_layers(self) -> list[_Layer]:
        return self.layers


def test_options_keep_motion_fluid_before_sharpness() -> None:
    # a teacher page at 30 fps: each spatial layer at 30 and 15 fps, the lowest down to 7.5
    thirty = _Group(
        _Layer(720, 30, 1_700_000, 3), _Layer(360, 30, 500_000, 3), _Layer(180, 30, 150_000, 3)
    )
    seen = [(o.height, round(o.fps, 1)) for o in options_of(thirty)]  # type: ignore[arg-type]
    assert seen == [(720, 30), (720, 15), (360, 30), (360, 15), (180, 30), (180, 15), (180, 7.5)]
    # a camera at 20 fps: half of it (10 fps) is below MIN_FPS above the lowest layer
    twenty = _Group(
        _Layer(720, 20, 800_000, 3), _Layer(360, 20, 370_000, 3), _Layer(180, 20, 140_000, 3)
    )
    seen = [(o.height, round(o.fps, 1)) for o in options_of(twenty)]  # type: ignore[arg-type]
    assert seen == [(720, 20), (360, 20), (180, 20), (180, 10), (180, 5)]
    assert all(o.fps >= MIN_FPS for o in options_of(twenty)[:3])  # type: ignore[arg-type]
    # no temporal layers: one option per spatial layer
    plain = _Group(_Layer(720, 30, 1_500_000, 1), _Layer(360, 30, 500_000, 1))
    assert [o.max_tid for o in options_of(plain)] == [MAX_TID, MAX_TID]  # type: ignore[arg-type]
