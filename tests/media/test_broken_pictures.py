"""A classroom whose decoder keeps asking for keyframes cannot use the layer it is fed, though
its estimate has room for it (a long line whose big keyframes do not get through whole): it is
fed a smaller picture, and not the bigger one again for a while; a healthy classroom's odd
request moves nothing."""

from __future__ import annotations

from media.layer_choice import CAP_HOLD_S
from media.send_gate import BROKEN_REQUESTS, BROKEN_WINDOW_S, FULL, REDUCED
from tests.media.test_rate_probe import Classroom


class TightClassroom(Classroom):
    """A classroom whose receiver's REMB stays at ``remb_cap``: 720p (1.6 Mbit/s) fits its
    estimate, with little to spare."""

    remb_cap = 2_000_000.0

    def _tick(self) -> None:
        self.remb = min(self.remb, self.remb_cap)
        super()._tick()


def height(room: Classroom) -> int:
    """The height of the picture the classroom is fed (the best before any choice)."""
    return room.gate.choice[0].height if room.gate.choice else 720


def settled_on_top() -> Classroom:
    room = TightClassroom(10e6)
    room.run(12)
    assert room.gate.state == FULL and height(room) == 720
    return room


def ask_keyframes(room: Classroom, count: int, every_s: float) -> None:
    for _ in range(count):
        room.gate.on_keyframe_request(room.video)  # type: ignore[arg-type]
        room.run(every_s)


def test_a_picture_that_keeps_breaking_gets_a_smaller_layer_and_keeps_it_a_while() -> None:
    room = settled_on_top()
    ask_keyframes(room, BROKEN_REQUESTS, every_s=2.0)
    gate = room.gate
    assert gate.state == REDUCED and gate.reason == "keyframes"
    assert height(room) == 360  # the next spatial layer down: smaller keyframes
    stepped_at = room.clock.t
    # the estimate has room for 720p all along: no probe, no step up while the cap holds
    room.run(CAP_HOLD_S - 5)
    assert {h for t, _, h in room.states if t > stepped_at} == {360}
    # ... and once it is over, the estimate takes it back up as it would after any step down
    room.run(30)
    assert room.gate.state == FULL and height(room) == 720


def test_the_same_again_soon_after_waits_twice_as_long() -> None:
    room = settled_on_top()
    ask_keyframes(room, BROKEN_REQUESTS, every_s=1.0)
    room.run(CAP_HOLD_S + 20)
    assert height(room) == 720
    ask_keyframes(room, BROKEN_REQUESTS, every_s=1.0)
    assert height(room) == 360
    again_at = room.clock.t
    room.run(2 * CAP_HOLD_S - 5)
    assert {h for t, _, h in room.states if t > again_at} == {360}


def test_a_healthy_classrooms_odd_keyframe_request_moves_nothing() -> None:
    room = settled_on_top()
    # one fewer than it takes, and as many spread out over more than the window
    ask_keyframes(room, BROKEN_REQUESTS - 1, every_s=1.0)
    room.run(BROKEN_WINDOW_S)
    ask_keyframes(room, BROKEN_REQUESTS * 2, every_s=BROKEN_WINDOW_S / (BROKEN_REQUESTS - 1) + 1)
    assert room.gate.state == FULL and height(room) == 720
    assert room.switches(since=0) == 0


def test_a_picture_well_within_the_estimate_is_left_where_it_is() -> None:
    # the same requests from a classroom whose estimate has room to spare are its line's
    # random loss, which a smaller picture would suffer as much
    room = Classroom(10e6)
    room.run(12)
    ask_keyframes(room, BROKEN_REQUESTS * 2, every_s=1.0)
    assert room.gate.state == FULL and height(room) == 720


def test_on_the_lowest_layer_the_requests_are_left_to_the_estimate() -> None:
    room = Classroom(300e3)
    room.run(20)
    assert height(room) == 180
    ask_keyframes(room, BROKEN_REQUESTS, every_s=1.0)
    assert height(room) == 180 and room.gate.reason != "keyframes"


def test_a_satellite_classroom_with_its_video_twice_keeps_its_layer() -> None:
    # its copies take the room they were given; each keyframe sent twice gets through whole
    # more often, and the requests of a long lossy line do not move it to a smaller picture
    room = Classroom(1.2e6, rtt_ms=600.0, loss=0.015)
    room.run(40)
    assert room.gate.video_repeat and height(room) == 360
    ask_keyframes(room, BROKEN_REQUESTS, every_s=1.0)
    assert height(room) == 360 and room.gate.reason != "keyframes"
