"""Encoded frames on the lesson's clock into one playable, seekable file, without transcoding.

VP8 (and audio alone) go to WebM, H.264 to fragmented MP4; Opus is kept as it came. The file
is written while the lesson goes on under a temporary name and renamed when it is complete.
"""

from __future__ import annotations

import fractions
import functools
import io
import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from media.depacketizer import opus_samples, vp8_frame_size

from .thumbnail import keyframe_size

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000
RATES = {"video": VIDEO_RATE, "audio": AUDIO_RATE}
# While following a lesson, a track that has not started this long after the other one is
# taken to be absent (a camera without a microphone).
OPEN_WAIT_S = 5.0
THUMBNAIL_AT_S = 3.0  # a picture from just after the start, past a camera's first adjustments
_MP4_FLAGS = "+frag_keyframe+empty_moov+default_base_moof"
# Fragments of at most about a second, each written out as soon as it is complete: a
# classroom catching up reads the file while it grows (recorder.live_index), and is never
# more than a fragment behind what was recorded, even when keyframes are rare. Bit-exact:
# the same packets make the same file (no random segment id), so a recording can be checked
# against another made from the same logs.
FRAGMENT_MS = 1000
_OPTIONS = {
    "webm": {"cluster_time_limit": str(FRAGMENT_MS), "flush_packets": "1", "fflags": "+bitexact"},
    "mp4": {
        "movflags": _MP4_FLAGS,
        "frag_duration": str(FRAGMENT_MS * 1000),
        "flush_packets": "1",
        "fflags": "+bitexact",
    },
}


@dataclass(frozen=True, slots=True)
class TimedFrame:
    time: float  # seconds on the server's wall clock
    keyframe: bool
    data: bytes


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


class _Stream:
    """One output stream: strictly increasing timestamps, each packet with its duration."""

    def __init__(self, kind: str, stream: Any) -> None:
        self.kind = kind
        self.stream = stream
        self.rate = RATES[kind]
        self.time_base = fractions.Fraction(1, self.rate)
        self.last_pts = -1
        self.step = 3000 if kind == "video" else 960
        self.held: tuple[int, bool, bytes] | None = None  # video waits for its successor
        self.packets = 0
        self.end_pts = 0

    def write(self, out: Any, pts: int, keyframe: bool, data: bytes) -> None:
        if pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        if self.kind == "audio":
            self._mux(out, pts, opus_samples(data) or self.step, True, data)
            return
        if self.held is not None:
            held_pts, held_key, held_data = self.held
            duration = pts - held_pts
            if duration < 2 * self.rate:
                self.step = duration
            self._mux(out, held_pts, duration, held_key, held_data)
        self.held = (pts, keyframe, data)

    def flush(self, out: Any) -> None:
        if self.held is not None:
            held_pts, held_key, held_data = self.held
            self._mux(out, held_pts, self.step, held_key, held_data)
            self.held = None

    def _mux(self, out: Any, pts: int, duration: int, keyframe: bool, data: bytes) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.time_base = self.time_base  # the muxer may change the stream's own
        packet.stream = self.stream
        if self.kind == "video":
            packet.is_keyframe = keyframe
        out.mux(packet)
        self.packets += 1
        self.end_pts = max(self.end_pts, pts + duration)


class SourceWriter:
    """The file of one source (camera or courseware), written as its frames come.

    It opens once every expected track has frames, so that audio and video start together.
    Following a lesson, which tracks will come is not known: ``expected`` is None, and a
    track is given up once its log has been read ``OPEN_WAIT_S`` past the first frame of the
    others without a frame of its own (``heard_until(kind)``: the wall-clock time up to which
    its log has been read). What arrives later for a track the file did not open with cannot
    be added; it is reported in ``incomplete`` (and the kind in ``late``: remuxing the logs in
    one go, which knows beforehand which tracks there are, gets it right)."""

    def __init__(
        self,
        directory: Path,
        source: str,
        kinds: set[str],
        expected: set[str] | None,
        heard_until: Callable[[str], float],
    ) -> None:
        self.directory = directory
        self.source = source
        self.kinds = kinds
        self.expected = expected
        self._heard_until = heard_until
        self.origin: float | None = None  # wall-clock time of the file's time 0
        self.video_codec: str | None = None
        self.width = self.height = 0
        self.incomplete: list[str] = []
        self.late: set[str] = set()
        self.thumbnail_keyframe: bytes | None = None
        self._thumbnail_settled = False
        self._queues: dict[str, deque[TimedFrame]] = {"video": deque(), "audio": deque()}
        self._out: Any = None
        self._template: Any = None
        self._streams: dict[str, _Stream] = {}
        self._path: Path | None = None
        self._tmp: Path | None = None

    @property
    def name(self) -> str | None:
        return None if self._path is None else self._path.name

    @property
    def growing(self) -> dict[str, Any] | None:
        """The file being written, for readers while it grows: its name, container, and the
        wall-clock time of its time 0; None until it is opened."""
        if self._tmp is None or self._path is None or self.origin is None:
            return None
        return {
            "source": self.source,
            "file": self._tmp.name,
            "container": self._path.suffix[1:],
            "origin": self.origin,
            "video": self.video_codec if "video" in self._streams else None,
            "audio": "OPUS" if "audio" in self._streams else None,
        }

    def add(self, kind: str, codec: str, frames: list[TimedFrame]) -> None:
        if not frames:
            return
        if kind == "video":
            if self.video_codec is None:
                self.video_codec = codec
            elif codec != self.video_codec:
                self._note(f"{self.source}: video in {codec} after {self.video_codec} is left out")
                return
        if self._out is not None and kind not in self._streams:
            self.late.add(kind)
            self._note(f"{self.source}: {kind} started after the file was opened")
            return
        self._queues[kind].extend(frames)

    def _note(self, reason: str) -> None:
        if reason not in self.incomplete:
            self.incomplete.append(reason)

    def pump(self, final: bool) -> None:
        """Open the file if it is time, then write every frame that is waiting."""
        if self._out is None and not self._open_if_ready(final):
            return
        origin = self.origin
        assert origin is not None
        for kind, stream in self._streams.items():
            queue = self._queues[kind]
            while queue:
                frame = queue.popleft()
                if frame.time < origin:
                    continue
                if kind == "video" and frame.keyframe and not self._thumbnail_settled:
                    self.thumbnail_keyframe = frame.data
                    self._thumbnail_settled = frame.time >= origin + THUMBNAIL_AT_S
                stream.write(
                    self._out,
                    round((frame.time - origin) * stream.rate),
                    frame.keyframe,
                    frame.data,
                )

    def _open_if_ready(self, final: bool) -> bool:
        present = {kind for kind, queue in self._queues.items() if queue}
        if not present:
            return False
        if not final:
            if self.expected is not None:
                if not self.expected <= present:
                    return False
            else:
                first = min(self._queues[kind][0].time for kind in present)
                for kind in self.kinds - present:
                    if self._heard_until(kind) < first + OPEN_WAIT_S:
                        return False
        self._open(present)
        return True

    def _open(self, kinds: set[str]) -> None:
        self.origin = min(self._queues[kind][0].time for kind in kinds)
        video_codec = self.video_codec if "video" in kinds else None
        fmt, extension = container_for(video_codec)
        self._path = self.directory / f"{self.source}.{extension}"
        self._tmp = self.directory / f".{self.source}.{extension}.part"
        self._out = av.open(str(self._tmp), "w", format=fmt, options=dict(_OPTIONS[fmt]))
        if video_codec is not None:
            first = self._queues["video"][0].data
            size = (vp8_frame_size(first) if video_codec == "VP8" else None) or keyframe_size(
                video_codec, first
            )
            self.width, self.height = size or (0, 0)
            stream = self._out.add_mux_stream(
                video_codec.lower(), width=self.width, height=self.height
            )
            stream.time_base = fractions.Fraction(1, VIDEO_RATE)
            self._streams["video"] = _Stream("video", stream)
        if "audio" in kinds:
            self._template = av.open(io.BytesIO(_opus_template_file()), format="ogg")
            stream = self._out.add_stream_from_template(self._template.streams.audio[0])
            stream.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._streams["audio"] = _Stream("audio", stream)

    def close(
        self, chapters: list[tuple[float, float, str]] | None = None
    ) -> dict[str, Any] | None:
        """Write what is left, complete the file and give it its name; None if there was no
        media. ``chapters``: (start, end, title) in seconds on the wall clock."""
        self.pump(final=True)
        if self._out is None:
            return None
        assert self._path is not None and self._tmp is not None and self.origin is not None
        try:
            for stream in self._streams.values():
                stream.flush(self._out)
            if chapters and self._path.suffix == ".webm":
                self._out.set_chapters(
                    [
                        {
                            "id": i + 1,
                            "start": max(round((start - self.origin) * 1000), 0),
                            "end": max(round((end - self.origin) * 1000), 0),
                            "time_base": fractions.Fraction(1, 1000),
                            "metadata": {"title": title},
                        }
                        for i, (start, end, title) in enumerate(chapters)
                    ]
                )
            self._out.close()
            self._out = None
            with open(self._tmp, "rb") as f:
                os.fsync(f.fileno())
            self._tmp.replace(self._path)
        finally:
            self.abort()
        video = self._streams.get("video")
        audio = self._streams.get("audio")
        duration = max(s.end_pts / s.rate for s in self._streams.values())
        return {
            "name": self._path.name,
            "source": self.source,
            "container": self._path.suffix[1:],
            "video": self.video_codec if video else None,
            "audio": "OPUS" if audio else None,
            "duration_s": round(duration, 3),
            "size_bytes": self._path.stat().st_size,
            "video_frames": video.packets if video else 0,
            "audio_packets": audio.packets if audio else 0,
            "width": self.width if video else None,
            "height": self.height if video else None,
            "started_at": self.origin,
        }

    def abort(self) -> None:
        """Give up the file being written (the temporary file goes)."""
        if self._out is not None:
            try:
                self._out.close()
            except av.error.FFmpegError:
                pass
            self._out = None
        if self._template is not None:
            self._template.close()
            self._template = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
