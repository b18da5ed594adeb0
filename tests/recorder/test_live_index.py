"""The time index of a recording file while it is written: fragments appear as the writer
completes them, each keyframe is a place a player can start, and what is read from the
growing file plays from the keyframe at or before the time asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recorder.live_index import LiveIndex
from recorder.remux import SourceWriter, TimedFrame
from tests.support.media import encode_h264_clip, encode_opus_clip, encode_vp8_clip

from .playback import play

FPS = 30
GOP_S = 2
SECONDS = 8
ORIGIN = 1_700_000_000.0


def _frames(codec: str) -> tuple[list[TimedFrame], list[TimedFrame]]:
    encode = encode_vp8_clip if codec == "VP8" else encode_h264_clip
    video = [
        TimedFrame(ORIGIN + f.pts / 90_000, f.keyframe, f.data)
        for f in encode(SECONDS, fps=FPS, gop=GOP_S * FPS)
    ]
    audio = [TimedFrame(ORIGIN + f.pts / 48_000, True, f.data) for f in encode_opus_clip(SECONDS)]
    return video, audio


def _growing_index(writer: SourceWriter, directory: Path) -> LiveIndex:
    growing = writer.growing
    assert growing is not None
    (directory / "camera.live.json").write_text(json.dumps(growing))
    index = LiveIndex.open(directory, "camera")
    assert index is not None
    return index


@pytest.mark.parametrize(("codec", "container"), [("VP8", "webm"), ("H264", "mp4")])
def test_the_growing_file_is_indexed_and_plays_from_a_keyframe(
    tmp_path: Path, codec: str, container: str
) -> None:
    writer = SourceWriter(tmp_path, "camera", {"video", "audio"}, {"video", "audio"}, lambda k: 0)
    video, audio = _frames(codec)
    index: LiveIndex | None = None
    seen: list[int] = []
    for second in range(SECONDS):
        step = [f for f in video if second <= f.time - ORIGIN < second + 1]
        writer.add("video", codec, step)
        writer.add("audio", "OPUS", [f for f in audio if second <= f.time - ORIGIN < second + 1])
        writer.pump(final=False)
        if index is None:
            index = _growing_index(writer, tmp_path)
            assert index.content_type == f"video/{container}"
        index.refresh()
        seen.append(len(index.fragments))
    assert index is not None
    # fragments come while the file is written, not at its end: about one a second
    assert seen[-1] >= SECONDS - 3 and seen[2] >= 1, seen
    assert seen == sorted(seen)
    assert not index.complete
    # a keyframe every GOP_S seconds, each one a place to start
    times = [t - ORIGIN for t in index.keyframe_times()]
    assert times[:3] == pytest.approx([0.0, 2.0, 4.0], abs=0.05), times
    assert index.recorded_until is not None and index.recorded_until - ORIGIN >= SECONDS - 3

    # from second 5: the keyframe of second 4, then everything written so far, playable
    start = index.start_for(ORIGIN + 5.0)
    assert start is not None
    assert index.fragments[start].time == pytest.approx(4.0, abs=0.05)
    assert index.start_for(ORIGIN - 10) == index.start_for(ORIGIN)  # before: the first one
    header = index.header
    assert header is not None
    first = index.fragments[start]
    last = index.fragments[-1]
    body = index.read(first.offset, last.end - first.offset)
    played = tmp_path / f"from-5.{container}"
    played.write_bytes(header + body)
    playback = play(played)
    numbers = [n for _, n, _ in playback.frames]
    assert playback.unreadable == 0
    assert numbers[0] == GOP_S * 2 * FPS, numbers[:5]  # frame 120: the keyframe at 4 s
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert playback.audio_seconds > 1.0

    # the writer completes the file: the index says so, and nothing after it is a fragment
    writer.close()
    index.refresh()
    assert index.complete
    index.close()
