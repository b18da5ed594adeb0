"""The stage in media terms: the m-line slots a classroom receives, and which source each
stage slot shows.

A classroom's WHEP session gets, in order, video m-lines for the camera, the courseware and
the stage slots, and audio m-lines for the camera's sound and the stage slots' sound. The
n-th stage slot shows the n-th classroom on stage other than the classroom itself (a
classroom on stage does not receive itself back: no echo). The recording's stage track is a
sink with no source of its own, so it shows the first classroom on stage.
"""

from __future__ import annotations

from media.producer import Sink

from .classrooms import feed_source

STAGE = ("stage", "stage2", "stage3")
SLOTS: dict[str, tuple[str, ...]] = {
    "video": ("camera", "courseware", *STAGE),
    "audio": ("camera", *STAGE),
}


def stage_source(sink: Sink, on_stage: list[str]) -> str | None:
    """The source ``sink`` shows while the classrooms ``on_stage`` are on stage, in order: its
    own for a slot named after a source, else a feed of a classroom on stage, or none."""
    if sink.source not in STAGE:
        return sink.source
    feeds = [feed_source(name) for name in on_stage[: len(STAGE)]]
    others = [source for source in feeds if source != sink.excluded_source]
    index = STAGE.index(sink.source)
    return others[index] if index < len(others) else None
