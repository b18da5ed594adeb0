"""The lesson directory in Redis: servers started with ``--redis`` register themselves and
their lessons; a classroom's join link, given at the lesson's home, is answered by the server
that should carry it (an edge of its region, through a 307); the edge has the home vouch for
the classroom's own token and relays the lesson; an edge that dies stops being chosen; Redis
going away stops nothing that plays. Real servers, a real redis-server, aiortc peers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from signaling.cluster_credentials import ClusterCredentials
from tests.e2e.test_edge import assert_no_token, decoded_share, read_lesson, teach
from tests.server import Server, free_port, start_server
from tests.support.peers import Classroom, whep_subscribe
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(180)

SECRET = "cluster-secret-of-the-tests-0123"
REGION = "county-a"


def start_member(
    directory: Path, store: RedisServer, *, edge: bool = False, region: str | None = None
) -> Server:
    port = free_port()
    args = [
        "--redis",
        store.url,
        "--server-url",
        f"http://127.0.0.1:{port}",
        "--cluster-secret",
        SECRET,
    ]
    if edge:
        args.append("--edge")
    if region is not None:
        args += ["--region", region]
    server = start_server(directory, *args, port=port)
    wait_for_key(store, f"syncclass:server:127.0.0.1:{port}")
    return server


def wait_for_key(store: RedisServer, key: str, seconds: float = 10) -> None:
    client = redis.Redis.from_url(store.url)
    try:
        deadline = time.monotonic() + seconds
        while client.get(key) is None:
            assert time.monotonic() < deadline, f"{key} never registered"
            time.sleep(0.1)
    finally:
        client.close()


def server_id(server: Server) -> str:
    return server.url.removeprefix("http://")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    instance = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, store: RedisServer) -> Iterator[Server]:
    instance = start_member(tmp_path_factory.mktemp("home"), store)
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, store: RedisServer) -> Iterator[Server]:
    instance = start_member(tmp_path_factory.mktemp("edge"), store, edge=True, region=REGION)
    yield instance
    instance.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def joined_lesson(store: RedisServer, server: Server) -> dict[str, Any]:
    lesson = server.create_lesson("三年级数学")
    wait_for_key(store, f"syncclass:lesson:{lesson['id']}")
    return lesson


async def join(lesson: dict[str, Any], name: str, region: str | None = REGION) -> Classroom:
    query = f"?name={name.replace(' ', '%20')}" + (f"&region={region}" if region else "")
    return await whep_subscribe(lesson["whep_url"] + query, lesson["whep_token"], name=name)


async def test_a_classroom_of_the_region_joins_through_its_edge(
    store: RedisServer, home: Server, edge: Server, http: aiohttp.ClientSession
) -> None:
    lesson = joined_lesson(store, home)
    teacher = await teach(lesson)
    rooms: list[Classroom] = []
    try:
        rooms = [await join(lesson, f"room {i}") for i in range(2)]
        for room in rooms:
            assert room.session_url is not None and room.session_url.startswith(edge.url), room
        for room in rooms:
            await room.wait_for_frames(150, timeout=40)
            await room.wait_for_frames(100, timeout=10, kind="audio")
        for room in rooms:
            video = room.video[0]
            assert video.unreadable == 0
            assert video.first_frame_keyframe is True
            decoded, sent = decoded_share(room)
            assert decoded >= 0.95 * sent, (decoded, sent)
        # the home counts the edge as one classroom, whatever the edge carries
        at_home = await read_lesson(home, lesson["id"])
        assert at_home["classrooms"] == 1
        # the edge relays the lesson under its id, and records nothing
        status, at_edge = await asyncio.to_thread(
            edge.request, "GET", f"/api/lessons/{lesson['id']}", token=lesson["whep_token"]
        )
        assert status == 200, at_edge
        assert at_edge["state"] == "live"
        assert at_edge["camera_source"]["via"] == "whep"
        assert at_edge["classrooms"] == 2
        assert at_edge["recording"] is None
        # a classroom of no region stays at the home, which is far from loaded
        local = await join(lesson, "room at home", region=None)
        rooms.append(local)
        assert local.session_url is not None and local.session_url.startswith(home.url)
        # the page: the home sends the join link to the edge (307), which serves the page
        path = f"/lessons/{lesson['id']}/join?token={lesson['whep_token']}&region={REGION}"
        async with http.get(home.url + path, allow_redirects=False) as response:
            assert response.status == 307
            assert response.headers["Location"] == edge.url + path
        async with http.get(edge.url + path, allow_redirects=False) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
        # the pull's token and the classroom's never reach a log
        for text in (edge.log(), home.log()):
            assert_no_token(text, lesson["whep_token"])
        assert "vouched for" in home.log()
    finally:
        for room in rooms:
            await room.close()
        await teacher.close()


async def test_bad_input_gets_a_clear_4xx_and_troubles_nobody(
    store: RedisServer, home: Server, edge: Server, http: aiohttp.ClientSession
) -> None:
    lesson = joined_lesson(store, home)
    other = joined_lesson(store, home)
    teacher = await teach(lesson)
    watcher = await join(lesson, "watcher")
    try:
        await watcher.wait_for_frames(30, timeout=40)
        vouch = f"{home.url}/api/cluster/vouch"
        body = {"lesson": lesson["id"], "token": lesson["whep_token"]}
        forged = [
            "junk",
            ClusterCredentials("another-secret-entirely-0123").mint(server_id(edge), lesson["id"]),
            # a good credential, but for another lesson
            ClusterCredentials(SECRET).mint(server_id(edge), other["id"]),
        ]
        for credential in forged:
            async with http.post(
                vouch, json=body, headers={"Authorization": f"Bearer {credential}"}
            ) as response:
                assert response.status == 401, await response.text()
                assert (await response.json())["error"] == "bad_cluster_credential"
        async with http.post(vouch, json=body) as response:
            assert response.status == 401
        good = ClusterCredentials(SECRET).mint(server_id(edge), lesson["id"])
        async with http.post(
            vouch,
            json={"lesson": lesson["id"], "token": other["whep_token"]},
            headers={"Authorization": f"Bearer {good}"},
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"] == "wrong_lesson"
        # at the edge: a join token of another lesson, an unknown lesson, no token, bad region
        for url, token, status, code in (
            (f"{edge.url}/whep/{lesson['id']}", other["whep_token"], 403, "wrong_lesson"),
            (f"{edge.url}/whep/NoSuchLesson1", lesson["whep_token"], 404, "no_such_lesson"),
            (f"{edge.url}/whep/{other['id']}", None, 401, "unauthorized"),
            (f"{home.url}/whep/{lesson['id']}?region=a/b", lesson["whep_token"], 400, "bad_region"),
        ):
            room = await whep_subscribe(url, token or "", check=False)
            if token is None:
                headers: dict[str, str] = {"Content-Type": "application/sdp"}
                async with http.post(url, data=b"v=0\r\n", headers=headers) as response:
                    assert response.status == status
                    assert (await response.json())["error"] == code
                continue
            assert room.status == status, (url, room.status)
        async with http.get(
            f"{edge.url}/lessons/NoSuchLesson1/join?token={lesson['whep_token']}"
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "no_such_lesson"
        # nothing was relayed for them, and the watcher plays on
        status, _ = await asyncio.to_thread(
            edge.request, "GET", f"/api/lessons/{other['id']}", token=edge.admin_key
        )
        assert status == 404
        before = watcher.video_frames
        await watcher.wait_for_frames(before + 30, timeout=10)
        assert edge.process.poll() is None and home.process.poll() is None
    finally:
        await watcher.close()
        await teacher.close()


async def _joins_at(lesson: dict[str, Any], deadline_s: float, want: str) -> float:
    """Join again and again until a classroom lands at ``want``; the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            room = await whep_subscribe(
                lesson["whep_url"] + f"?region={REGION}", lesson["whep_token"], check=False
            )
        except aiohttp.ClientError:
            room = None  # sent to the dead edge: its key has not expired yet
        if room is not None:
            landed = room.session_url or ""
            await room.close()
            if room.status == 201 and landed.startswith(want):
                return time.monotonic() - started
        assert time.monotonic() - started < deadline_s, f"joins never went to {want}"
        await asyncio.sleep(0.5)


async def test_losing_an_edge_sends_new_joins_elsewhere(tmp_path: Path) -> None:
    store = RedisServer(tmp_path / "redis").start()
    servers: list[Server] = []
    teacher = None
    try:
        home = start_member(tmp_path / "home", store)
        first = start_member(tmp_path / "first", store, edge=True, region=REGION)
        second = start_member(tmp_path / "second", store, edge=True, region=REGION)
        servers += [home, first, second]
        lesson = joined_lesson(store, home)
        teacher = await teach(lesson)
        room = await join(lesson, "room 1")
        assert room.session_url is not None
        chosen, spare = (
            (first, second) if room.session_url.startswith(first.url) else (second, first)
        )
        try:
            await room.wait_for_frames(30, timeout=40)
        finally:
            await room.close()
        chosen.stop(signal.SIGKILL)
        took = await _joins_at(lesson, 10, spare.url)
        spare.stop(signal.SIGKILL)
        took_home = await _joins_at(lesson, 10, home.url)
        # the classroom that comes back lands at the home and plays
        again = await join(lesson, "room 1")
        try:
            assert again.session_url is not None and again.session_url.startswith(home.url)
            await again.wait_for_frames(60, timeout=20)
        finally:
            await again.close()
        print(f"joins elsewhere {took:.1f} s, then at the home {took_home:.1f} s after a kill")
    finally:
        if teacher is not None:
            await teacher.close()
        for server in servers:
            server.stop()
        store.stop()


async def test_redis_going_away_stops_nothing_that_plays(tmp_path: Path) -> None:
    store = RedisServer(tmp_path / "redis").start()
    servers: list[Server] = []
    teacher = None
    try:
        home = start_member(tmp_path / "home", store)
        edge = start_member(tmp_path / "edge", store, edge=True, region=REGION)
        servers += [home, edge]
        lesson = joined_lesson(store, home)
        teacher = await teach(lesson)
        room = await join(lesson, "room 1")
        try:
            assert room.session_url is not None and room.session_url.startswith(edge.url)
            await room.wait_for_frames(30, timeout=40)
            seen = len(room.video[0].frame_numbers)
            store.stop()
            await asyncio.sleep(7)  # several beats without Redis
            await room.wait_for_frames(room.video_frames + 30, timeout=10)
            decoded, sent = decoded_share(room, seen + 1)
            assert decoded >= 0.95 * sent, (decoded, sent)
            # a classroom of the lesson still joins, at its home (the directory cannot say)
            local = await join(lesson, "room 2")
            assert local.session_url is not None and local.session_url.startswith(home.url)
            await local.close()
            for server in (home, edge):
                assert server.log().count("Redis cannot be reached") == 1, server.log()[-2000:]
            store.start()  # back empty, on the same port
            wait_for_key(store, f"syncclass:server:{server_id(home)}")
            wait_for_key(store, f"syncclass:server:{server_id(edge)}")
            wait_for_key(store, f"syncclass:lesson:{lesson['id']}")
            for server in (home, edge):
                assert "Redis answers again" in server.log()
            await room.wait_for_frames(room.video_frames + 30, timeout=10)
        finally:
            await room.close()
    finally:
        if teacher is not None:
            await teacher.close()
        for server in servers:
            server.stop()
        store.stop()


def test_a_server_leaving_takes_its_keys_out(tmp_path: Path) -> None:
    store = RedisServer(tmp_path / "redis").start()
    try:
        server = start_member(tmp_path / "one", store)
        lesson = joined_lesson(store, server)
        server.stop()  # SIGTERM: a clean stop
        client = redis.Redis.from_url(store.url)
        try:
            assert client.get(f"syncclass:server:{server_id(server)}") is None
            assert client.get(f"syncclass:lesson:{lesson['id']}") is None
        finally:
            client.close()
        assert "left it" in server.log()
    finally:
        store.stop()
