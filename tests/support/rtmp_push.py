"""An encoder pushing RTMP, as OBS or a hardware encoder does: FFmpeg's RTMP client and FLV
muxer (through PyAV), H.264 (x264, baseline, an IDR every second) with AAC sound, the
frame-marker pattern of tests/support/media.py, paced in real time.

Run in a process of its own (encoding in the test's process would hold its event loop):
``python -m tests.support.rtmp_push URL SECONDS``; prints ``sent N`` (video frames) at the
end, or ``refused: …`` when the server turned it away."""

from __future__ import annotations

import fractions
import subprocess
import sys
import time
from typing import cast

import av

from tests.support.media import make_pattern_frame, tone_samples

FPS = 25
GOP = 25


def push(url: str, seconds: float, codec: str = "libx264") -> int:
    """Push ``seconds`` of the pattern; ``codec`` "flv" sends Sorenson H.263, not H.264."""
    container = av.open(url, "w", format="flv", timeout=10)
    video = cast(av.VideoStream, container.add_stream(codec, rate=FPS))
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    if codec == "libx264":
        video.codec_context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
        }
    video.codec_context.bit_rate = 500_000
    audio = cast(av.AudioStream, container.add_stream("aac", rate=48_000))
    audio.layout = "stereo"
    frames = round(seconds * FPS)
    samples = tone_samples(frames * 48_000 // FPS + 1024)
    audio_at = 0
    started = time.monotonic()
    for i in range(frames):
        picture = make_pattern_frame(i, 320, 240, i % GOP == 0)
        picture.pts = i
        picture.time_base = fractions.Fraction(1, FPS)
        container.mux(video.encode(picture))
        while audio_at * FPS < (i + 1) * 48_000:
            chunk = samples[2 * audio_at : 2 * (audio_at + 1024)]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = 48_000
            frame.pts = audio_at
            frame.time_base = fractions.Fraction(1, 48_000)
            container.mux(audio.encode(frame))
            audio_at += 1024
        delay = started + (i + 1) / FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    container.mux(video.encode(None))
    container.close()
    return frames


def push_in_child(url: str, seconds: float, codec: str = "libx264") -> str:
    """Push from a child process; what it printed last (``sent N`` or ``refused: …``)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.rtmp_push", url, str(seconds), codec],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}: {done.stderr[-300:]}"


if __name__ == "__main__":
    try:
        print(f"sent {push(sys.argv[1], float(sys.argv[2]), sys.argv[3])}", flush=True)
    except av.error.FFmpegError as exc:
        print(f"refused: {type(exc).__name__} {exc.strerror}", flush=True)
