"""A lesson's camera pulled from a real RTSP camera (GStreamer's RTSP server): classrooms
decode it with sound, it is recorded, it comes back by itself after the camera vanished, and
bad cameras and bad URLs get clear errors without troubling the lesson beside."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.recorder.lessons import end_and_wait, fetch
from tests.recorder.playback import play
from tests.server import Server, free_port, start_server
from tests.support.peers import Classroom, whep_subscribe
from tests.support.rtsp_camera import (
    CLIP_GOP,
    RtspCamera,
    clip_pipeline,
    h264_alaw_pipeline,
    make_clip,
    vp8_pipeline,
)

pytestmark = pytest.mark.timeout(120)

PASSWORD = "s3cr@t:/x y"  # characters that must be percent-encoded in the URL
PASSWORD_ENCODED = "s3cr%40t%3A%2Fx%20y"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("camera"), 40)


@pytest.fixture
def camera(clip: Path, tmp_path: Path) -> Iterator[RtspCamera]:
    with RtspCamera(clip_pipeline(clip), tmp_path, ("cam", PASSWORD)) as instance:
        yield instance


class Events:
    """Everything a lesson's events socket says, as it comes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
                self._new.set()

    async def told(self, check: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if check(message):
                    return message
            seen = len(self.messages)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not told within {seconds} s: {self.messages[-5:]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self._task.cancel()
        await self.ws.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def listen(http: aiohttp.ClientSession, server: Server, lesson: dict[str, Any]) -> Events:
    url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events"
    ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {lesson['whep_token']}"})
    return Events(ws)


def source_state(state: str, code: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (
        m["type"] == "source" and m["state"] == state and (code is None or m["code"] == code)
    )


async def patch_source(server: Server, lesson_id: str, url: str | None) -> tuple[int, Any]:
    return await asyncio.to_thread(
        server.request,
        "PATCH",
        f"/api/lessons/{lesson_id}",
        token=server.teacher_key,
        body={"source_url": url},
    )


async def read_lesson(server: Server, lesson_id: str) -> dict[str, Any]:
    status, body = await asyncio.to_thread(
        server.request, "GET", f"/api/lessons/{lesson_id}", token=server.teacher_key
    )
    assert status == 200, body
    return dict(body)


def assert_no_password(text: str) -> None:
    for secret in (PASSWORD, PASSWORD_ENCODED, "s3cr@t", "s3cr%40t"):
        assert secret not in text


def decoded_share(classroom: Classroom) -> tuple[int, int]:
    """(distinct frames decoded, frames the camera sent from the first one decoded)."""
    numbers = classroom.video[0].frame_numbers
    return len(set(numbers)), max(numbers) - numbers[0] + 1


async def test_a_camera_reaches_classrooms_with_sound_and_is_recorded(
    server: Server, camera: RtspCamera, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    lesson = server.create_lesson("RTSP")
    events = await listen(http, server, lesson)
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="room 1")
    try:
        await classroom.wait_connected()
        status, body = await patch_source(server, lesson["id"], camera.url())
        pulled_at = time.monotonic()
        assert status == 200, body
        assert body["source_url"] == f"rtsp://cam:***@127.0.0.1:{camera.port}/live"
        assert_no_password(json.dumps(body))
        await events.told(source_state("live"), 20)
        snapshot = await events.told(lambda m: "camera" in m.get("sources", ()), 5)
        assert snapshot["state"] == "live"
        await classroom.wait_for_frames(150, timeout=30)
        await classroom.wait_for_frames(100, timeout=10, kind="audio")
        video = classroom.video[0]
        assert video.unreadable == 0
        assert video.frame_numbers[0] <= CLIP_GOP  # from the camera's first keyframes
        decoded, sent = decoded_share(classroom)
        assert decoded >= 0.95 * sent, (decoded, sent)
        # a classroom joining between the camera's keyframes starts at its next one; its
        # keyframe requests reach no camera, and are not repeated more than throttling lets
        late = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="late")
        try:
            await late.wait_for_frames(10, timeout=10)
            assert late.video[0].first_frame_keyframe is True
            assert late.video[0].unreadable == 0
        finally:
            await late.close()
        body = await read_lesson(server, lesson["id"])
        asked = body["camera_source"]["keyframe_requests"]
        assert asked <= (time.monotonic() - pulled_at) / 0.5 + 2, asked
        assert body["camera_source"]["state"] == "live"
        assert body["origin_sources"] == ["camera"]
        assert_no_password(json.dumps(body))
        assert_no_password(json.dumps(events.messages))
    finally:
        await classroom.close()
        await events.close()
    _, recording = await end_and_wait(server, lesson["id"], within=60)
    main, _ = await fetch(server, recording, tmp_path)
    playback = await asyncio.to_thread(play, main)
    assert playback.video_codec == "h264", playback
    assert playback.audio_codec == "opus", playback
    assert playback.distinct_frames() >= 100, playback.distinct_frames()
    assert playback.audio_seconds >= 4, playback.audio_seconds
    assert_no_password(server.log())


async def test_the_lesson_comes_back_by_itself_after_the_camera_vanished(
    server: Server, clip: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    camera = RtspCamera(clip_pipeline(clip), tmp_path)
    camera.start()
    lesson = server.create_lesson("Camera drops", source_url=camera.url())
    events = await listen(http, server, lesson)
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="room 2")
    try:
        await classroom.wait_for_frames(25, timeout=30)
        camera.stop()
        lost = await events.told(source_state("lost"), 15)
        assert lost["error"], lost
        # the classroom page shows 老师正在重新连接 while the camera is not among the sources
        await events.told(lambda m: m["type"] == "lesson" and "camera" not in m["sources"], 5)
        frames_before = classroom.video_frames
        await asyncio.sleep(10)  # the camera is away for 10 s
        camera.start()
        await events.told(source_state("live"), 40)
        await events.told(lambda m: m["type"] == "lesson" and "camera" in m["sources"], 5)
        await classroom.wait_for_frames(frames_before + 50, timeout=15)
        assert classroom.video[0].unreadable == 0
    finally:
        await classroom.close()
        await events.close()
        camera.stop()
        await asyncio.to_thread(
            server.request, "POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key
        )


async def garbage_server() -> tuple[asyncio.Server, int]:
    """Something at an RTSP address that answers every request with noise."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1024)
            writer.write(bytes(range(256)) * 64)
            await writer.drain()
            await reader.read(1024)
        except ConnectionError:
            pass
        finally:
            writer.close()

    port = free_port()
    return await asyncio.start_server(answer, "127.0.0.1", port), port


async def test_bad_cameras_get_clear_errors_and_the_lesson_beside_plays_on(
    server: Server, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # beside: a camera with G.711 sound, pulled into another lesson
    beside_camera = RtspCamera(h264_alaw_pipeline(), tmp_path)
    beside_camera.start()
    beside = server.create_lesson("Beside", source_url=beside_camera.url())
    watching = await whep_subscribe(beside["whep_url"], beside["whep_token"], name="beside")
    locked = RtspCamera(h264_alaw_pipeline(), tmp_path, ("cam", PASSWORD))
    locked.start()
    vp8 = RtspCamera(vp8_pipeline(), tmp_path)
    vp8.start()
    garbage, garbage_port = await garbage_server()
    closed_port = free_port()
    bad = {
        "unauthorized": locked.url("cam", "wrong-" + PASSWORD),
        "not_h264": vp8.url(),
        "unreachable": f"rtsp://cam:{PASSWORD_ENCODED}@127.0.0.1:{closed_port}/live",
        "bad_stream": f"rtsp://127.0.0.1:{garbage_port}/live",
    }
    lessons = {}
    listeners = []
    try:
        await watching.wait_for_frames(25, timeout=30)
        await watching.wait_for_frames(25, timeout=10, kind="audio")
        for code, url in bad.items():
            lesson = server.create_lesson(f"Bad {code}")
            listeners.append(events := await listen(http, server, lesson))
            status, body = await patch_source(server, lesson["id"], url)
            assert status == 200, body
            lessons[code] = (lesson, events)
        for code, (lesson, events) in lessons.items():
            told = await events.told(source_state("lost"), 20)
            assert told["code"] == code, told
            assert told["error"] and "rtsp://" not in told["error"], told
            assert_no_password(json.dumps(events.messages))
            body = await read_lesson(server, lesson["id"])
            assert body["camera_source"]["code"] == code
            assert body["state"] == "scheduled"  # nothing came: the lesson is not live
        # the lesson beside never stopped
        frames = watching.video_frames
        await watching.wait_for_frames(frames + 25, timeout=10)
        # the right credentials afterwards: the locked camera plays (G.711 sound too)
        lesson, events = lessons["unauthorized"]
        status, body = await patch_source(server, lesson["id"], locked.url())
        assert status == 200, body
        await events.told(source_state("live"), 20)
        log = server.log()
        for code, (lesson, _) in lessons.items():
            said = f"lesson {lesson['id']}: camera source {code}:"
            lines = [line for line in log.splitlines() if said in line]
            assert len(lines) == 1, (code, lines)
        assert_no_password(log)
    finally:
        for events in listeners:
            await events.close()
        await watching.close()
        for lesson, _ in [*lessons.values(), (beside, None)]:
            await asyncio.to_thread(
                server.request,
                "POST",
                f"/api/lessons/{lesson['id']}/end",
                token=server.teacher_key,
            )
        garbage.close()
        for camera in (beside_camera, locked, vp8):
            camera.stop()
    assert server.process.poll() is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1/live", "rtsp://"),
        ("rtsp://127.0.0.1/" + "x" * 1100, "at most"),
        ("rtsp://cam:p@ss@127.0.0.1/live", "%40"),
        ("rtsp://cam:pa ss@127.0.0.1/live", "percent-encode"),
        ('rtsp://cam:pa"ss@127.0.0.1/live', "percent-encode"),
        ("rtsp://cam:pa%0ass@127.0.0.1/live", "control"),
        ("rtsp://127.0.0.1:99999/live", "port"),
        ("rtsp:///live", "host"),
        (42, "string"),
    ],
)
def test_bad_source_urls_are_refused(server: Server, url: object, words: str) -> None:
    status, body = server.request(
        "POST", "/api/lessons", token=server.teacher_key, body={"title": "x", "source_url": url}
    )
    assert status == 400 and body["error"] == "bad_source_url", body
    assert words in body["message"], body
    lesson = server.create_lesson("Bad URL")
    status, body = server.request(
        "PATCH", f"/api/lessons/{lesson['id']}", token=server.teacher_key, body={"source_url": url}
    )
    assert status == 400 and body["error"] == "bad_source_url", body
    assert "ss@" not in json.dumps(body) or "%40" in words


def test_only_the_teacher_sets_the_source_and_the_camera_is_then_not_published(
    server: Server,
) -> None:
    lesson = server.create_lesson("Who")
    body = {"source_url": "rtsp://cam:pw@127.0.0.1:9/live"}
    status, _ = server.request(
        "PATCH", f"/api/lessons/{lesson['id']}", token=lesson["whep_token"], body=body
    )
    assert status in (401, 403)
    status, answer = server.request(
        "PATCH", f"/api/lessons/{lesson['id']}", token=lesson["whip_token"], body=body
    )
    assert status == 200, answer
    assert answer["source_url"] == "rtsp://cam:***@127.0.0.1:9/live"
    status, answer = server.request(
        "POST",
        f"/whip/{lesson['id']}",
        token=lesson["whip_token"],
        raw=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert status == 409 and answer["error"] == "camera_pulled", answer
    status, answer = server.request(
        "PATCH",
        f"/api/lessons/{lesson['id']}",
        token=server.teacher_key,
        body={"source_url": None},
    )
    assert status == 200 and answer["source_url"] is None, answer
    assert answer["camera_source"] is None
    server.request("POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key)


async def until_source(server: Server, lesson_id: str, state: str, within: float) -> None:
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await read_lesson(server, lesson_id)
        if (body.get("camera_source") or {}).get("state") == state:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"camera source not {state} within {within} s: {body}")


async def test_a_restarted_server_pulls_the_camera_again(
    camera: RtspCamera, tmp_path: Path
) -> None:
    data = tmp_path / "server"
    port = free_port()
    server = start_server(data, port=port)
    try:
        lesson = server.create_lesson("Restart", source_url=camera.url(), record=False)
        await until_source(server, lesson["id"], "live", 20)
    finally:
        code = server.stop()
    assert code == 0, server.log()[-2000:]  # the reading thread does not hold the exit up
    restarted = start_server(data, port=port)
    try:
        # the password was kept sealed, and opened again: the camera lets the server in
        await until_source(restarted, lesson["id"], "live", 20)
        body = await read_lesson(restarted, lesson["id"])
        assert body["state"] == "live"
        assert body["source_url"] == f"rtsp://cam:***@127.0.0.1:{camera.port}/live"
        database = b"".join(p.read_bytes() for p in data.glob("syncclass.db*"))
        assert PASSWORD.encode() not in database and PASSWORD_ENCODED.encode() not in database
        assert_no_password(server.log() + restarted.log())
    finally:
        restarted.stop()
