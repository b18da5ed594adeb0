"""A network camera for tests: GStreamer's RTSP server (apt: gstreamer1.0-rtsp,
gir1.2-gst-rtsp-server-1.0, python3-gi) in a process of its own on 127.0.0.1, serving a clip
made here with the frame-marker pattern of tests/support/media.py (H.264 + AAC), a live
test picture in VP8 (a camera that is not H.264), or H.264 with G.711 sound.

``camera.stop()`` makes it vanish (killed, as a camera losing power); ``camera.start()``
brings it back on the same port. Each RTSP connection plays the clip from its first frame."""

from __future__ import annotations

import fractions
import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import cast
from urllib.parse import quote

import av

from tests.server import free_port
from tests.support.media import make_pattern_frame, tone_samples

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_camera_server.py")
CLIP_FPS = 25
CLIP_GOP = 25  # a keyframe every second, as cameras are often set


def start_camera_server(arguments: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start an RTSP camera server script (system Python, GStreamer) and wait for its
    ``ready`` line; its errors go to ``log_path``."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            arguments,
            stdout=subprocess.PIPE,
            stderr=log,
            env={k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")},
        )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if line != "ready":
        process.kill()
        process.wait()
        raise RuntimeError(f"the RTSP camera did not start ({line!r}): {log_path}")
    return process


@functools.cache
def make_clip(directory: Path, seconds: int = 40) -> Path:
    """``seconds`` of the marker pattern, 320×240 at 25 fps, H.264 (baseline, an IDR every
    second, parameter sets only in the stream's header) with AAC sound: a camera's stream."""
    path = directory / f"camera-{seconds}s.mkv"
    if path.exists():
        return path
    container = av.open(str(path), "w", format="matroska")
    video = cast(av.VideoStream, container.add_stream("libx264", rate=CLIP_FPS))
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.codec_context.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={CLIP_GOP}:min-keyint={CLIP_GOP}:scenecut=0:bframes=0",
    }
    video.codec_context.bit_rate = 500_000
    audio = cast(av.AudioStream, container.add_stream("aac", rate=48_000))
    audio.layout = "stereo"
    frames = seconds * CLIP_FPS
    for i in range(frames):
        picture = make_pattern_frame(i, 320, 240, i % CLIP_GOP == 0)
        picture.pts = i
        picture.time_base = fractions.Fraction(1, CLIP_FPS)
        container.mux(video.encode(picture))
    container.mux(video.encode(None))
    samples = tone_samples(seconds * 48_000)
    step = 1024
    for start in range(0, seconds * 48_000, step):
        chunk = samples[2 * start : 2 * (start + step)]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = start
        frame.time_base = fractions.Fraction(1, 48_000)
        container.mux(audio.encode(frame))
    container.mux(audio.encode(None))
    container.close()
    return path


def clip_pipeline(clip: Path) -> str:
    """The clip's H.264 and AAC as they are, in real time."""
    return (
        f"filesrc location={clip} ! matroskademux name=d "
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 "
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audioconvert "
        "! audioresample ! audio/x-raw,rate=48000,channels=2 ! avenc_aac "
        "! rtpmp4gpay name=pay1 pt=97"
    )


def vp8_pipeline() -> str:
    """A camera whose video is VP8, not H.264."""
    return (
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 "
        "! vp8enc deadline=1 ! rtpvp8pay name=pay0 pt=96"
    )


def h264_alaw_pipeline() -> str:
    """A live test picture in H.264 with G.711 A-law sound at 8 kHz."""
    return (
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
        "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 "
        "audiotestsrc is-live=true ! audioconvert ! audioresample "
        "! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8"
    )


def available() -> bool:
    return shutil.which("gst-inspect-1.0") is not None or Path(SYSTEM_PYTHON).exists()


class RtspCamera:
    """One camera at ``rtsp://127.0.0.1:PORT/live``; ``credentials`` ``(user, password)``
    turn Basic authentication on."""

    def __init__(
        self,
        pipeline: str,
        log_dir: Path,
        credentials: tuple[str, str] | None = None,
        path: str = "/live",
    ) -> None:
        self.pipeline = pipeline
        self.credentials = credentials
        self.path = path
        self.port = free_port()
        self.log_path = log_dir / f"rtsp-camera-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The camera's URL with these credentials (percent-encoded), by default its own."""
        if user is None and self.credentials is not None:
            user, password = self.credentials
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (
                ":" + quote(password, safe="") if password is not None else ""
            )
            auth += "@"
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        assert self._process is None, "the camera is already on"
        arguments = [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.port), self.path, self.pipeline]
        if self.credentials is not None:
            arguments.append(":".join(self.credentials))
        self._process = start_camera_server(arguments, self.log_path)

    def stop(self) -> None:
        """The camera vanishes at once (SIGKILL: no RTSP TEARDOWN, no goodbye)."""
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
