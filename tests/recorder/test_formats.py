"""A lesson's recording, as a viewer gets it: playable seconds after the end, the whole
lesson, audio with the picture, seekable; VP8 kept in WebM, H.264 in MP4, never re-encoded."""

from __future__ import annotations

import pytest

from .conftest import LESSON_S
from .lessons import FPS, READY_WITHIN_S, Recorded
from .playback import Playback, play, seek

MAX_AV_OFFSET_S = 0.060


def _check_lesson(recorded: Recorded, video_codec: str, seconds: float) -> Playback:
    assert recorded.ready_after_s <= READY_WITHIN_S, recorded.ready_after_s
    recording = recorded.recording
    assert recording["duration_s"] == pytest.approx(seconds, abs=0.5)
    assert recording["size_bytes"] > 0

    playback = play(recorded.file)
    assert playback.video_codec == video_codec
    assert playback.audio_codec == "opus"
    assert playback.duration_s == pytest.approx(seconds, abs=0.5)
    assert playback.unreadable == 0, "damaged pictures in the recording"
    assert playback.distinct_frames() >= 0.98 * recorded.frames_sent, (
        playback.distinct_frames(),
        recorded.frames_sent,
    )
    assert playback.audio_seconds == pytest.approx(seconds, abs=0.5)
    offsets = playback.av_offsets(FPS)
    assert len(offsets) >= seconds - 3, f"beeps heard: {playback.beeps}"
    assert max(abs(o) for o in offsets) <= MAX_AV_OFFSET_S, offsets

    middle = seconds / 2
    landed, keyframe = seek(recorded.file, middle)
    assert middle - 2.0 <= landed <= middle and keyframe, (landed, keyframe)
    return playback


def test_vp8_lesson_is_a_complete_webm_in_sync_ready_within_seconds(
    recorded: dict[str, Recorded],
) -> None:
    lesson = recorded["vp8"]
    assert lesson.file.suffix == ".webm"
    _check_lesson(lesson, "vp8", LESSON_S)


def test_h264_lesson_from_ffmpeg_is_a_complete_mp4_in_sync_ready_within_seconds(
    recorded: dict[str, Recorded],
) -> None:
    lesson = recorded["h264"]
    assert lesson.file.suffix == ".mp4"
    _check_lesson(lesson, "h264", LESSON_S)
