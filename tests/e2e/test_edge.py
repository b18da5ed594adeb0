"""An edge: a lesson on one server relayed from a lesson on another (its origin) over WHEP.
Two real servers on loopback, a teacher publishing to the origin, classrooms watching the
edge: they see and hear the teacher, the origin counts the edge as one classroom, the picture
comes back by itself when the teacher publishes again, and a bad origin URL gets a clear
error without troubling the lesson beside it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server import Server, free_port, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)

GOP = 30  # the teacher's clip: a keyframe a second at 30 fps


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("origin"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("edge"))
    yield instance
    instance.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def whep_source(origin: Server, lesson: dict[str, Any], name: str = "edge-1") -> str:
    """The origin's lesson as an edge's source_url: its WHEP URL with the classroom token."""
    port = origin.url.rsplit(":", 1)[1]
    return f"http://{name}:{lesson['whep_token']}@127.0.0.1:{port}/whep/{lesson['id']}"


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


async def listen(http: aiohttp.ClientSession, server: Server, lesson: dict[str, Any]) -> Events:
    url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events"
    ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {lesson['whep_token']}"})
    return Events(ws)


def source_state(state: str, code: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (
        m["type"] == "source" and m["state"] == state and (code is None or m["code"] == code)
    )


async def read_lesson(server: Server, lesson_id: str) -> dict[str, Any]:
    status, body = await asyncio.to_thread(
        server.request, "GET", f"/api/lessons/{lesson_id}", token=server.teacher_key
    )
    assert status == 200, body
    return dict(body)


async def teach(origin_lesson: dict[str, Any], seconds: float = 60) -> Publisher:
    teacher = await whip_publish(
        origin_lesson["whip_url"],
        origin_lesson["whip_token"],
        video=encode_vp8_clip(seconds, gop=GOP),
        audio=encode_opus_clip(seconds),
    )
    await teacher.wait_connected()
    return teacher


def decoded_share(classroom: Classroom, since: int = 0) -> tuple[int, int]:
    """(distinct frames decoded, frames the teacher sent from the first one decoded), from
    the ``since``-th frame the classroom decoded."""
    numbers = classroom.video[0].frame_numbers[since:]
    return len(set(numbers)), max(numbers) - numbers[0] + 1


def assert_no_token(text: str, token: str) -> None:
    assert token not in text
    assert token.split(".")[-1] not in text  # not even its signature


async def test_classrooms_of_the_edge_see_and_hear_the_teacher_of_the_origin(
    origin: Server, edge: Server, http: aiohttp.ClientSession
) -> None:
    at_origin = origin.create_lesson("三年级数学")
    teacher = await teach(at_origin)
    at_edge = edge.create_lesson("三年级数学 (edge)", source_url=whep_source(origin, at_origin))
    assert at_edge["source_url"] == (
        f"http://edge-1:***@127.0.0.1:{origin.url.rsplit(':', 1)[1]}/whep/{at_origin['id']}"
    )
    events = await listen(http, edge, at_edge)
    rooms: list[Classroom] = []
    try:
        await events.told(source_state("live"), 20)
        rooms = [
            await whep_subscribe(at_edge["whep_url"], at_edge["whep_token"], name=f"room {i}")
            for i in range(3)
        ]
        for room in rooms:
            await room.wait_for_frames(150, timeout=30)
            await room.wait_for_frames(100, timeout=10, kind="audio")
        for room in rooms:
            video = room.video[0]
            assert video.unreadable == 0
            assert video.first_frame_keyframe is True
            decoded, sent = decoded_share(room)
            assert decoded >= 0.95 * sent, (decoded, sent)
        # the origin counts the edge as one classroom, under the name it was given
        at_origin_now = await read_lesson(origin, at_origin["id"])
        assert at_origin_now["classrooms"] == 1
        assert "edge-1 joined" in origin.log() or "edge-1" in origin.log()
        body = await read_lesson(edge, at_edge["id"])
        assert body["state"] == "live"
        assert body["camera_source"]["via"] == "whep"
        assert body["camera_source"]["state"] == "live"
        assert body["origin_sources"] == ["camera"]
        # an edge records nothing: the lesson is recorded once, at its origin
        assert body["recording"] is None
        # nobody publishes into a relayed lesson: the teacher teaches at the origin
        refused = await whip_publish(
            at_edge["whip_url"],
            at_edge["whip_token"],
            video=encode_vp8_clip(1),
            audio=None,
            check=False,
        )
        assert refused.status == 409
        for text in (json.dumps(body), json.dumps(events.messages), edge.log(), origin.log()):
            assert_no_token(text, at_origin["whep_token"])
    finally:
        for room in rooms:
            await room.close()
        await events.close()
        await teacher.close()


async def test_the_picture_comes_back_when_the_teacher_publishes_again(
    origin: Server, edge: Server, http: aiohttp.ClientSession
) -> None:
    at_origin = origin.create_lesson("Teacher restarts")
    teacher = await teach(at_origin)
    at_edge = edge.create_lesson("Teacher restarts", source_url=whep_source(origin, at_origin))
    events = await listen(http, edge, at_edge)
    room = await whep_subscribe(at_edge["whep_url"], at_edge["whep_token"], name="room 1")
    try:
        await room.wait_for_frames(60, timeout=30)
        await teacher.close()
        quiet = await events.told(source_state("lost", "origin_quiet"), 10)
        assert quiet["error"]
        # the classroom page shows 老师正在重新连接 while the camera is not among the sources
        await events.told(lambda m: m["type"] == "lesson" and "camera" not in m["sources"], 5)
        before = room.video_frames
        seen = len(room.video[0].frame_numbers)
        teacher = await teach(at_origin)
        await events.told(source_state("live"), 15)
        await room.wait_for_frames(before + 90, timeout=20)
        decoded, sent = decoded_share(room, seen + 1)
        assert decoded >= 0.95 * sent, (decoded, sent)
        assert room.video[0].unreadable == 0
    finally:
        await room.close()
        await events.close()
        await teacher.close()


async def test_bad_origins_get_clear_errors_and_trouble_nobody(
    origin: Server, edge: Server, http: aiohttp.ClientSession
) -> None:
    at_origin = origin.create_lesson("Bad origins")
    teacher = await teach(at_origin)
    # a lesson beside, on the edge, taught there and watched
    beside = edge.create_lesson("Beside")
    local_teacher = await teach(beside)
    watcher = await whep_subscribe(beside["whep_url"], beside["whep_token"], name="beside")
    port = origin.url.rsplit(":", 1)[1]
    try:
        await watcher.wait_for_frames(30, timeout=20)
        # what can be told at once: 400 with what is wrong
        for url, words in (
            (f"http://127.0.0.1:{port}/whep/{at_origin['id']}", "token"),
            (f"http://e:t@127.0.0.1:{port}/api/lessons/{at_origin['id']}", "WHEP"),
            (f"http://e:t@127.0.0.1:{port}/whep/{at_origin['id']}?token=x", "query"),
            (f"ftp://e:t@127.0.0.1:{port}/whep/{at_origin['id']}", "http(s)"),
        ):
            status, body = await asyncio.to_thread(
                edge.request,
                "POST",
                "/api/lessons",
                token=edge.teacher_key,
                body={"title": "bad", "source_url": url},
            )
            assert status == 400, (url, body)
            assert body["error"] == "bad_source_url"
            assert words in body["message"], body
        # what only the origin can tell: an error state on the lesson's events
        wrong_token = at_origin["whep_token"][:-4] + "AAAA"
        unreachable = free_port()
        for url, code in (
            (
                f"http://edge-1:{wrong_token}@127.0.0.1:{port}/whep/{at_origin['id']}",
                "invalid_token",
            ),
            (f"http://edge-1:{at_origin['whep_token']}@127.0.0.1:{port}/whep/nosuch", None),
            (
                f"http://edge-1:{at_origin['whep_token']}@127.0.0.1:{unreachable}"
                f"/whep/{at_origin['id']}",
                "unreachable",
            ),
        ):
            lesson = edge.create_lesson("bad origin", source_url=url)
            events = await listen(http, edge, lesson)
            try:
                lost = await events.told(source_state("lost"), 15)
                assert lost["error"], lost
                if code is not None:
                    assert lost["code"] == code, lost
                else:  # a token of one lesson does not open another: refused as such
                    assert lost["code"] in ("wrong_lesson", "no_such_lesson", "bad_token"), lost
                body = await read_lesson(edge, lesson["id"])
                assert body["camera_source"]["state"] in ("lost", "connecting")
                assert body["state"] == "scheduled"
                assert_no_token(json.dumps(events.messages), at_origin["whep_token"])
            finally:
                await events.close()
        # nothing else was troubled: the lesson beside plays on, the origin's lesson too
        before = watcher.video_frames
        await watcher.wait_for_frames(before + 30, timeout=10)
        assert_no_token(edge.log(), at_origin["whep_token"])
        assert_no_token(edge.log(), wrong_token)
        assert edge.process.poll() is None
    finally:
        await watcher.close()
        await local_teacher.close()
        await teacher.close()


async def test_the_edge_comes_back_by_itself_after_the_origin_server_died(
    edge: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    port = free_port()
    origin = start_server(tmp_path / "origin", port=port)
    teacher: Publisher | None = None
    try:
        at_origin = origin.create_lesson("Origin dies")
        teacher = await teach(at_origin)
        at_edge = edge.create_lesson("Origin dies", source_url=whep_source(origin, at_origin))
        events = await listen(http, edge, at_edge)
        room = await whep_subscribe(at_edge["whep_url"], at_edge["whep_token"], name="room 1")
        try:
            await room.wait_for_frames(30, timeout=30)
            origin.stop(signal.SIGKILL)
            await teacher.close(delete=False)
            lost = await events.told(source_state("lost", "lost"), 15)
            assert "silent" in lost["error"], lost
            await events.told(source_state("lost", "unreachable"), 10)
            origin = start_server(tmp_path / "origin", port=port)
            teacher = await teach(at_origin)
            await events.told(source_state("live"), 40)
            before = room.video_frames
            await room.wait_for_frames(before + 60, timeout=15)
            assert room.video[0].unreadable == 0
            # the edge left the dead origin's session and holds one classroom's place
            at_origin_now = await read_lesson(origin, at_origin["id"])
            assert at_origin_now["classrooms"] == 1
        finally:
            await room.close()
            await events.close()
    finally:
        if teacher is not None:
            await teacher.close()
        origin.stop()


def test_the_token_is_kept_sealed(edge: Server, origin: Server, tmp_path: Path) -> None:
    at_origin = origin.create_lesson("Sealed")
    lesson = edge.create_lesson("Sealed", source_url=whep_source(origin, at_origin))
    database = next(edge.data_dir.glob("*.db")).read_bytes()
    assert at_origin["whep_token"].encode() not in database
    status, body = edge.request("GET", f"/api/lessons/{lesson['id']}", token=edge.teacher_key)
    assert status == 200
    assert "***" in body["source_url"]
