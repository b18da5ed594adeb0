"""Pre-encoded media for the benchmark origin: 640x480 VP8 or H.264 at ~1 Mbit/s, and Opus.

Every video frame exists twice: as encoded in the stream (one keyframe at the start), and as a
standalone keyframe, so the origin can answer a keyframe request at any frame the way a live
encoder does. Clips are cached on disk, keyed by their parameters.
"""

from __future__ import annotations

import fractions
import pickle
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
FPS = 30
AUDIO_RATE = 48000
OPUS_FRAME = 960  # 20 ms


@dataclass(frozen=True)
class VideoClip:
    codec: str
    frames: list[bytes]  # the stream
    keyframes: list[bytes]  # the same pictures as standalone keyframes

    @property
    def bitrate(self) -> float:
        return sum(len(f) for f in self.frames) * 8 * FPS / len(self.frames)


def _pictures(count: int, width: int, height: int) -> list[av.VideoFrame]:
    """Moving texture and a moving bar: enough detail for a realistic bitrate."""
    rng = np.random.default_rng(1)
    # rounded up: the texture must stay twice the picture's size for any size
    coarse = rng.integers(16, 235, size=(-(-height // 8), -(-width // 8))).astype(np.float32)
    texture = np.kron(coarse, np.ones((16, 16), np.float32))  # soft blocks, twice the size
    texture = (texture + rng.normal(0, 3, texture.shape)).clip(16, 235).astype(np.uint8)
    pictures = []
    for i in range(count):
        dx, dy = (i * 3) % width, (i * 2) % height
        luma = texture[dy : dy + height, dx : dx + width].copy()
        bar = (i * 8) % width
        luma[:, bar : bar + 24] = 235
        frame = av.VideoFrame.from_ndarray(
            np.concatenate([luma, np.full((height // 2, width), 128, np.uint8)]), format="yuv420p"
        )
        pictures.append(frame)
    return pictures


def _encoder(codec: str, width: int, height: int, bitrate: int, gop: int) -> av.CodecContext:
    name = {"VP8": "libvpx", "H264": "libx264"}[codec]
    context = av.CodecContext.create(name, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, FPS)
    context.framerate = fractions.Fraction(FPS, 1)
    context.bit_rate = bitrate
    context.gop_size = gop
    if codec == "VP8":
        context.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "drop-threshold": "0",
            "error-resilient": "1",
        }
    else:
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "bf": "0",
            "x264-params": "repeat-headers=1:scenecut=0",
        }
    return context


def _encode(
    context: av.CodecContext, pictures: list[av.VideoFrame], every_key: bool
) -> list[bytes]:
    out = []
    for i, picture in enumerate(pictures):
        picture.pts = i
        picture.pict_type = (
            av.video.frame.PictureType.I
            if every_key or i == 0
            else (av.video.frame.PictureType.NONE)
        )
        packets = list(context.encode(picture))
        if len(packets) != 1:
            raise RuntimeError(f"frame {i}: {len(packets)} packets")
        out.append(bytes(packets[0]))
    return out


def video_clip(
    codec: str = "VP8",
    seconds: int = 10,
    width: int = 640,
    height: int = 480,
    bitrate: int = 1_000_000,
) -> VideoClip:
    path = CACHE / f"{codec}-{seconds}s-{width}x{height}-{bitrate}.pickle"
    if path.exists():
        clip: VideoClip = pickle.loads(path.read_bytes())
        return clip
    pictures = _pictures(seconds * FPS, width, height)
    frames = _encode(_encoder(codec, width, height, bitrate, 100000), pictures, False)
    keyframes = _encode(_encoder(codec, width, height, bitrate * 3, 1), pictures, True)
    clip = VideoClip(codec, frames, keyframes)
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(clip))
    return clip


def opus_clip(seconds: int = 10) -> list[bytes]:
    path = CACHE / f"opus-{seconds}s.pickle"
    if path.exists():
        frames: list[bytes] = pickle.loads(path.read_bytes())
        return frames
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = AUDIO_RATE, "stereo", "s16"
    context.bit_rate = 48000
    t = np.arange(seconds * AUDIO_RATE) / AUDIO_RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    frames = []
    for start in range(0, len(tone) - OPUS_FRAME + 1, OPUS_FRAME):
        chunk = np.repeat(tone[start : start + OPUS_FRAME], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        frames.extend(bytes(p) for p in context.encode(frame))
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(frames))
    return frames
