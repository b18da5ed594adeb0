"""A network camera for the benchmarks: bench/rtsp_camera_server.py (GStreamer's RTSP server,
run with the system's Python as tests/support/rtsp_camera.py runs its own) playing a
pre-encoded H.264 clip in a loop with AAC sound, and telling when it produced each frame."""

from __future__ import annotations

import signal
import subprocess
from collections import defaultdict
from pathlib import Path

from tests.server import free_port
from tests.support.rtsp_camera import SYSTEM_PYTHON, start_camera_server

SERVER_SCRIPT = Path(__file__).with_name("rtsp_camera_server.py")


class BenchCamera:
    """One camera at ``rtsp://127.0.0.1:PORT/live`` playing ``frames`` at ``fps``."""

    def __init__(self, frames: list[bytes], fps: int, directory: Path) -> None:
        self.port = free_port()
        self.fps = fps
        self.clip_path = directory / f"camera-{self.port}.h264"
        self.stamps_path = directory / f"camera-{self.port}.stamps"
        self.log_path = directory / f"camera-{self.port}.log"
        with open(self.clip_path, "wb") as clip:
            for frame in frames:
                clip.write(len(frame).to_bytes(4, "big") + frame)
        self._process: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> None:
        arguments = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            str(self.port),
            "/live",
            str(self.clip_path),
            str(self.fps),
            str(self.stamps_path),
        ]
        self._process = start_camera_server(arguments, self.log_path)

    def produced(self) -> dict[int, list[float]]:
        """For each frame number of the clip, when the camera produced it (monotonic s)."""
        times: dict[int, list[float]] = defaultdict(list)
        try:
            text = self.stamps_path.read_text()
        except FileNotFoundError:
            return times
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                times[int(parts[0])].append(float(parts[1]))
        return times

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
