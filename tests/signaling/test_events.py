"""The lesson events WebSocket: what each participant is told, and what it may send."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server import Server, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(60)


def events_url(server: Server, lesson: dict[str, Any], token: str | None = None) -> str:
    url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events"
    return f"{url}?token={token}" if token else url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def receive(ws: aiohttp.ClientWebSocketResponse, seconds: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=seconds)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return dict(json.loads(msg.data))


async def until_told(
    ws: aiohttp.ClientWebSocketResponse,
    check: Callable[[dict[str, Any]], bool],
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Read messages until a lesson snapshot satisfies ``check``; other kinds (a recording's
    news, say) pass by."""
    deadline = time.monotonic() + seconds
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await receive(ws, left)
        except TimeoutError:
            break
        seen.append(message)
        if message["type"] == "lesson" and check(message):
            return message
    raise AssertionError(f"no such message within {seconds} s; got {seen}")


async def until_ended(ws: aiohttp.ClientWebSocketResponse) -> bool:
    while (message := await receive(ws))["type"] != "ended":
        assert message["type"] != "lesson" or message["state"] == "ended", message
    return True


async def test_participants_are_told_the_lesson_and_each_change(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Events", max_classrooms=7)
    classroom_ws = await http.ws_connect(events_url(server, lesson, lesson["whep_token"]))
    teacher_ws = await http.ws_connect(
        events_url(server, lesson), headers={"Authorization": f"Bearer {lesson['whip_token']}"}
    )
    first = await receive(classroom_ws)
    assert first == {
        "type": "lesson",
        "title": "Events",
        "state": "scheduled",
        "classrooms": 0,
        "max_classrooms": 7,
        "sources": [],
        "camera_source": None,
        "max_on_stage": 1,
        "on_stage": [],
        "hands": [],
    }
    assert (await receive(teacher_ws))["state"] == "scheduled"

    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2),
        audio=encode_opus_clip(2),
    )
    room = None
    try:
        for ws in (classroom_ws, teacher_ws):
            told = await until_told(ws, lambda m: m["sources"] == ["camera"])
            assert told["state"] == "live"
        room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="Room 1")
        await until_told(teacher_ws, lambda m: m["classrooms"] == 1)
        await room.close()
        await until_told(teacher_ws, lambda m: m["classrooms"] == 0)
    finally:
        if room is not None:
            await room.close()
        await publisher.close()
    told = await until_told(classroom_ws, lambda m: m["sources"] == [])
    assert told["state"] == "live"  # the teacher stopped publishing; the lesson goes on
    await classroom_ws.close()
    await teacher_ws.close()


async def test_the_token_may_come_as_the_first_message(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("First message")
    other = server.create_lesson("Another")
    async with http.ws_connect(events_url(server, lesson)) as ws:
        await ws.send_json({"type": "auth", "token": lesson["whep_token"]})
        assert (await receive(ws))["title"] == "First message"
    async with http.ws_connect(events_url(server, lesson)) as ws:
        await ws.send_json({"type": "auth", "token": other["whep_token"]})
        assert (await receive(ws))["error"] == "wrong_lesson"
        closing = await ws.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4403)
    async with http.ws_connect(events_url(server, lesson)) as ws:
        await ws.send_str("hello")
        assert (await receive(ws))["error"] == "unauthorized"
        closing = await ws.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4401)


async def test_bad_credentials_are_refused_before_the_upgrade(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Refusals")
    other = server.create_lesson("Another")
    path = f"/api/lessons/{lesson['id']}/events"
    for token, status, code in [
        ("not-a-token", 401, "invalid_token"),
        (other["whep_token"], 403, "wrong_lesson"),
    ]:
        got, body = server.request("GET", f"{path}?token={token}")
        assert (got, body["error"]) == (status, code)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(events_url(server, lesson, token))
        assert refused.value.status == status
    got, body = server.request("GET", "/api/lessons/nosuchlesson/events", token=server.teacher_key)
    assert (got, body["error"]) == (404, "no_such_lesson")
    async with http.ws_connect(events_url(server, lesson, server.teacher_key)) as ws:
        assert (await receive(ws))["title"] == "Refusals"  # the teacher key opens any lesson


async def test_bad_messages_get_an_error_and_the_socket_stays(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Noise")
    async with http.ws_connect(events_url(server, lesson, lesson["whep_token"])) as ws:
        await receive(ws)
        for send, code in [
            (ws.send_str("{not json"), "malformed_json"),
            (ws.send_str("[1, 2]"), "bad_message"),
            (ws.send_str('{"type": 3}'), "bad_message"),
            (ws.send_bytes(b"\x00\x01"), "bad_message"),
            (ws.send_json({"type": "dance"}), "unknown_type"),
        ]:
            await send
            reply = await receive(ws)
            assert reply["type"] == "error" and reply["error"] == code and reply["message"]
        await ws.send_json({"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
        await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 10_000}))
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
    assert body["state"] == "scheduled"  # the server shrugged it off


async def test_the_end_of_a_lesson_is_told_and_its_sockets_closed(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Ending")
    beside = server.create_lesson("Goes on")
    sockets = [
        await http.ws_connect(events_url(server, lesson, token))
        for token in (lesson["whep_token"], lesson["whip_token"])
    ]
    other = await http.ws_connect(events_url(server, beside, beside["whep_token"]))
    for ws in (*sockets, other):
        await receive(ws)
    status, _ = server.request(
        "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whip_token"]
    )
    assert status == 200
    for ws in sockets:
        await until_told(ws, lambda m: m["state"] == "ended")
        assert await until_ended(ws)
        closing = await ws.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.OK)
    # a participant who comes later is told at once, and let go
    async with http.ws_connect(events_url(server, lesson, lesson["whep_token"])) as late:
        assert (await receive(late))["state"] == "ended"
        assert await receive(late) == {"type": "ended"}
        assert (await late.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    # the other lesson's socket is untouched
    await other.send_json({"type": "ping"})
    assert await receive(other) == {"type": "pong"}
    await other.close()


async def test_shutdown_closes_every_socket(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    server = start_server(tmp_path / "server")
    try:
        lesson = server.create_lesson("Shutdown")
        sockets = [
            await http.ws_connect(events_url(server, lesson, lesson["whep_token"]))
            for _ in range(3)
        ]
        for ws in sockets:
            await receive(ws)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for ws in sockets:
            closing = await ws.receive(timeout=5)
            # the code the server sent (ws.close_code may say 1006: the process is gone
            # before the client's own close frame reaches it)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
        exit_code = await asyncio.to_thread(server.process.wait, 10)
        assert exit_code == 0
        assert time.monotonic() - started < 5  # sockets did not hold the shutdown up
    finally:
        server.stop()
