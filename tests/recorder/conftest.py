"""Lessons recorded once for the recorder's tests, all at the same time on one server (as a
school's server records several classes at once): their recordings are what the tests
look at.

- ``vp8``: 20 s of the VP8 pattern with the beeping tone, from an aiortc publisher;
- ``h264``: 20 s of H.264 + Opus from FFmpeg's own WHIP muxer;
- ``gap``: 5 s, the teacher away for 10 s, then 5 s more from a new connection;
- ``courseware``: 12 s of camera, with courseware shared from 3 s to 8 s.

They are held at the same time, so the longest sets the fixture's time: none is longer than
what its tests need (a middle to seek to, a pause with a part on either side).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server, start_server
from tests.support.ffmpeg_whip import publish_with_ffmpeg
from tests.support.media import encode_opus_clip, encode_vp8_clip

from .lessons import FPS, Recorded, end_and_wait, fetch, play_out, publish, request

LESSON_S = 20.0  # the vp8 and h264 lessons: a middle to seek to, many keyframes away
GAP_S = 10.0
GAP_PART_S = 5.0  # each part of the gap lesson, before and after the teacher's absence
COURSEWARE_AT_S = 3.0
COURSEWARE_S = 5.0


@pytest.fixture(scope="package")
def library_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("recorder-server"))
    yield server
    server.stop()


@pytest.fixture(scope="package")
def recorded(
    library_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Recorded]:
    for seconds in (LESSON_S, 12.0, GAP_PART_S, COURSEWARE_S):
        encode_vp8_clip(seconds, fps=FPS, gop=FPS)  # encoded now, not while others publish
        encode_opus_clip(seconds)
    files = tmp_path_factory.mktemp("recordings")
    return asyncio.run(_hold_lessons(library_server, files))


async def _hold_lessons(server: Server, files: Path) -> dict[str, Recorded]:
    names = ("vp8", "h264", "gap", "courseware")
    results = await asyncio.gather(
        _vp8(server, files / "vp8"),
        _h264(server, files / "h264"),
        _gap(server, files / "gap"),
        _courseware(server, files / "courseware"),
    )
    return dict(zip(names, results, strict=True))


async def _create(server: Server, title: str, teacher: str) -> dict:  # type: ignore[type-arg]
    body = {"title": title, "teacher": teacher}
    status, lesson = await request(
        server, "POST", "/api/lessons", token=server.teacher_key, body=body
    )
    assert status == 201, lesson
    return dict(lesson)


async def _finish(
    server: Server,
    lesson: dict,
    to: Path,
    sent: int,
    **notes: float,  # type: ignore[type-arg]
) -> Recorded:
    ready_after, recording = await end_and_wait(server, lesson["id"])
    await asyncio.to_thread(to.mkdir, parents=True, exist_ok=True)
    main, courseware = await fetch(server, recording, to)
    return Recorded(lesson, recording, ready_after, main, courseware, sent, dict(notes))


async def _vp8(server: Server, to: Path) -> Recorded:
    lesson = await _create(server, "三年级数学 · 分数", "王老师")
    publisher = await publish(lesson, LESSON_S)
    sent = await play_out(publisher)
    await publisher.close()
    return await _finish(server, lesson, to, sent)


async def _h264(server: Server, to: Path) -> Recorded:
    lesson = await _create(server, "Grade 8 physics: levers", "Ms Li")
    sent = await asyncio.to_thread(
        publish_with_ffmpeg, lesson["whip_url"], lesson["whip_token"], LESSON_S
    )
    return await _finish(server, lesson, to, sent)


async def _gap(server: Server, to: Path) -> Recorded:
    lesson = await _create(server, "Teacher's link drops", "张老师")
    first = await publish(lesson, GAP_PART_S)
    sent = await play_out(first)
    assert first.video_track is not None and first.video_track.started_at is not None
    last_frame_at = first.video_track.started_at + (sent - 1) / FPS
    await first.close(delete=False)  # gone without a goodbye, as a dropped link is
    await asyncio.sleep(max(0.0, last_frame_at + GAP_S - time.monotonic()))
    second = await publish(lesson, GAP_PART_S)
    sent_again = await play_out(second)
    assert second.video_track is not None and second.video_track.started_at is not None
    await second.close()
    return await _finish(
        server,
        lesson,
        to,
        sent + sent_again,
        gap_s=second.video_track.started_at - last_frame_at,
    )


async def _courseware(server: Server, to: Path) -> Recorded:
    lesson = await _create(server, "Courseware lesson", "王老师")
    camera = await publish(lesson, 12.0)
    await asyncio.sleep(COURSEWARE_AT_S)
    courseware = await publish(lesson, COURSEWARE_S, source="courseware", audio=False)
    await play_out(courseware)
    await courseware.close()
    sent = await play_out(camera)
    await camera.close()
    assert camera.video_track is not None and courseware.video_track is not None
    assert camera.video_track.started_at is not None
    assert courseware.video_track.started_at is not None
    return await _finish(
        server,
        lesson,
        to,
        sent,
        courseware_at_s=courseware.video_track.started_at - camera.video_track.started_at,
    )
