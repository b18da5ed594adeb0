"""What a viewer would get from a recording file, measured with PyAV: duration, the frame
numbers drawn in the picture, the beeps in the sound, where a seek lands."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from tests.support.media import AUDIO_CLOCK_RATE, read_marker

BEEP_HZ = 1000
TONE_HZ = 440
WINDOW = 240  # 5 ms at 48 kHz


@dataclass
class Playback:
    duration_s: float
    video_codec: str | None
    audio_codec: str | None
    # (presentation time in s, frame number drawn in the picture, drawn keyframe flag)
    frames: list[tuple[float, int, bool]] = field(default_factory=list)
    unreadable_at: list[float] = field(default_factory=list)  # damaged pictures' times
    audio_seconds: float = 0.0
    beeps: list[float] = field(default_factory=list)  # onset times in s

    @property
    def unreadable(self) -> int:
        return len(self.unreadable_at)

    def distinct_frames(self) -> int:
        return len({(round(t), n) for t, n, _ in self.frames})

    def video_offset(self, fps: int, since: float = 0.0, until: float = 1e9) -> float:
        """Median of (presentation time - frame number / fps) over a part of the file."""
        return statistics.median(t - n / fps for t, n, _ in self.frames if since <= t < until)

    def av_offsets(self, fps: int, since: float = 0.0, until: float = 1e9) -> list[float]:
        """For each beep (drawn at whole seconds of the clip) in the part: how much later it
        sounds than the video frame drawn at the same moment of the clip."""
        video = self.video_offset(fps, since, until)
        offsets = []
        for onset in self.beeps:
            if since + 0.5 <= onset < until - 0.5:
                second = round(onset - video)
                offsets.append(onset - video - second)
        return offsets


def _beep_onsets(samples: np.ndarray, start: float) -> list[float]:
    """Times where the 1 kHz beep starts over the quiet 440 Hz tone (tests.support.media)."""
    usable = len(samples) // WINDOW * WINDOW
    windows = samples[:usable].reshape(-1, WINDOW)
    t = np.arange(WINDOW) / AUDIO_CLOCK_RATE
    beep = np.abs(windows @ np.exp(-2j * np.pi * BEEP_HZ * t))
    tone = np.abs(windows @ np.exp(-2j * np.pi * TONE_HZ * t))
    loud = beep > 2 * tone + 1.0
    onsets = []
    previous = False
    for i, is_loud in enumerate(loud):
        if is_loud and not previous:
            onsets.append(start + i * WINDOW / AUDIO_CLOCK_RATE)
        previous = bool(is_loud)
    return onsets


def _mono(frame: av.AudioFrame) -> np.ndarray:
    pcm = frame.to_ndarray()
    if frame.format.is_planar:
        mono = pcm.mean(axis=0)
    else:
        mono = pcm.reshape(-1, frame.layout.nb_channels).mean(axis=1)
    if pcm.dtype.kind == "i":
        mono = mono / 32768.0
    return mono


def play(path: Path) -> Playback:
    """Decode the whole file the way a player would."""
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        result = Playback(
            duration_s=(container.duration or 0) / 1e6,
            video_codec=video.codec_context.name if video else None,
            audio_codec=audio.codec_context.name if audio else None,
        )
        chunks: list[np.ndarray] = []
        audio_start: float | None = None
        streams = [s for s in (video, audio) if s is not None]
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if frame.pts is None or frame.time is None:
                    continue
                if isinstance(frame, av.VideoFrame):
                    marker = read_marker(frame)
                    if marker is None:
                        result.unreadable_at.append(float(frame.time))
                    else:
                        result.frames.append((float(frame.time), marker.index, marker.keyframe))
                elif isinstance(frame, av.AudioFrame):
                    mono = _mono(frame)
                    if audio_start is None:
                        audio_start = float(frame.time)
                    expected = (float(frame.time) - audio_start) * AUDIO_CLOCK_RATE
                    have = sum(len(c) for c in chunks)
                    if expected > have + 1:  # a gap in the file: keep the sample clock right
                        chunks.append(np.zeros(round(expected - have), dtype=np.float32))
                    chunks.append(np.asarray(mono, dtype=np.float32))
        if chunks and audio_start is not None:
            samples = np.concatenate(chunks)
            result.audio_seconds = len(samples) / AUDIO_CLOCK_RATE
            result.beeps = _beep_onsets(samples, audio_start)
    return result


def seek(path: Path, seconds: float) -> tuple[float, bool]:
    """Seek as a player does (to the keyframe at or before ``seconds``) and decode one frame:
    (its time, whether the picture says it was encoded as a keyframe)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        container.seek(round(seconds / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            marker = read_marker(frame)
            assert marker is not None, "the first picture after a seek is damaged"
            return float(frame.time or 0.0), marker.keyframe
    raise AssertionError("nothing to decode after the seek")
