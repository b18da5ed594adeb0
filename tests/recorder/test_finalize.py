"""Remuxing logs into files, away from any server: a producer cut off by a crash and the next
one each keep their place and play cleanly; following a growing log gives the same file as
remuxing it in one go."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.finalize import Remuxer, finalize
from tests.support.media import encode_opus_clip, encode_vp8_clip

from .playback import play
from .synthetic import TrackLog

FPS = 30


def _lesson(directory: Path, *, killed: bool, cut: bool) -> None:
    video, audio = TrackLog(directory, "camera", "video"), TrackLog(directory, "camera", "audio")
    clip, sound = encode_vp8_clip(2.0, fps=FPS, gop=FPS), encode_opus_clip(2.0)
    start = 1_700_000_000.0
    video.producer(clip, start, ended=not killed, cut_last_packet=cut)
    audio.producer(sound, start, ended=not killed)
    video.producer(clip, start + 3.0)  # the teacher is back one second after the clip ended
    audio.producer(sound, start + 3.0)
    video.close()
    audio.close()


@pytest.mark.parametrize(
    ("killed", "cut"),
    [(False, False), (True, False), (True, True)],
    ids=["left", "killed", "killed-mid-frame"],
)
def test_two_producers_keep_their_place_and_play_cleanly(
    tmp_path: Path, killed: bool, cut: bool
) -> None:
    _lesson(tmp_path, killed=killed, cut=cut)
    result = finalize(tmp_path)
    playback = play(tmp_path / result["main"])
    assert playback.duration_s == pytest.approx(5.0, abs=0.1)
    assert playback.unreadable == 0, playback.unreadable_at
    first = [t for t, _, _ in playback.frames if t < 2.5]
    second = [t for t, _, _ in playback.frames if t >= 2.5]
    assert len(first) == 2 * FPS - (1 if cut else 0)  # a frame cut short is left out
    assert len(second) == 2 * FPS and second[0] == pytest.approx(3.0, abs=0.01)
    # the beeps at 1 s, then at 3 s and 4 s, sound with their pictures
    offsets = playback.av_offsets(FPS, 0.0, 2.5) + playback.av_offsets(FPS, 2.5, 5.0)
    assert offsets == pytest.approx([0.0] * 3, abs=0.01)
    assert result["late_tracks"] == []


def test_following_a_growing_log_gives_the_file_remuxing_in_one_go_gives(tmp_path: Path) -> None:
    once, followed = tmp_path / "once", tmp_path / "followed"
    once.mkdir()
    followed.mkdir()
    _lesson(once, killed=True, cut=False)
    expected = play(once / finalize(once)["main"])

    video, audio = TrackLog(followed, "camera", "video"), TrackLog(followed, "camera", "audio")
    remuxer = Remuxer(followed, follow=True)
    try:
        clip, sound = encode_vp8_clip(2.0, fps=FPS, gop=FPS), encode_opus_clip(2.0)
        start = 1_700_000_000.0
        video.producer(clip, start, ended=False)
        audio.producer(sound, start, ended=False)
        while remuxer.step():
            pass
        video.producer(clip, start + 3.0)
        audio.producer(sound, start + 3.0)
        video.close()
        audio.close()
        while remuxer.step():
            pass
        result = remuxer.finish()
    finally:
        remuxer.close()
    got = play(followed / result["main"])
    assert result["late_tracks"] == []
    assert got.duration_s == pytest.approx(expected.duration_s, abs=0.01)
    assert [n for _, n, _ in got.frames] == [n for _, n, _ in expected.frames]
    assert got.unreadable == 0 and got.audio_seconds == pytest.approx(expected.audio_seconds)
