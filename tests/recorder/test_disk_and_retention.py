"""Disk limits: a nearly full disk stops the recording cleanly (what was recorded stays
playable, the teacher is told); old recordings go after --retain-days."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server import Server, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe

from .lessons import FPS, download, end_and_wait, play_out, publish, request, wait_ready
from .playback import play

MB = 1_000_000
FILL_AT_S = 4.0


def _fill(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)


async def _events(server: Server, lesson: dict[str, Any], seen: list[dict[str, Any]]) -> None:
    """What the teacher's page hears on the lesson's event socket."""
    url = f"{server.url}/api/lessons/{lesson['id']}/events?token={lesson['whip_token']}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                seen.append(message.json())


async def test_nearly_full_disk_stops_the_recording_keeps_it_whole_and_tells_the_teacher(
    tmp_path: Path,
) -> None:
    encode_vp8_clip(30.0, fps=FPS, gop=FPS)
    encode_opus_clip(30.0)
    data = tmp_path / "data"
    data.mkdir()
    # a limit just under what is free now; a 1 GB file written mid-lesson crosses it
    limit = (shutil.disk_usage(data).free - 400 * MB) // MB
    server = start_server(data, "--record-min-free-mb", str(limit))
    filler = data / "filler"
    heard: list[dict[str, Any]] = []
    listening: asyncio.Task[None] | None = None
    try:
        lesson = server.create_lesson("Disk full")
        listening = asyncio.create_task(_events(server, lesson, heard))
        publisher = await publish(lesson, 30.0)
        track = publisher.video_track
        assert track is not None and track.started_at is not None
        await asyncio.sleep(track.started_at + FILL_AT_S - time.monotonic())
        await asyncio.to_thread(_fill, filler, 1000 * MB)
        filled_at = track.frames_sent / FPS
        deadline = time.monotonic() + 5
        recording: dict[str, Any] = {}
        while time.monotonic() < deadline:
            _, body = await request(
                server, "GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key
            )
            recording = body["recording"]
            told = [m for m in heard if m.get("type") == "recording"]
            # (the teacher's socket may hear it a moment after the API shows it)
            if recording["state"] == "stopped" and told and told[-1]["recording"]["state"] == (
                "stopped"
            ):
                break
            await asyncio.sleep(0.2)
        assert recording["state"] == "stopped" and recording["error"] == "low_disk_space"
        assert body["state"] == "live"  # the lesson goes on; only the recording stopped
        assert told and told[-1]["recording"]["state"] == "stopped", heard
        assert "recording stopped" in server.log()

        filler.unlink()
        await asyncio.sleep(2)
        await publisher.close()
        _, final = await end_and_wait(server, lesson["id"])
        assert final["error"] == "low_disk_space"  # the library can say it is incomplete
        playback = play(download(server, final["url"], tmp_path / "kept.webm"))
        assert filled_at - 0.5 <= playback.duration_s <= filled_at + 2.0, (
            playback.duration_s,
            filled_at,
        )
        assert playback.unreadable == 0
        assert playback.distinct_frames() >= 0.98 * FPS * (playback.duration_s - 0.2)
    finally:
        filler.unlink(missing_ok=True)
        if listening is not None:
            listening.cancel()
        server.stop()


async def test_recordings_older_than_retain_days_are_deleted_younger_ones_kept(
    tmp_path: Path,
) -> None:
    encode_vp8_clip(2.0, fps=FPS, gop=FPS)
    encode_opus_clip(2.0)
    data = tmp_path / "data"
    server = start_server(data)
    try:
        lesson = server.create_lesson("Old lesson")
        publisher = await publish(lesson, 2.0)
        await play_out(publisher)
        await publisher.close()
        await end_and_wait(server, lesson["id"])
    finally:
        server.stop()
    directory = data / "recordings" / lesson["id"]
    assert directory.is_dir()

    kept = start_server(data, "--retain-days", "1")
    try:
        await wait_ready(kept, lesson["id"], within=5)
    finally:
        kept.stop()
    assert directory.is_dir()

    await asyncio.sleep(1.0)
    swept = start_server(data, "--retain-days", "0.00001")  # under a second
    try:
        for _ in range(50):
            if not directory.exists():
                break
            await asyncio.sleep(0.1)
        _, body = swept.request("GET", f"/api/lessons/{lesson['id']}", token=swept.teacher_key)
        assert body["recording"] is None
        assert not directory.exists()
    finally:
        swept.stop()


pytestmark = pytest.mark.timeout(120)


# The server's data directory on a small tmpfs of its own: the test fills that very disk
# (seen through /proc/PID/root) while the lesson is being recorded.
_SMALL_DISK = """
import ctypes, subprocess
if ctypes.CDLL(None, use_errno=True).unshare(0x00020000) != 0:  # CLONE_NEWNS
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size={size}", "tmpfs", {path!r}], check=True)
"""


async def test_a_disk_that_really_fills_ends_nothing_but_the_recording(tmp_path: Path) -> None:
    encode_vp8_clip(20.0, fps=FPS, gop=FPS)
    encode_opus_clip(20.0)
    data = tmp_path / "data"
    data.mkdir()
    prelude = _SMALL_DISK.format(size="64m", path=str(data))
    server = start_server(
        data, "--record-min-free-mb", "0", "--disk-reserve-mb", "8", prelude=prelude
    )
    disk = Path(f"/proc/{server.process.pid}/root") / str(data).lstrip("/")
    heard: list[dict[str, Any]] = []
    listening: asyncio.Task[None] | None = None
    classroom = None
    try:
        lesson = server.create_lesson("Disk really full")
        listening = asyncio.create_task(_events(server, lesson, heard))
        publisher = await publish(lesson, 20.0)
        classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
        await classroom.wait_for_frames(30, timeout=10)
        await asyncio.sleep(2.0)
        track = publisher.video_track
        assert track is not None
        await asyncio.to_thread(_fill, disk / "filler", shutil.disk_usage(disk).free)
        filled_at = track.frames_sent / FPS
        assert shutil.disk_usage(disk).free < 64 * 1024

        # the recording stops and says why; the teacher is told; the lesson goes on
        told = await _wait_for(
            lambda: [
                m["recording"]
                for m in heard
                if m.get("type") == "recording" and m["recording"]["state"] == "stopped"
            ],
            within=10,
        )
        assert told[-1]["error"] == "disk_full", told
        assert "released the 8 MB kept in reserve" in server.log()
        seen = classroom.video_frames
        await classroom.wait_for_frames(seen + 30, timeout=5)
        status, created = await request(
            server, "POST", "/api/lessons", token=server.teacher_key, body={"title": "Next"}
        )
        assert status == 201 or (status == 507 and created["error"] == "disk_full"), created

        status, ended = await request(
            server, "POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key
        )
        assert status == 200 and ended["state"] == "ended", ended
        await publisher.close()
        # what was recorded up to the full disk is finalised, in the room the reserve gave
        _, recording = await wait_ready(server, lesson["id"], within=30)
        assert recording["state"] == "ready" and recording["error"] == "disk_full", recording
        playback = play(download(server, recording["url"], tmp_path / "kept.webm"))
        assert playback.unreadable == 0
        assert filled_at - 1.5 <= playback.duration_s <= filled_at + 1.0, (
            playback.duration_s,
            filled_at,
        )
        assert "Traceback" not in server.log()
    finally:
        if classroom is not None:
            await classroom.close()
        if listening is not None:
            listening.cancel()
        server.stop()


async def _wait_for(found: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while not (result := found()):
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.1)
    return result
