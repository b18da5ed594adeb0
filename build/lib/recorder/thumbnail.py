"""A JPEG for the replay library from one keyframe of the recording (the only decode done)."""

from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Any

import av

WIDTH = 320


def keyframe_size(codec: str, keyframe: bytes) -> tuple[int, int] | None:
    frame = _decode(codec, keyframe)
    return None if frame is None else (frame.width, frame.height)


def _decode(codec: str, keyframe: bytes) -> Any:
    decoder: Any = av.CodecContext.create(codec.lower(), "r")
    try:
        frames = list(decoder.decode(av.Packet(keyframe))) + list(decoder.decode(None))
    except av.error.FFmpegError:
        return None
    return frames[0] if frames else None


def write_thumbnail(codec: str, keyframe: bytes, path: Path) -> bool:
    """Decode ``keyframe`` and write it scaled to 320 pixels wide; False if it cannot be."""
    frame = _decode(codec, keyframe)
    if frame is None or not frame.width or not frame.height:
        return False
    width = WIDTH
    height = max(2, round(frame.height * WIDTH / frame.width / 2) * 2)
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder: Any = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    encoder.options = {"qmin": "2", "qmax": "8"}
    picture.pts = 0
    data = b"".join(bytes(p) for p in list(encoder.encode(picture)) + list(encoder.encode(None)))
    if not data:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return True
