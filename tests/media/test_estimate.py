"""The per-classroom estimate and the send gate, driven by estimate traces: what a classroom
reports second by second on the links of DESIGN §9, and what the server decides from it."""

from __future__ import annotations

import random

from media.estimate import REMB_DECREASE, REMB_RISE_PER_S, Estimate
from media.layers import LayerMeter, top_layer
from media.send_gate import AUDIO_ONLY, CLEAN_TRIAL_S, FULL, PAUSE_HOLD_S, REDUCED, SendGate

STREAM_BPS = 2_200_000  # the teacher's video, as the issue measured it
AUDIO_BPS = 50_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Room:
    """One classroom's two streams as the gate sees them: what they send and what their
    sources receive, growing with the clock (video stops growing while paused)."""

    source = "camera"
    producer = None  # one layer only: the gate pauses and resumes, it has nothing to choose
    choose_layer = staticmethod(top_layer)

    def __init__(self, clock: Clock, kind: str, bps: float) -> None:
        self.kind = kind
        self.clock = clock
        self.bps = bps
        self.paused_at: float | None = None
        self.resumes = 0
        self.padding = 0
        self.repeated = False
        self.paced = 0.0
        self._sent = 0.0
        self._at = 0.0

    def sent_octets(self) -> int:
        if self.paused_at is None:
            self._sent += (self.clock.t - self._at) * self.bps / 8
        self._at = self.clock.t
        return int(self._sent) + self.padding

    def source_octets(self) -> tuple[int, float] | None:
        return int(self.clock.t * self.bps / 8), self.clock.t

    def pause(self) -> None:
        self.sent_octets()
        self.paused_at = self.clock.t

    def resume(self) -> None:
        self.sent_octets()
        self.paused_at = None
        self.resumes += 1

    def reselect_layer(self) -> None:
        pass

    def on_reliable_path(self) -> bool:
        return False

    def send_padding(self, octets: int) -> int:
        self.padding += octets
        return octets

    def send_report_now(self) -> None:
        pass

    def repeat(self, on: bool, pace_bps: float = 0.0) -> None:
        self.repeated = on

    def pace(self, bps: float) -> None:
        self.paced = bps

    @property
    def redundant(self) -> str | None:
        return "repeat" if self.repeated else None


def classroom(adaptive: bool = True) -> tuple[Clock, SendGate, Room]:
    clock = Clock()
    gate = SendGate(adaptive, now=clock)
    video = Room(clock, "video", STREAM_BPS)
    gate.add(video)
    gate.add(Room(clock, "audio", AUDIO_BPS))
    return clock, gate, video


def play(clock: Clock, gate: SendGate, trace: list[dict[str, float]]) -> list[str]:
    """Each trace row is one second: REMB (if any), loss and RTT of one receiver report."""
    states = []
    for row in trace:
        clock.t += 0.5
        if "remb" in row:
            gate.on_remb(int(row["remb"]))
        clock.t += 0.5
        if "loss" in row:
            gate.on_report(row["loss"], row.get("rtt"))
        states.append(gate.state)
    return states


def rural_random_loss(seconds: int, seed: int = 1) -> list[dict[str, float]]:
    """1–3 % random loss, repaired by retransmission; the round trip does not grow."""
    rng = random.Random(seed)
    return [
        {"loss": rng.uniform(0.01, 0.03), "rtt": 100 + rng.uniform(-8, 8)} for _ in range(seconds)
    ]


def test_random_loss_does_not_push_a_classroom_down() -> None:
    clock, gate, video = classroom()
    states = play(clock, gate, rural_random_loss(60))
    assert states.count(FULL) == 60
    assert video.paused_at is None
    assert gate.estimate.bps is None or gate.estimate.bps >= STREAM_BPS
    assert not gate.link_full


def test_random_loss_with_a_remb_that_carries_the_stream_stays_up() -> None:
    clock, gate, _ = classroom()
    trace = [{**row, "remb": 3_000_000} for row in rural_random_loss(60, seed=2)]
    assert play(clock, gate, trace).count(FULL) == 60


def test_loss_with_a_growing_round_trip_is_congestion_and_pauses_video_at_once() -> None:
    clock, gate, video = classroom()
    play(clock, gate, [{"loss": 0.0, "rtt": 150.0}] * 5)
    assert gate.state == FULL
    # a burst of jitter lifts one report's round trip: no queue yet
    assert play(clock, gate, [{"loss": 0.05, "rtt": 300.0}, {"loss": 0.05, "rtt": 150.0}]) == [
        FULL,
        FULL,
    ]
    # a 1 Mbit/s link fed 2.2 Mbit/s: the queue fills (round trip up, and it stays: three
    # reports), it drops
    states = play(clock, gate, [{"loss": 0.05, "rtt": 300.0}] * 3)
    assert states == [FULL, FULL, AUDIO_ONLY]
    assert video.paused_at is not None
    assert gate.reason == "queueing"
    assert gate.estimate.bps is not None and gate.estimate.bps < STREAM_BPS


def test_heavy_loss_is_congestion_whatever_the_round_trip() -> None:
    clock, gate, _ = classroom()
    play(clock, gate, [{"loss": 0.0, "rtt": 600.0}] * 3)
    assert play(clock, gate, [{"loss": 0.3, "rtt": 600.0}]) == [AUDIO_ONLY]
    assert gate.reason == "loss"


def low_rate_reports(seconds: int, loss: float, seed: int) -> list[tuple[float, int, int]]:
    """A classroom fed the lowest layer (15 packets a second) and its sound (50): each second
    one report per stream, as (when, packets lost, packets covered), losing each packet with
    probability ``loss``."""
    rng = random.Random(seed)
    reports = []
    for second in range(seconds):
        for packets in (15, 50):
            lost = sum(rng.random() < loss for _ in range(packets))
            reports.append((float(second), lost, packets))
    return reports


def test_random_loss_on_a_low_rate_stream_is_not_taken_for_congestion() -> None:
    # 3 % random loss loses two of a report's fifteen packets now and then (13 %): alone, that
    # report looks like heavy loss; pooled with the others, it is what it is
    reports = low_rate_reports(300, 0.03, seed=5)
    alone, pooled = Estimate(), Estimate()
    heavy_alone = heavy_pooled = 0
    for when, lost, packets in reports:
        alone.on_report(lost / packets, 150.0, 250_000, when)
        pooled.on_report(lost / packets, 150.0, 250_000, when, packets)
        heavy_alone += alone.congested
        heavy_pooled += pooled.congested
    assert heavy_alone > 0  # the trace does hold such reports
    assert heavy_pooled == 0
    # a link that carries half of it loses as much in its first second
    for when, lost, packets in low_rate_reports(1, 0.5, seed=6):
        pooled.on_report(lost / packets, 150.0, 250_000, 300.0 + when, packets)
    assert pooled.congested
    assert pooled.reason == "loss"


def test_remb_goes_down_fast_and_up_slowly() -> None:
    estimate = Estimate()
    estimate.on_remb(3_000_000, 0.0)
    estimate.on_remb(700_000, 1.0)
    carried = 700_000 / REMB_DECREASE  # what the link carried, at least
    assert estimate.bps == carried  # at once
    for second in range(2, 5):
        estimate.on_remb(3_000_000, float(second))
    assert estimate.bps is not None
    # at most REMB_RISE_PER_S per second for the 3 s since
    assert estimate.bps <= carried * (1 + REMB_RISE_PER_S) ** 3 + 1
    assert estimate.bps < 3_000_000


def test_video_resumes_after_its_hold_and_a_steady_estimate_then_stays() -> None:
    clock, gate, video = classroom()
    floor = STREAM_BPS * 1.1 + AUDIO_BPS
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 3)
    play(clock, gate, [{"remb": 600_000, "loss": 0.2, "rtt": 400.0}])
    assert gate.state == AUDIO_ONLY
    paused_at = clock.t
    # the probes let the REMB grow back (up slowly: it takes a while to pass the floor)
    remb = 600_000.0
    resumed = None
    for _ in range(60):
        remb = min(remb * 1.3, 4_000_000)
        play(clock, gate, [{"remb": remb, "loss": 0.0, "rtt": 100.0}])
        if gate.state == FULL:
            resumed = clock.t
            break
    assert resumed is not None
    assert resumed - paused_at >= PAUSE_HOLD_S
    assert gate.estimate.bps is not None and gate.estimate.bps >= floor
    assert video.resumes == 1
    assert gate.reason == "probe"
    # and stays: no oscillation on a steady link
    states = play(clock, gate, [{"remb": 4_000_000, "loss": 0.01, "rtt": 100.0}] * 60)
    assert set(states) == {FULL}
    assert gate.switches == 2


def test_a_link_on_the_edge_waits_longer_each_time() -> None:
    clock, gate, _ = classroom()
    pauses = []
    for _ in range(3):
        play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 3)
        while gate.state == FULL:
            play(clock, gate, [{"remb": 2_000_000, "loss": 0.05, "rtt": 200.0}])
        started = clock.t
        while gate.state == AUDIO_ONLY:
            play(clock, gate, [{"remb": 4_000_000, "loss": 0.0, "rtt": 100.0}])
        pauses.append(clock.t - started)
    assert pauses[1] > pauses[0] and pauses[2] > pauses[1]
    assert gate.switches == 6


def test_a_remb_dip_without_loss_or_queueing_is_not_congestion() -> None:
    clock, gate, video = classroom()
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 30.0}] * 5)
    # the receiver's estimator saw a burst of jitter: 0.85 of what it received, once
    states = play(clock, gate, [{"remb": 0.85 * STREAM_BPS, "loss": 0.001, "rtt": 31.0}] * 3)
    assert states == [FULL] * 3 and video.paused_at is None


def test_collapse_pauses_once_loss_confirms_a_remb_far_below() -> None:
    clock, gate, _ = classroom()
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 5)
    clock.t += 0.3
    gate.on_remb(250_000)  # the link fell to 300 kbit/s ...
    assert gate.state == FULL  # ... or this server paused a moment: the REMB alone is no proof
    gate.on_report(0.0, 180.0)
    gate.on_report(0.0, 185.0)  # the round trip grows and stays: a queue, or a busy machine
    assert gate.state == FULL
    gate.on_report(0.04, 190.0)  # the queue overflows: the link's own proof
    assert gate.state == AUDIO_ONLY


def test_sound_is_sent_twice_while_its_reports_lose_it() -> None:
    clock, gate, video = classroom()
    audio = next(c for c in gate._consumers if c.kind == "audio")
    assert isinstance(audio, Room)
    gate.on_report(0.03, 150.0, "audio")
    assert audio.repeated and gate.audio_repeat and not video.repeated
    for _ in range(20):  # a clean spell too short to trust
        clock.t += 1
        gate.on_report(0.0, 150.0, "audio")
    assert audio.repeated
    for _ in range(15):
        clock.t += 1
        gate.on_report(0.0, 150.0, "audio")
    assert not audio.repeated


def test_a_classroom_that_reports_nothing_keeps_the_full_stream() -> None:
    clock, gate, video = classroom()
    for _ in range(60):
        clock.t += 1
        gate.on_nacks(0)
    assert gate.state == FULL and gate.estimate.bps is None and video.paused_at is None


def test_without_adaptation_the_estimate_is_kept_but_nothing_held_back() -> None:
    clock, gate, video = classroom(adaptive=False)
    play(clock, gate, [{"loss": 0.0, "rtt": 150.0}] * 3)
    play(clock, gate, [{"remb": 500_000, "loss": 0.3, "rtt": 500.0}] * 10)
    assert gate.state == FULL and video.paused_at is None
    assert gate.estimate.bps is not None and gate.estimate.bps <= 500_000 / REMB_DECREASE
    assert not gate.link_full


def test_time_in_each_state_adds_up() -> None:
    clock, gate, _ = classroom()
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 10)
    play(clock, gate, [{"remb": 500_000, "loss": 0.2, "rtt": 300.0}] * 5)
    times = gate.times()
    assert abs(sum(times.values()) - clock.t) < 1e-6
    assert times[AUDIO_ONLY] > 3


class _Layer:
    """One simulcast layer as the gate's options read it (no temporal layers)."""

    closed = False

    def __init__(self, height: int, bitrate: float) -> None:
        self.meter = LayerMeter()
        self.meter.height, self.meter.width = height, height * 16 // 9
        self.meter.fps, self.meter.bitrate = 30.0, bitrate


class _Layers:
    """A simulcast source: the group the gate's options are read from."""

    closed = False

    def __init__(self) -> None:
        self.layers = [_Layer(720, 1_600_000), _Layer(360, 500_000), _Layer(180, 150_000)]

    def ranked_layers(self) -> list[_Layer]:
        return self.layers


def test_a_layered_classroom_back_from_a_collapse_is_tried_on_the_lowest_layer() -> None:
    clock, gate, video = layered_classroom(1_600_000)
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 5)
    assert gate.state == FULL
    # the link falls to 100 kbit/s: not even the lowest layer fits
    play(clock, gate, [{"remb": 90_000, "loss": 0.3, "rtt": 400.0}] * 2)
    assert gate.state == AUDIO_ONLY
    # it comes back, but a paused classroom's REMB grows slowly (it gets little): clean
    # reports and an estimate within reach of the lowest layer are enough to try it
    states = play(clock, gate, [{"remb": 150_000, "loss": 0.0, "rtt": 100.0}] * 12)
    assert REDUCED in states, states
    assert gate.choice and gate.choice[0].height == 180
    back = states.index(REDUCED)
    assert back + 1 >= CLEAN_TRIAL_S  # one row per second


def test_a_paused_classroom_whose_remb_stopped_is_tried_again_on_a_line_that_loses_a_little(
) -> None:
    # a browser classroom paused on its REMB (the link was busy a while); paused, its browser
    # sends no more REMB, and its reports show the poor line as it is: 3 % random loss, a
    # steady round trip. That is no congestion: the picture is tried again, on the lowest layer
    clock, gate, video = layered_classroom(1_600_000)
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 150.0}] * 5)
    play(clock, gate, [{"remb": 90_000, "loss": 0.3, "rtt": 400.0}] * 2)
    assert gate.state == AUDIO_ONLY
    rng = random.Random(4)
    states = play(
        clock, gate, [{"loss": 0.03, "rtt": 150 + rng.uniform(-10, 10)} for _ in range(20)]
    )
    assert REDUCED in states, states
    assert gate.choice and gate.choice[0].height == 180


def test_a_layered_classroom_whose_link_collapses_drops_to_what_arrived_at_once() -> None:
    # a classroom that sends receiver reports and no REMB, on 720p (1.6 Mbit/s) and its sound
    clock, gate, video = layered_classroom(1_600_000)
    play(clock, gate, [{"loss": 0.0, "rtt": 100.0}] * 5)
    assert gate.state == FULL
    # its link falls to 300 kbit/s: 85 % of what is sent is lost. Half the loss off what was
    # sent (GCC's step) would leave ~0.9 Mbit/s, 360p, still three times what the link carries
    # and the sound lost with it; what arrived (~250 kbit/s) is where the estimate goes
    play(clock, gate, [{"loss": 0.85, "rtt": 400.0}])
    assert gate.estimate.bps is not None and gate.estimate.bps < 300_000
    assert gate.state == REDUCED and gate.choice[0].height == 180
    # heavy loss short of a collapse (12 %) still takes GCC's step: 6 % off what was sent
    clock2, gate2, _ = layered_classroom(1_600_000)
    play(clock2, gate2, [{"loss": 0.0, "rtt": 100.0}] * 5)
    play(clock2, gate2, [{"loss": 0.12, "rtt": 100.0}])
    assert gate2.estimate.bps is not None and gate2.estimate.bps > 0.9 * 1_600_000


def poor_line_reports(seconds: int, seed: int) -> list[tuple[str, float, float, int]]:
    """A classroom on the lowest layer (450 kbit/s, 40 packets a second) and its sound (50) on
    the poor profile: 150 ms round trip, ±20 ms of jitter each way, 3 % random loss, and room
    enough on the link. Each half second one report, (kind, loss, round trip, packets)."""
    rng = random.Random(seed)
    reports = []
    for tick in range(seconds * 2):
        kind, packets = ("video", 40) if tick % 2 else ("audio", 50)
        lost = sum(rng.random() < 0.03 for _ in range(packets))
        rtt = 150 + rng.uniform(-20, 20) + rng.uniform(-20, 20)
        reports.append((kind, lost / packets, rtt, packets))
    return reports


def test_a_jittery_lossy_line_that_carries_the_lowest_layer_keeps_its_picture() -> None:
    # the round trip swings by up to ±40 ms from one report to the next and 3 % is lost: no
    # queue, no congestion, the picture goes on (a pause costs the classroom seconds of it)
    for seed in range(1, 4):
        clock, gate, video = classroom()
        video.bps = 450_000
        states = []
        for kind, loss, rtt, packets in poor_line_reports(120, seed):
            clock.t += 0.5
            gate.on_report(loss, rtt, kind, packets)
            states.append(gate.state)
        assert AUDIO_ONLY not in states, seed
        assert video.paused_at is None
    # the same line once a queue stands (the round trip up by 200 ms and staying) and loses
    # more is congestion, as before
    for kind, packets in (("video", 40), ("audio", 50), ("video", 40)):
        clock.t += 0.5
        gate.on_report(0.06, 350.0, kind, packets)
    assert gate.estimate.queueing and gate.estimate.congested


def layered_classroom(bps: float = 500_000) -> tuple[Clock, SendGate, Room]:
    clock = Clock()
    gate = SendGate(True, now=clock)
    video = Room(clock, "video", bps)
    video.producer = _Layers()  # type: ignore[assignment]
    gate.add(video)
    gate.add(Room(clock, "audio", AUDIO_BPS))
    return clock, gate, video


def test_video_is_sent_twice_on_a_lossy_link_and_the_copies_go_first_when_it_fills() -> None:
    clock, gate, video = layered_classroom()
    # a long lossy line whose REMB has room for 360p twice (1.05 Mbit/s), not for 720p
    play(clock, gate, [{"remb": 1_350_000, "loss": 0.0, "rtt": 600.0}] * 5)
    assert not video.repeated  # nothing lost, nothing to protect
    play(clock, gate, [{"remb": 1_350_000, "loss": 0.03, "rtt": 600.0}] * 2)
    assert gate.choice and gate.choice[0].height == 360
    states = play(clock, gate, [{"remb": 1_350_000, "loss": 0.015, "rtt": 600.0}] * 4)
    assert video.repeated and gate.video_repeat
    assert gate.choice[0].height == 360  # the copies take spare room, not the picture's
    assert set(states) == {REDUCED}
    # the link fills: a queue stands and it loses: the copies go, the layer stays while what
    # they queued drains
    play(clock, gate, [{"remb": 1_350_000, "loss": 0.03, "rtt": 900.0}] * 3)
    assert not video.repeated
    assert gate.choice[0].height == 360 and gate.video
    # copies that did not last are tried again later each time
    tried = []
    for _ in range(3):
        while not video.repeated:
            play(clock, gate, [{"remb": 1_350_000, "loss": 0.015, "rtt": 600.0}])
        tried.append(clock.t)
        play(clock, gate, [{"remb": 1_350_000, "loss": 0.03, "rtt": 900.0}] * 3)
        assert not video.repeated
    assert tried[2] - tried[1] > tried[1] - tried[0] >= 10


def test_video_on_the_best_layers_is_sent_twice_only_where_the_estimate_has_room() -> None:
    for remb, repeated in ((2_500_000, False), (5_000_000, True)):
        clock, gate, video = layered_classroom()
        video.bps = 1_600_000
        play(clock, gate, [{"remb": remb, "loss": 0.015, "rtt": 100.0}] * 10)
        assert gate.state == FULL
        assert video.repeated is repeated


def test_a_classroom_that_rewinds_is_sent_no_video_until_it_is_back_whatever_its_link() -> None:
    clock, gate, video = classroom()
    play(clock, gate, [{"remb": 3_500_000, "loss": 0.0, "rtt": 100.0}] * 3)
    gate.hold(True)
    assert video.paused_at is not None and gate.held
    # the gate pausing and trying video again underneath does not send it while held
    play(clock, gate, [{"remb": 600_000, "loss": 0.2, "rtt": 400.0}])
    assert gate.state == AUDIO_ONLY
    for _ in range(60):
        play(clock, gate, [{"remb": 4_000_000, "loss": 0.0, "rtt": 100.0}])
    assert gate.state == FULL and video.paused_at is not None and video.resumes == 0
    gate.hold(False)
    assert video.paused_at is None and video.resumes == 1  # from a keyframe (consumer.resume)
    # a gate that holds video back for its link does not resume it when the hold ends
    gate.hold(True)
    play(clock, gate, [{"remb": 600_000, "loss": 0.2, "rtt": 400.0}])
    assert gate.state == AUDIO_ONLY
    gate.hold(False)
    assert video.paused_at is not None and video.resumes == 1
