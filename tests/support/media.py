"""Pre-encoded test media and a real-time track that plays it.

Publishers in tests do not encode on the fly: clips are encoded once per parameter set (and
cached), then :class:`PacedTrack` hands the encoded frames to aiortc as ``av.Packet`` objects,
which aiortc's sender only packetizes. That keeps CPU load low when a test runs many peers and
makes every run send the same bytes.

Every video frame carries a visible marker (see :func:`make_pattern_frame`): its frame number
and whether it was encoded as a keyframe, drawn as black/white blocks that survive lossy
compression, so a receiver can read them back from the decoded image with
:func:`read_marker`.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz

MARKER_BITS = 16
"""Frame numbers are drawn with this many bits, so they wrap every 65536 frames."""

_WHITE = 235
_BLACK = 16
_BACKGROUND = 60
_BAR = 200


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame: ``pts`` is in the codec clock (90000 video, 48000 audio)."""

    data: bytes
    pts: int
    keyframe: bool
    index: int


@dataclass(frozen=True, slots=True)
class FrameMarker:
    """What :func:`read_marker` found in a decoded picture."""

    index: int
    keyframe: bool


# ---------------------------------------------------------------------------------------------
# Visible pattern


def _block_size(width: int, height: int) -> int:
    # Three rows of MARKER_BITS blocks go across the top; the rest of the picture shows a bar.
    size = min(width // MARKER_BITS, height // 6)
    if size < 4:
        raise ValueError(f"{width}x{height} is too small for the frame marker")
    return size


def _bits(value: int) -> list[int]:
    return [(value >> (MARKER_BITS - 1 - i)) & 1 for i in range(MARKER_BITS)]


def make_pattern_planes(
    index: int, width: int, height: int, keyframe: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the Y, U and V planes (uint8, yuv420p) of frame ``index`` of the test pattern.

    Layout, in blocks of ``min(width // 16, height // 6)`` pixels from the top-left corner:
    row 0 holds the 16-bit frame number (MSB first, white = 1), row 1 its complement (so a
    damaged picture is rejected rather than misread), row 2 starts with the keyframe flag and
    its complement followed by an alternating sync run. Below, a coloured bar moves across a
    dark, noisy background so a human looking at a dump sees motion.
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    block = _block_size(width, height)
    y = np.full((height, width), _BACKGROUND, dtype=np.uint8)
    u = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    v = np.full((height // 2, width // 2), 128, dtype=np.uint8)

    number = _bits(index % (1 << MARKER_BITS))
    rows = [
        number,
        [1 - b for b in number],
        [int(keyframe), 1 - int(keyframe)] + [(i + 1) % 2 for i in range(MARKER_BITS - 2)],
    ]
    for r, row in enumerate(rows):
        for c, bit in enumerate(row):
            y[r * block : (r + 1) * block, c * block : (c + 1) * block] = _WHITE if bit else _BLACK

    top = 3 * block
    # Fresh low-amplitude noise each frame gives the encoder real work, so clips come out near
    # the requested bitrate with several RTP packets per frame, like a camera picture would.
    noise = np.random.default_rng(index).integers(-24, 25, size=(height - top, width))
    y[top:] = (_BACKGROUND + noise).astype(np.uint8)
    bar_width = max(block // 2, 4) & ~1
    span = max(width - bar_width, 1)
    x = (index * 4) % span & ~1
    y[top:, x : x + bar_width] = _BAR
    u[top // 2 :, x // 2 : (x + bar_width) // 2] = 90
    v[top // 2 :, x // 2 : (x + bar_width) // 2] = 220
    return y, u, v


def make_pattern_frame(index: int, width: int, height: int, keyframe: bool) -> av.VideoFrame:
    """Return frame ``index`` of the test pattern as a yuv420p ``av.VideoFrame`` (no pts set)."""
    y, u, v = make_pattern_planes(index, width, height, keyframe)
    stacked = np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)])
    return av.VideoFrame.from_ndarray(stacked, format="yuv420p")


def _luma(frame: av.VideoFrame) -> np.ndarray:
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12", "gray"):
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        return rows[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


def read_marker_from_luma(luma: np.ndarray) -> FrameMarker | None:
    """Read the marker from a luma plane; ``None`` if it is missing or damaged."""
    height, width = luma.shape
    try:
        block = _block_size(width, height)
    except ValueError:
        return None
    # Only the middle of each block is sampled: edges are smeared by the codec.
    lo, hi = block // 4, block - block // 4
    cells = luma[: 3 * block, : MARKER_BITS * block].reshape(3, block, MARKER_BITS, block)
    means = cells[:, lo:hi, :, lo:hi].mean(axis=(1, 3))
    bits = (means >= 128).astype(np.int8)
    # Marker cells are near 16 or 235; anything mid-grey means a corrupt or foreign picture.
    if np.any(np.abs(means - 125.5) < 40):
        return None
    if np.any(bits[0] + bits[1] != 1):
        return None
    if bits[2, 0] + bits[2, 1] != 1:
        return None
    if any(bits[2, i] != (i - 1) % 2 for i in range(2, MARKER_BITS)):
        return None
    index = 0
    for b in bits[0]:
        index = (index << 1) | int(b)
    return FrameMarker(index=index, keyframe=bool(bits[2, 0]))


def read_marker(frame: av.VideoFrame) -> FrameMarker | None:
    """Read the frame number and keyframe flag drawn by :func:`make_pattern_frame`."""
    return read_marker_from_luma(_luma(frame))


# ---------------------------------------------------------------------------------------------
# Encoders


def _check_one_packet(codec: str, index: int, packets: list[av.Packet]) -> av.Packet:
    # PacedTrack and the marker both assume one packet per input picture, in order.
    if len(packets) != 1:
        raise RuntimeError(f"{codec}: frame {index} produced {len(packets)} packets, expected 1")
    return packets[0]


def _encode_video(
    codec_name: str,
    options: dict[str, str],
    seconds: float,
    fps: int,
    width: int,
    height: int,
    gop: int,
    bitrate: int,
) -> tuple[EncodedFrame, ...]:
    count = max(1, round(seconds * fps))
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(codec_name, "w"))
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    ctx.options = options
    frames: list[EncodedFrame] = []
    for i in range(count):
        keyframe = i % gop == 0
        picture = make_pattern_frame(i, width, height, keyframe)
        picture.pts = i
        picture.time_base = ctx.time_base
        if keyframe:
            picture.pict_type = av.video.frame.PictureType.I
        packet = _check_one_packet(codec_name, i, list(ctx.encode(picture)))
        if packet.is_keyframe != keyframe:
            # The marker promises the receiver which frames are keyframes.
            raise RuntimeError(f"{codec_name}: frame {i} keyframe={packet.is_keyframe}")
        frames.append(
            EncodedFrame(
                data=bytes(packet),
                pts=i * VIDEO_CLOCK_RATE // fps,
                keyframe=keyframe,
                index=i,
            )
        )
    if list(ctx.encode(None)):
        raise RuntimeError(f"{codec_name}: encoder held back frames")
    return tuple(frames)


@functools.lru_cache(maxsize=32)
def _vp8_clip(
    seconds: float, fps: int, width: int, height: int, gop: int, bitrate: int
) -> tuple[EncodedFrame, ...]:
    options = {
        "deadline": "realtime",
        "cpu-used": "8",
        # No look-ahead: each picture must come out as its own packet immediately, and
        # alt-ref frames would be invisible extra packets.
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "drop-threshold": "0",
        "keyint_min": str(gop),
        "error-resilient": "1",
        "threads": "1",
    }
    return _encode_video("libvpx", options, seconds, fps, width, height, gop, bitrate)


def encode_vp8_clip(
    seconds: float,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    gop: int = 30,
    bitrate: int = 600_000,
) -> list[EncodedFrame]:
    """Encode ``seconds`` of the test pattern to VP8 (libvpx realtime, keyframe every ``gop``).

    Exactly one frame per picture, keyframes exactly at indexes ``0, gop, 2*gop, ...``.
    Cached per parameter set; the returned list is a fresh copy each call.
    """
    return list(_vp8_clip(seconds, fps, width, height, gop, bitrate))


@functools.lru_cache(maxsize=32)
def _h264_clip(
    seconds: float, fps: int, width: int, height: int, gop: int, bitrate: int
) -> tuple[EncodedFrame, ...]:
    options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "profile": "baseline",
        # repeat-headers puts SPS/PPS in front of every IDR, so a receiver can start at any
        # keyframe; scenecut=0 + min-keyint keep IDRs exactly on the gop grid; one thread
        # keeps the slice layout (and so packetization) the same on every machine.
        "x264-params": (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=1"
            ":threads=1:sliced-threads=0"
        ),
    }
    return _encode_video("libx264", options, seconds, fps, width, height, gop, bitrate)


def encode_h264_clip(
    seconds: float,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    gop: int = 30,
    bitrate: int = 600_000,
) -> list[EncodedFrame]:
    """Encode ``seconds`` of the test pattern to H.264 (libx264 baseline, zerolatency).

    Annex-B byte stream, no B-frames, IDR exactly every ``gop`` frames with SPS/PPS in-band
    before each IDR. Cached per parameter set; the returned list is a fresh copy each call.
    """
    return list(_h264_clip(seconds, fps, width, height, gop, bitrate))


def tone_samples(count: int) -> np.ndarray:
    """``count`` stereo frames of interleaved s16 audio at 48 kHz (``2 * count`` values).

    A quiet 440 Hz tone with a louder 1 kHz beep during the first 100 ms of every second.
    """
    t = np.arange(count) / AUDIO_CLOCK_RATE
    signal = 0.15 * np.sin(2 * math.pi * 440 * t)
    beeping = (t % 1.0) < 0.1
    signal = np.where(beeping, 0.5 * np.sin(2 * math.pi * 1000 * t), signal)
    mono = (signal * 32767).astype(np.int16)
    return np.repeat(mono, 2)  # interleaved L/R


@functools.lru_cache(maxsize=8)
def _opus_clip(seconds: float) -> tuple[EncodedFrame, ...]:
    count = max(1, round(seconds * AUDIO_CLOCK_RATE / OPUS_FRAME_SAMPLES))
    samples = tone_samples(count * OPUS_FRAME_SAMPLES)
    ctx = cast(av.AudioCodecContext, av.CodecContext.create("libopus", "w"))
    ctx.sample_rate = AUDIO_CLOCK_RATE
    ctx.layout = "stereo"
    ctx.format = "s16"
    ctx.bit_rate = 64_000
    ctx.time_base = fractions.Fraction(1, AUDIO_CLOCK_RATE)
    packets: list[av.Packet] = []
    for i in range(count):
        chunk = samples[i * OPUS_FRAME_SAMPLES * 2 : (i + 1) * OPUS_FRAME_SAMPLES * 2]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_CLOCK_RATE
        frame.pts = i * OPUS_FRAME_SAMPLES
        frame.time_base = ctx.time_base
        packets.extend(ctx.encode(frame))
    packets.extend(ctx.encode(None))
    # libopus shifts its pts by the encoder delay; the RTP clock only needs an even 20 ms grid.
    return tuple(
        EncodedFrame(data=bytes(p), pts=i * OPUS_FRAME_SAMPLES, keyframe=True, index=i)
        for i, p in enumerate(packets[:count])
    )


def encode_opus_clip(seconds: float) -> list[EncodedFrame]:
    """Encode ``seconds`` of a stereo 48 kHz tone (beep once a second) to 20 ms Opus frames.

    Cached per duration; the returned list is a fresh copy each call.
    """
    return list(_opus_clip(seconds))


# ---------------------------------------------------------------------------------------------
# Playback


class PlaybackClock:
    """A start time shared by several :class:`PacedTrack` so audio and video stay aligned."""

    def __init__(self) -> None:
        self.started_at: float | None = None

    def start(self) -> float:
        """Return the shared start time, fixing it on the first call."""
        if self.started_at is None:
            self.started_at = time.monotonic()
        return self.started_at


class PacedTrack(MediaStreamTrack):
    """Play pre-encoded frames in real time as ``av.Packet`` objects for aiortc's sender.

    aiortc's ``RTCRtpSender`` does not re-encode packets: it calls its encoder's ``pack()``,
    which only needs ``bytes(packet)``, ``packet.pts`` and ``packet.time_base``. Pacing starts
    at the first ``recv()`` (i.e. once the connection is up). When ``loop`` is true the clip
    repeats with pts continuing to increase, so the RTP timestamps never jump back. Keyframe
    requests (PLI/FIR) cannot be honoured: the next keyframe is the next one in the clip.
    """

    def __init__(
        self,
        frames: Sequence[EncodedFrame],
        kind: str,
        *,
        loop: bool = True,
        clock: PlaybackClock | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
        if not frames:
            raise ValueError("no frames to play")
        self.kind = kind
        self.frames = list(frames)
        self.loop = loop
        self.clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        self._time_base = fractions.Fraction(1, self.clock_rate)
        if len(self.frames) > 1:
            step = self.frames[-1].pts - self.frames[-2].pts
        else:
            step = 3000 if kind == "video" else OPUS_FRAME_SAMPLES
        self._origin = self.frames[0].pts
        self._period = self.frames[-1].pts - self._origin + step
        self._clock = clock or PlaybackClock()
        self._stop_at: int | None = None  # media pts at which playback ends
        self.frames_sent = 0
        self.keyframes_sent = 0
        self.last_index: int | None = None
        self.started_at: float | None = None

    def _media_pts(self, n: int) -> int:
        cycle, pos = divmod(n, len(self.frames))
        return cycle * self._period + self.frames[pos].pts - self._origin

    def stop_after(self, seconds: float) -> None:
        """End the track once ``seconds`` more media has been played.

        Before the first ``recv()`` this counts from the start of playback, so
        ``stop_after(2)`` on a 30 fps clip sends exactly 60 frames.
        """
        if self.started_at is None:
            played = 0
        else:
            played = round((time.monotonic() - self.started_at) * self.clock_rate)
        self._stop_at = played + round(seconds * self.clock_rate)

    async def recv(self) -> av.Packet:
        """Return the next frame as an ``av.Packet``, sleeping until it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        if self.started_at is None:
            self.started_at = self._clock.start()
        n = self.frames_sent
        if not self.loop and n >= len(self.frames):
            self.stop()
            raise MediaStreamError
        pts = self._media_pts(n)
        if self._stop_at is not None and pts >= self._stop_at:
            self.stop()
            raise MediaStreamError
        delay = self.started_at + pts / self.clock_rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        frame = self.frames[n % len(self.frames)]
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = self._time_base
        self.frames_sent += 1
        if frame.keyframe:
            self.keyframes_sent += 1
        self.last_index = frame.index
        return packet
