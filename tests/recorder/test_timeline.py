"""Lesson time is kept: a teacher who drops out leaves a pause in the recording, not a cut,
and comes back in sync; courseware shared mid-lesson is on the same clock, with chapters."""

from __future__ import annotations

import pytest

from .conftest import COURSEWARE_S, GAP_PART_S, GAP_S
from .lessons import FPS, Recorded
from .playback import play

MAX_AV_OFFSET_S = 0.060


def test_origin_away_for_10_s_leaves_a_10_s_pause_and_comes_back_in_sync(
    recorded: dict[str, Recorded],
) -> None:
    lesson = recorded["gap"]
    gap = lesson.notes["gap_s"]  # from the first part's last frame to the second's first
    assert gap >= GAP_S
    playback = play(lesson.file)
    assert playback.duration_s == pytest.approx(2 * GAP_PART_S + gap, abs=0.5)
    assert playback.unreadable == 0
    assert playback.distinct_frames() >= 0.98 * lesson.frames_sent

    times = sorted(t for t, _, _ in playback.frames)
    pauses = [(b - a, a) for a, b in zip(times, times[1:], strict=False)]
    longest, paused_at = max(pauses)
    assert longest == pytest.approx(gap, abs=0.3), (longest, gap)
    assert paused_at == pytest.approx(GAP_PART_S, abs=0.5)

    # both parts show every frame of the clip, each at its own time, with its own sound
    back_at = paused_at + longest
    first = [n for t, n, _ in playback.frames if t <= paused_at]
    second = [n for t, n, _ in playback.frames if t >= back_at]
    last = round(GAP_PART_S * FPS) - 1
    assert min(first) == 0 and min(second) == 0 and max(second) >= last - 10
    for since, until in ((0.0, paused_at), (back_at, playback.duration_s)):
        offsets = playback.av_offsets(FPS, since, until)
        assert len(offsets) >= GAP_PART_S - 2, playback.beeps
        assert max(abs(o) for o in offsets) <= MAX_AV_OFFSET_S, (since, offsets)


def test_courseware_is_recorded_on_the_lesson_clock_with_chapter_marks(
    recorded: dict[str, Recorded],
) -> None:
    lesson = recorded["courseware"]
    recording = lesson.recording
    shared_at = lesson.notes["courseware_at_s"]
    assert lesson.file.name == "camera.webm"
    assert recording["courseware"] is not None and lesson.courseware_file is not None
    assert recording["courseware"]["offset_s"] == pytest.approx(shared_at, abs=0.3)
    (chapter,) = recording["chapters"]
    assert chapter["start_s"] == pytest.approx(shared_at, abs=0.3)
    assert chapter["end_s"] == pytest.approx(shared_at + COURSEWARE_S, abs=0.5)

    courseware = play(lesson.courseware_file)
    assert courseware.audio_codec is None
    assert courseware.duration_s == pytest.approx(COURSEWARE_S, abs=0.3)
    assert courseware.unreadable == 0
    assert courseware.distinct_frames() >= 0.98 * COURSEWARE_S * FPS
    # what the courseware showed at its start is at the right moment of the lesson
    assert courseware.video_offset(FPS) == pytest.approx(0.0, abs=0.05)

    camera = play(lesson.file)
    assert camera.duration_s == pytest.approx(12.0, abs=0.5)
    assert camera.distinct_frames() >= 0.98 * lesson.frames_sent
