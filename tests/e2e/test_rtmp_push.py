"""A lesson's camera pushed over RTMP (FFmpeg's RTMP client, as OBS or a hardware encoder
pushes): classrooms decode it with sound, the teacher token is the stream key, a wrong key
is refused before any media, and the encoder coming back resumes the lesson by itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_pages import frames_grow, join
from tests.e2e.test_rtsp_source import Events, decoded_share, listen, read_lesson, source_state
from tests.recorder.lessons import end_and_wait, fetch
from tests.recorder.playback import play
from tests.server import Server, free_port, start_server
from tests.support.browser import open_page
from tests.support.peers import whep_subscribe
from tests.support.rtmp_push import GOP, push_in_child

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rtmp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("server"), "--rtmp-port", str(free_port()))
    yield instance
    instance.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def push(lesson: dict[str, object], seconds: float, key: str | None = None, codec: str = "libx264"):
    url = f"{lesson['rtmp_url']}/{key if key is not None else lesson['rtmp_key']}"
    return asyncio.create_task(asyncio.to_thread(push_in_child, url, seconds, codec))


async def test_an_encoder_pushes_the_camera_and_comes_back(
    rtmp_server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    server = rtmp_server
    lesson = server.create_lesson("RTMP")
    assert lesson["rtmp_url"].startswith("rtmp://127.0.0.1:")
    assert lesson["rtmp_key"] == lesson["whip_token"]
    events: Events = await listen(http, server, lesson)
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="room")
    try:
        await classroom.wait_connected()
        pushing = push(lesson, 7)
        live = await events.told(source_state("live"), 20)
        assert live["via"] == "rtmp" and live["url"] is None
        await classroom.wait_for_frames(120, timeout=20)
        await classroom.wait_for_frames(100, timeout=10, kind="audio")
        assert (await pushing) == "sent 175"
        video = classroom.video[0]
        assert video.unreadable == 0 and video.frame_numbers[0] <= GOP
        decoded, sent = decoded_share(classroom)
        assert decoded >= 0.95 * sent, (decoded, sent)
        # the encoder stopped: the classrooms are told the camera is away ...
        lost = await events.told(source_state("lost", "ended"), 10)
        assert lost["error"]
        await events.told(lambda m: m["type"] == "lesson" and "camera" not in m["sources"], 5)
        # ... and it comes back by itself when the encoder pushes again
        frames = classroom.video_frames
        again = push(lesson, 4)
        await events.told(lambda m: m["type"] == "lesson" and "camera" in m["sources"], 20)
        await classroom.wait_for_frames(frames + 50, timeout=15)
        assert (await again) == "sent 100"
    finally:
        await classroom.close()
        await events.close()
    _, recording = await end_and_wait(server, lesson["id"], within=60)
    main, _ = await fetch(server, recording, tmp_path)
    playback = await asyncio.to_thread(play, main)
    assert playback.video_codec == "h264" and playback.audio_codec == "opus", playback
    assert playback.distinct_frames() >= 150, playback.distinct_frames()


async def test_a_wrong_key_is_refused_before_any_media(
    rtmp_server: Server, http: aiohttp.ClientSession
) -> None:
    server = rtmp_server
    lesson = server.create_lesson("Wrong keys")
    ended = server.create_lesson("Ended")
    server.request("POST", f"/api/lessons/{ended['id']}/end", token=server.teacher_key)
    wrong = {
        "garbage": "not-a-token",
        "tampered": lesson["rtmp_key"][:-4] + "AAAA",
        "classroom": lesson["whep_token"],
        "ended": ended["rtmp_key"],
    }
    for what, key in wrong.items():
        said = await push(lesson, 2, key)
        # FFmpeg's client gives up at the publish: not one frame was written
        assert said.startswith("refused"), (what, said)
    log = server.log()
    assert log.count("publishing refused") >= len(wrong)
    for key in wrong.values():
        assert key not in log
    body = await read_lesson(server, lesson["id"])
    assert body["state"] == "scheduled" and body["camera_source"] is None
    # a camera that is not H.264: a clear error on the lesson's events, and the lesson lives on
    events = await listen(http, server, lesson)
    try:
        said = await push(lesson, 3, codec="flv")
        told = await events.told(source_state("lost", "not_h264"), 10)
        assert "H.264" in told["error"], told
        assert said.startswith(("refused", "sent")), said
    finally:
        await events.close()
    assert server.process.poll() is None
    assert json.dumps(body).count(lesson["rtmp_key"]) <= 2  # the key only where the links are


async def test_garbage_on_the_rtmp_port_is_hung_up_on(rtmp_server: Server) -> None:
    lesson = rtmp_server.create_lesson("Noise")
    port = int(str(lesson["rtmp_url"]).rsplit(":", 1)[1].split("/")[0])
    for noise in (b"GET / HTTP/1.1\r\n\r\n" + bytes(2000), b"\x03" + bytes(range(256)) * 40):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(noise)
        await writer.drain()
        # hung up on: a wrong version at once, noise after the handshake at the first chunk
        while await asyncio.wait_for(reader.read(65536), 15):
            pass
        writer.close()
    assert rtmp_server.process.poll() is None
    said = await push(lesson, 2)
    assert said == "sent 50", said


async def test_the_teacher_page_gives_the_encoder_its_settings_and_a_classroom_plays_it(
    rtmp_server: Server, browser: Browser
) -> None:
    server = rtmp_server
    lesson = server.create_lesson("OBS 推流", record=False)
    teacher = await open_page(browser, lesson["teacher_url"])
    try:
        await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
        await teacher.select_option("#source-select", "pushed")
        await expect(teacher.locator("#pushed-state")).to_have_text("等待编码器推流…")
        url = await teacher.locator("#pushed-url").input_value()
        key = await teacher.locator("#pushed-key").input_value()
        assert url == lesson["rtmp_url"] and key
        room = await join(browser, lesson["join_url"], "光明小学")
        pushing = asyncio.create_task(asyncio.to_thread(push_in_child, f"{url}/{key}", 6))
        await expect(teacher.locator("#pushed-state")).to_have_text("编码器推流中", timeout=15000)
        await expect(teacher.locator("#state")).to_have_attribute("data-state", "live")
        await frames_grow(room, "camera-video", 50, within=15)
        assert (await pushing) == "sent 150"
        away = room.locator("#message-title")
        await expect(away).to_have_text("老师正在重新连接…", timeout=10000)
        await expect(teacher.locator("#pushed-state")).to_contain_text("编码器推流中断")
    finally:
        server.request("POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key)
