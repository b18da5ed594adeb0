"""What the teacher's browser sends, read from its own ``getStats()``, and a camera picture that
costs real bits (a ``.y4m`` file for Chromium's fake camera).

Used by the ramp-up tests (tests/e2e/test_uplink.py) and the uplink bench (bench/uplink.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Page

# The camera's outbound video and the estimate of the connection that carries it, for each
# open publishing connection of the page (one whose senders have tracks).
OUTBOUND = """
async () => {
  const found = [];
  for (const pc of window.__peerConnections || []) {
    if (pc.connectionState === 'closed') continue;
    const video = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (!video) continue;
    const stats = await pc.getStats();
    const sample = {state: pc.connectionState, label: video.track.label,
                    settings: video.track.getSettings(), width: 0, height: 0, bytes: 0,
                    at: 0, available: null, limitation: null, fps: null, target: 0};
    stats.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        sample.width = Math.max(sample.width, r.frameWidth || 0);
        sample.height = Math.max(sample.height, r.frameHeight || 0);
        sample.bytes += r.bytesSent || 0;
        sample.at = r.timestamp;
        sample.limitation = r.qualityLimitationReason;
        sample.fps = r.framesPerSecond;
        sample.target += r.targetBitrate || 0;
      }
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = stats.get(r.selectedCandidatePairId);
        if (pair && pair.availableOutgoingBitrate !== undefined) {
          sample.available = pair.availableOutgoingBitrate;
        }
      }
    });
    found.push(sample);
  }
  return found;
}
"""


@dataclass
class Sample:
    t: float  # seconds since the ramp began
    width: int
    height: int
    bitrate: float  # bit/s sent over the last second
    target: float  # the encoder's target bitrate (bit/s)
    available: float | None  # the browser's availableOutgoingBitrate
    limitation: str | None


@dataclass
class Ramp:
    samples: list[Sample] = field(default_factory=list)

    def first(self, check: Callable[[Sample], bool]) -> float | None:
        """Seconds until a sample first passed ``check``, or None."""
        return next((s.t for s in self.samples if check(s)), None)

    def times(self, bitrate: float = 1.5e6) -> dict[str, float | None]:
        """When the estimate, the encoder's target, what was sent, and the picture first
        reached ``bitrate`` and 1280x720."""
        return {
            "estimate_s": self.first(lambda s: (s.available or 0) >= bitrate),
            "target_s": self.first(lambda s: s.target >= bitrate),
            "sent_s": self.first(lambda s: s.bitrate >= bitrate),
            "hd_s": self.first(lambda s: s.width >= 1280 and s.height >= 720),
            "hd_and_target_s": self.first(
                lambda s: s.width >= 1280 and s.height >= 720 and s.target >= bitrate
            ),
        }

    def trace(self) -> list[tuple[float, str, int, int, int, str | None]]:
        """(s, size, kbit/s sent, target kbit/s, estimate kbit/s, limitation), for messages."""
        return [
            (
                s.t,
                f"{s.width}x{s.height}",
                round(s.bitrate / 1e3),
                round(s.target / 1e3),
                round((s.available or 0) / 1e3),
                s.limitation,
            )
            for s in self.samples
        ]


async def outbound(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate(OUTBOUND))


async def watch_ramp(
    page: Page,
    until: Callable[[Ramp], bool],
    *,
    within: float = 30.0,
    every: float = 0.25,
) -> Ramp:
    """Sample the page's camera connection from now until ``until(ramp)`` holds, or
    ``within`` s pass."""
    ramp = Ramp()
    history: list[tuple[float, int]] = []  # (stats timestamp in ms, bytes)
    started = time.monotonic()
    while time.monotonic() < started + within:
        found = [s for s in await outbound(page) if s["state"] == "connected"]
        now = time.monotonic() - started
        if found:
            stat = found[-1]
            history.append((stat["at"], stat["bytes"]))
            while len(history) > 2 and history[-1][0] - history[1][0] >= 1000:
                history.pop(0)
            rate = 0.0
            if len(history) >= 2 and history[-1][0] > history[0][0]:
                rate = (history[-1][1] - history[0][1]) * 8000 / (history[-1][0] - history[0][0])
            ramp.samples.append(
                Sample(
                    t=round(now, 2),
                    width=stat["width"],
                    height=stat["height"],
                    bitrate=rate,
                    target=stat["target"],
                    available=stat["available"],
                    limitation=stat["limitation"],
                )
            )
            if until(ramp):
                break
        await asyncio.sleep(every)
    return ramp


def write_y4m(
    path: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 2.0,
    seed: int = 7,
) -> Path:
    """A moving, textured picture for ``--use-file-for-fake-video-capture``: a smooth random
    texture panning across the frame, with a bright square sweeping to and fro over it
    (4:2:0, raw).

    Chromium plays the file in a loop, so every motion in it is periodic over the clip: its
    last frame leads into its first as any two frames do. A clip that jumped back would make
    a scene cut at every loop, and the teacher's encoder answers a cut by dropping a third of
    a second of frames on its lower layers: a freeze every few seconds that no classroom's
    link is to blame for, and no camera in a classroom makes."""
    rng = np.random.default_rng(seed)
    frames = int(fps * seconds)
    step = 3  # pixels the texture pans per frame
    period = step * frames  # the texture repeats across this width: one loop pans it once
    blocks = -(-period // 16)
    coarse = rng.integers(40, 216, size=(height // 16 + 2, blocks), dtype=np.uint8)
    base = np.kron(coarse, np.ones((16, 16), dtype=np.uint8))[:, :period].astype(np.float32)
    # soften the blocks so that the picture is textured, not noise a camera never sees (a
    # roll wraps around: the texture stays periodic)
    for _ in range(2):
        for axis in (0, 1):
            base = (base + np.roll(base, 5, axis) + np.roll(base, -5, axis)) / 3
    texture = np.tile(base.astype(np.uint8), (1, -(-(width + period) // period)))

    def sweep(i: int, span: int) -> int:
        """To and fro across ``span`` once per loop: where it is at frame ``i``."""
        phase = (2 * i / frames) % 2
        return round(span * (phase if phase <= 1 else 2 - phase))

    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = i * step
            luma = np.ascontiguousarray(texture[:height, shift : shift + width])
            x = sweep(i, width - 160)
            luma[200:360, x : x + 160] = 235
            out.write(b"FRAME\n")
            out.write(luma.tobytes())
            u = chroma.copy()
            u[:, : sweep(i, width // 2)] = 100
            out.write(u.tobytes())
            out.write(chroma.tobytes())
    return path
