"""Encoded frames on the lesson's clock into a playable, seekable file, without transcoding.

VP8 (and audio-only lessons) go to WebM, H.264 to fragmented MP4; Opus is kept as it came.
"""

from __future__ import annotations

import fractions
import functools
import heapq
import io
import itertools
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from .depacketizer import opus_samples

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000
_MP4_FLAGS = "+frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True, slots=True)
class TimedFrame:
    time: float  # seconds on the server's wall clock
    keyframe: bool
    data: bytes


@dataclass
class TrackInput:
    codec: str  # "VP8", "H264" or "OPUS"
    frames: Iterable[TimedFrame]
    width: int = 0
    height: int = 0


@dataclass
class MuxResult:
    path: Path
    container: str
    duration_s: float
    video_frames: int = 0
    audio_packets: int = 0
    keyframe_times: list[float] = field(default_factory=list)  # seconds from the file start


def container_for(video_codec: str | None) -> tuple[str, str]:
    """(FFmpeg format, file extension) for a video codec, or for audio alone."""
    if video_codec == "H264":
        return "mp4", "mp4"
    return "webm", "webm"


@functools.lru_cache(maxsize=1)
def _opus_template_file() -> bytes:
    """A one-packet Ogg Opus file whose header says what WebRTC's Opus is: 48 kHz stereo,
    no pre-skip. Streams are copied from it because PyAV cannot set an audio stream's
    parameters directly, and an opened encoder would announce its own 6.5 ms delay."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as ogg:
        stream: Any = ogg.add_stream("libopus", rate=AUDIO_RATE, layout="stereo")
        stream.codec_context.open()
        stream.codec_context.extradata = b"OpusHead" + struct.pack(
            "<BBHIhB", 1, 2, 0, AUDIO_RATE, 0, 0
        )
        ogg.start_encoding()
        packet = av.Packet(b"\xfc\xff\xfe")  # 20 ms of stereo silence
        packet.pts = packet.dts = 0
        packet.time_base = fractions.Fraction(1, AUDIO_RATE)
        packet.stream = stream
        ogg.mux(packet)
    return buffer.getvalue()


def _timed(
    frames: Iterable[TimedFrame], origin: float, rate: int, audio: bool
) -> Iterator[tuple[int, int, bool, bytes]]:
    """(pts, duration, keyframe, data) in ``1/rate``, strictly increasing, with durations."""
    previous: tuple[int, bool, bytes] | None = None
    last_pts = -1
    step = 3000 if not audio else 960
    for frame in frames:
        pts = round((frame.time - origin) * rate)
        if pts <= last_pts:
            pts = last_pts + 1
        last_pts = pts
        if previous is not None:
            prev_pts, prev_key, prev_data = previous
            duration = opus_samples(prev_data) if audio else pts - prev_pts
            if not audio and 0 < duration < 2 * rate:
                step = duration
            yield prev_pts, max(duration, 1), prev_key, prev_data
        previous = (pts, frame.keyframe, frame.data)
    if previous is not None:
        prev_pts, prev_key, prev_data = previous
        yield prev_pts, (opus_samples(prev_data) if audio else step) or step, prev_key, prev_data


def _keyed(
    index: int, rate: int, packets: Iterator[tuple[int, int, bool, bytes]]
) -> Iterator[tuple[float, int, int, int, bool, bytes]]:
    """Packets of one stream keyed for merging with the others by time."""
    for pts, duration, keyframe, data in packets:
        yield pts / rate, index, pts, duration, keyframe, data


def remux(
    path: Path,
    video: TrackInput | None,
    audio: TrackInput | None,
    origin: float,
    chapters: list[tuple[float, float, str]] | None = None,
) -> MuxResult:
    """Write ``video`` and ``audio`` (frames timed on the wall clock, ``origin`` = file time
    0) to ``path`` atomically: a temporary file, fsync, then a rename."""
    fmt, _ = container_for(video.codec if video else None)
    tmp = path.with_name(f".{path.name}.tmp")
    options = {"movflags": _MP4_FLAGS} if fmt == "mp4" else {}
    result = MuxResult(path, fmt, 0.0)
    template = av.open(io.BytesIO(_opus_template_file()), format="ogg") if audio else None
    try:
        with av.open(str(tmp), "w", format=fmt, options=options) as out:
            streams: list[tuple[Any, int, Iterator[tuple[int, int, bool, bytes]]]] = []
            if video is not None:
                vstream = out.add_mux_stream(
                    video.codec.lower(), width=video.width, height=video.height
                )
                vstream.time_base = fractions.Fraction(1, VIDEO_RATE)
                streams.append((vstream, VIDEO_RATE, _timed(video.frames, origin, VIDEO_RATE, False)))
            if audio is not None and template is not None:
                astream = out.add_stream_from_template(template.streams.audio[0])
                astream.time_base = fractions.Fraction(1, AUDIO_RATE)
                streams.append((astream, AUDIO_RATE, _timed(audio.frames, origin, AUDIO_RATE, True)))
            if chapters and fmt == "webm":
                out.set_chapters(
                    [
                        {
                            "id": i + 1,
                            "start": round(start * 1000),
                            "end": round(end * 1000),
                            "time_base": fractions.Fraction(1, 1000),
                            "metadata": {"title": title},
                        }
                        for i, (start, end, title) in enumerate(chapters)
                    ]
                )
            merged = heapq.merge(
                *(_keyed(index, rate, gen) for index, (_, rate, gen) in enumerate(streams))
            )
            end = 0.0
            for seconds, index, pts, duration, keyframe, data in merged:
                stream, rate, _ = streams[index]
                packet = av.Packet(data)
                packet.pts = packet.dts = pts
                packet.duration = duration
                packet.time_base = stream.time_base
                packet.stream = stream
                if stream.type == "video":
                    packet.is_keyframe = keyframe
                    result.video_frames += 1
                    if keyframe:
                        result.keyframe_times.append(seconds)
                else:
                    result.audio_packets += 1
                out.mux(packet)
                end = max(end, seconds + duration / rate)
            result.duration_s = end
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if template is not None:
            template.close()
    return result


def peek(frames: Iterator[TimedFrame]) -> tuple[TimedFrame | None, Iterator[TimedFrame]]:
    """The first frame and an iterator that still yields it."""
    first = next(frames, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], frames)
