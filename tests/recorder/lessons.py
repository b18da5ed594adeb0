"""Lessons a teacher holds against a test server, and what a test needs to look at their
recordings: publish known clips, end, wait for the recording, download its files."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.server import Server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Publisher, whip_publish

FPS = 30
READY_WITHIN_S = 10.0


@dataclass
class Recorded:
    """One lesson after its end: how long the recording took, and its files on disk."""

    lesson: dict[str, Any]
    recording: dict[str, Any]
    ready_after_s: float  # from the end request's answer to state "ready"
    file: Path
    courseware_file: Path | None = None
    frames_sent: int = 0
    notes: dict[str, float] = field(default_factory=dict)


async def request(server: Server, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """``server.request`` off the event loop, so paced publishers keep their pace."""
    return await asyncio.to_thread(server.request, method, path, **kwargs)


async def publish(
    lesson: dict[str, Any],
    seconds: float,
    *,
    source: str = "camera",
    audio: bool = True,
) -> Publisher:
    """Publish ``seconds`` of the VP8 pattern (and the beeping tone) once, not looped."""
    url = lesson["whip_url"] + ("" if source == "camera" else f"?source={source}")
    publisher = await whip_publish(
        url,
        lesson["whip_token"],
        video=encode_vp8_clip(seconds, fps=FPS, gop=FPS),
        audio=encode_opus_clip(seconds) if audio else None,
        loop=False,
    )
    await publisher.wait_connected()
    return publisher


async def play_out(publisher: Publisher, timeout: float = 60.0) -> int:  # noqa: ASYNC109
    """Wait until the publisher has sent its whole clip; the video frames it sent."""
    track = publisher.video_track
    assert track is not None
    deadline = time.monotonic() + timeout
    while track.readyState == "live":
        if time.monotonic() > deadline:
            raise TimeoutError(f"clip still playing after {timeout} s")
        await asyncio.sleep(0.1)
    return track.frames_sent


async def end_and_wait(
    server: Server, lesson_id: str, within: float = 30.0
) -> tuple[float, dict[str, Any]]:
    """End the lesson; (seconds until its recording was ready, the recording)."""
    status, body = await request(
        server, "POST", f"/api/lessons/{lesson_id}/end", token=server.teacher_key
    )
    assert status == 200, body
    ended = time.monotonic()
    return await wait_ready(server, lesson_id, within, since=ended)


async def wait_ready(
    server: Server, lesson_id: str, within: float, since: float | None = None
) -> tuple[float, dict[str, Any]]:
    start = time.monotonic() if since is None else since
    recording: dict[str, Any] | None = None
    while time.monotonic() - start < within:
        status, body = await request(
            server, "GET", f"/api/lessons/{lesson_id}", token=server.teacher_key
        )
        assert status == 200, body
        recording = body["recording"]
        if recording is not None and recording["state"] in ("ready", "failed"):
            break
        await asyncio.sleep(0.1)
    assert recording is not None and recording["state"] == "ready", recording
    return time.monotonic() - start, recording


def download(server: Server, url: str, to: Path, token: str | None = None) -> Path:
    headers = {"Authorization": f"Bearer {token or server.teacher_key}"}
    with urllib.request.urlopen(
        urllib.request.Request(server.url + url, headers=headers), timeout=30
    ) as response:
        to.write_bytes(response.read())
    return to


async def fetch(server: Server, recording: dict[str, Any], to: Path) -> tuple[Path, Path | None]:
    """Download the main file and the courseware file (if any) of a recording."""
    main = await asyncio.to_thread(
        download, server, recording["url"], to / Path(recording["url"]).name
    )
    courseware = None
    if recording["courseware"]:
        url = recording["courseware"]["url"]
        courseware = await asyncio.to_thread(download, server, url, to / Path(url).name)
    return main, courseware
