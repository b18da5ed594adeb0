"""Which source each stage slot shows: the n-th slot the n-th classroom on stage other than
the classroom itself (no echo); the recording's stage track the first one on stage."""

from __future__ import annotations

from media.codec import Codec
from media.consumer import Consumer
from signaling.stage import STAGE, stage_source


def slot(name: str, classroom: str | None = None) -> Consumer:
    excluded = None if classroom is None else f"feed:{classroom}"
    return Consumer(name, "video", name, [Codec("video/VP8", 90000, 96)], excluded)


def test_stage_slots_show_the_others_on_stage_in_order() -> None:
    on_stage = ["Ash", "Birch"]
    assert [stage_source(slot(s, "Cedar"), on_stage) for s in STAGE] == [
        "feed:Ash",
        "feed:Birch",
        None,
    ]
    # on stage itself: its first stage slot shows the next one on stage
    assert [stage_source(slot(s, "Ash"), on_stage) for s in STAGE] == ["feed:Birch", None, None]
    assert stage_source(slot("stage"), on_stage) == "feed:Ash"  # a recording's sink
    assert stage_source(slot("camera", "Ash"), on_stage) == "camera"
    assert stage_source(slot("stage", "Ash"), []) is None
