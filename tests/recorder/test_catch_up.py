"""Catching up on a live lesson over HTTP: a classroom reads the lesson from an earlier time
while it is recorded, and keeps getting it as it grows; bad requests are told what is wrong;
only the lesson's own live tokens open it, and only while it is live."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server import Server, start_server
from tests.support.ffmpeg_whip import publish_with_ffmpeg

from .lessons import FPS, end_and_wait, play_out, publish, request
from .playback import Playback, play

LESSON_S = 14.0
CLIENT = "client-far-hill-01"  # the page's own id, as it gives it to WHEP
GOP = FPS  # the clip has a keyframe every second


@dataclass
class Read:
    """One catch-up stream as a client received it."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, bytes)
    ended_at: float | None = None

    def playback(self, to: Path) -> Playback:
        to.write_bytes(self.body)
        return play(to)


@dataclass
class Scenario:
    lesson: dict[str, Any]
    before_live: tuple[int, Any]
    info: dict[str, Any]
    refusals: dict[str, tuple[int, Any]]
    whole: Read  # from the start, asked 4 s in, read until the lesson ended
    whole_asked_at: float  # lesson seconds recorded when it was asked for
    window: Read  # from second 5.5, for 3 s
    crowd: list[int]  # statuses of streams opened beyond the per-address limit
    hands: int  # raised hands the teacher sees after the one watching over HTTP raised its
    ended_at: float
    after_end: dict[str, tuple[int, Any]]
    recording: dict[str, Any]
    h264: Read  # an H.264 lesson from FFmpeg, from its start, read until it ended
    stops: Stops  # streams of another lesson, as its classroom is removed, its link replaced


@dataclass
class Stops:
    """Three streams of one lesson, open while the teacher removes the classroom reading one
    (移出), then replaces the classroom link, then ends the lesson; and a ``Range`` request."""

    ranged: Read
    removed: Read  # the classroom the teacher removed, reading under its name
    rotated: Read  # a classroom token of the link the teacher replaced
    origin: Read  # the teacher's own link, until the end
    removed_at: float = 0.0
    rotated_at: float = 0.0
    ended_at: float = 0.0
    others_on: list[bool] = field(default_factory=list)  # after each stop: are the rest open


async def _get(server: Server, path: str, token: str | None = None) -> tuple[int, Any]:
    return await request(server, "GET", path, token=token)


async def _read(session: aiohttp.ClientSession, url: str, token: str, *, keep: bool = True) -> Read:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        read = Read(response.status, dict(response.headers))
        if response.status != 200:
            read.body = await response.read()
            return read
        chunks = []
        async for chunk in response.content.iter_any():
            read.arrivals.append((time.monotonic(), len(chunk)))
            if keep:
                chunks.append(chunk)
        read.body = b"".join(chunks)
        read.ended_at = time.monotonic()
        return read


async def _recorded(server: Server, base: str, token: str, seconds: float) -> dict[str, Any]:
    """What there is to catch up on, once ``seconds`` of the camera are recorded."""
    deadline = time.monotonic() + 15 + seconds
    while time.monotonic() < deadline:
        status, info = await _get(server, base, token)
        assert status in (200, 409), info  # 409 until the teacher's first packets
        camera = info["sources"].get("camera") if status == 200 else None
        if camera and camera["recorded_until"] - camera["starts_at"] >= seconds:
            return dict(info)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{seconds} s not recorded in time")


async def _h264(server: Server) -> Read:
    """An H.264 lesson (FFmpeg's WHIP muxer), read from its start 4 s in until it ends."""
    status, lesson = await request(
        server, "POST", "/api/lessons", token=server.teacher_key, body={"title": "H.264"}
    )
    assert status == 201, lesson
    base = f"/api/lessons/{lesson['id']}/catch-up"
    published = asyncio.create_task(
        asyncio.to_thread(publish_with_ffmpeg, lesson["whip_url"], lesson["whip_token"], 10.0)
    )
    await _recorded(server, base, lesson["whep_token"], 4.0)
    async with aiohttp.ClientSession(server.url) as session:
        reading = asyncio.create_task(
            _read(session, f"{base}/camera?offset=0", lesson["whep_token"])
        )
        await published
        await end_and_wait(server, lesson["id"])
        return await asyncio.wait_for(reading, 10)


async def _hands(server: Server, lesson_id: str) -> int:
    """Raised hands the teacher sees, once there is one (or after 5 s)."""
    deadline = time.monotonic() + 5
    hands = 0
    while time.monotonic() < deadline:
        status, live = await _get(server, "/api/live", server.teacher_key)
        assert status == 200, live
        hands = next(x["hands"] for x in live["lessons"] if x["id"] == lesson_id)
        if hands:
            break
        await asyncio.sleep(0.1)
    return int(hands)


async def _stops(server: Server) -> Stops:
    status, lesson = await request(
        server, "POST", "/api/lessons", token=server.teacher_key, body={"title": "移出"}
    )
    assert status == 201, lesson
    lesson_id, classroom, origin = lesson["id"], lesson["whep_token"], lesson["whip_token"]
    base = f"/api/lessons/{lesson_id}/catch-up"
    publisher = await publish(lesson, LESSON_S)
    await _recorded(server, base, classroom, 3.0)
    async with aiohttp.ClientSession(server.url) as session:
        async with session.get(
            f"{base}/camera?offset=0&duration=1",
            headers={"Authorization": f"Bearer {classroom}", "Range": "bytes=0-99"},
        ) as response:
            ranged = Read(response.status, dict(response.headers), await response.read())
        removed = asyncio.create_task(
            _read(
                session,
                f"{base}/camera?offset=0&name=%E8%BF%91%E6%B0%B4&client={CLIENT}",
                classroom,
            )
        )
        rotated = asyncio.create_task(_read(session, f"{base}/camera?offset=0", classroom))
        by_origin = asyncio.create_task(_read(session, f"{base}/camera?offset=0", origin))
        await _recorded(server, base, origin, 5.0)
        ws_url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson_id}/events"
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {origin}"}) as ws:
            removed_at = time.monotonic()  # (each time is taken as the request leaves)
            await ws.send_json({"type": "remove", "classroom": "近水"})
            stops = Stops(ranged, await asyncio.wait_for(removed, 10), *[Read(0, {})] * 2)
        stops.removed_at = removed_at
        stops.others_on.append(not rotated.done() and not by_origin.done())
        stops.rotated_at = time.monotonic()
        status, body = await request(
            server, "POST", f"/api/lessons/{lesson_id}/rotate", token=server.teacher_key
        )
        assert status == 200, body
        stops.rotated = await asyncio.wait_for(rotated, 10)
        stops.others_on.append(not by_origin.done())
        await publisher.close()
        stops.ended_at = time.monotonic()
        status, body = await request(
            server, "POST", f"/api/lessons/{lesson_id}/end", token=server.teacher_key
        )
        assert status == 200, body
        stops.origin = await asyncio.wait_for(by_origin, 10)
    return stops


async def _scenario(server: Server) -> Scenario:
    h264 = asyncio.create_task(_h264(server))
    status, lesson = await request(
        server, "POST", "/api/lessons", token=server.teacher_key, body={"title": "追课"}
    )
    assert status == 201, lesson
    lesson_id = lesson["id"]
    classroom, origin = lesson["whep_token"], lesson["whip_token"]
    base = f"/api/lessons/{lesson_id}/catch-up"
    before_live = await _get(server, f"{base}/camera?offset=0", classroom)

    publisher = await publish(lesson, LESSON_S)
    info = await _recorded(server, base, classroom, 4.0)
    camera = info["sources"]["camera"]
    starts_at = camera["starts_at"]
    now = time.time()

    refusals = {
        name: await _get(server, f"{base}/{path}", token)
        for name, path, token in [
            ("no token", "camera?offset=0", None),
            ("teacher key", "camera?offset=0", server.teacher_key),
            ("malformed from", "camera?from=yesterday", classroom),
            ("not finite", "camera?from=nan", classroom),
            ("negative offset", "camera?offset=-5", classroom),
            ("missing from", "camera", classroom),
            ("from and offset", f"camera?offset=1&from={starts_at}", classroom),
            ("before the start", f"camera?from={starts_at - 60}", classroom),
            ("after now", f"camera?from={now + 60}", classroom),
            ("huge range", "camera?offset=0&duration=1e9", classroom),
            ("empty range", "camera?offset=0&duration=0", classroom),
            ("stage", "stage?offset=0", classroom),
        ]
    }

    async with aiohttp.ClientSession(server.url) as session:
        recorded_s = camera["recorded_until"] - starts_at
        # watched under the classroom's name, as a page with no WebRTC path does
        whole_task = asyncio.create_task(
            _read(
                session,
                f"{base}/camera?offset=0&name=%E8%BF%9C%E5%B1%B1&client={CLIENT}",
                classroom,
            )
        )
        await _recorded(server, base, classroom, 6.0)
        window = await _read(session, f"{base}/camera?from={starts_at + 5.5}&duration=3", origin)
        # the classroom watching over HTTP raises its hand on its events socket
        ws_url = (
            f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson_id}/events"
            f"?token={classroom}&name=%E8%BF%9C%E5%B1%B1&client={CLIENT}"
        )
        async with session.ws_connect(ws_url) as events:
            await events.send_json({"type": "hand", "raised": True})
            hands = await _hands(server, lesson_id)
        # a school opening more streams than one address may hold
        held = [
            asyncio.create_task(
                # from a time surely recorded: on a busy machine the newest second may not be
                _read(session, f"{base}/camera?from={starts_at + 1}", classroom, keep=False)
            )
            for _ in range(16)
        ]
        await asyncio.sleep(1.0)
        crowd = [r.status for r in [t.result() for t in held if t.done()]]
        await play_out(publisher)
        await publisher.close()
        ended_at, recording = await end_and_wait(server, lesson_id)
        ended_at = time.monotonic() - ended_at
        whole = await asyncio.wait_for(whole_task, 10)
        crowd += [r.status for r in await asyncio.gather(*held) if r.status != 200]
        crowd += [200] * (16 - len(crowd))

    attendance = await _get(server, f"/api/lessons/{lesson_id}/attendance", server.teacher_key)
    after_end = {
        "attendance": attendance,
        "classroom": await _get(server, f"{base}/camera?offset=0", classroom),
        "origin": await _get(server, f"{base}/camera?offset=0", origin),
        "replay file as classroom": await _get(server, recording["url"], classroom),
        "replay file as origin": await _get(server, recording["url"], origin),
    }
    return Scenario(
        lesson,
        before_live,
        info,
        refusals,
        whole,
        recorded_s,
        window,
        crowd,
        hands,
        ended_at,
        after_end,
        recording,
        await h264,
        await _stops(server),
    )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    # a server of its own: the library's tests count the recordings of theirs
    server = start_server(tmp_path_factory.mktemp("catch-up-server"))
    try:
        yield asyncio.run(_scenario(server))
    finally:
        server.stop()


def test_a_stream_from_the_start_grows_with_the_lesson_and_plays(
    scenario: Scenario, tmp_path: Path
) -> None:
    whole = scenario.whole
    assert whole.status == 200
    assert whole.headers["Content-Type"] == "video/webm"
    assert whole.headers.get("Transfer-Encoding") == "chunked"
    assert whole.headers["X-Catch-Up-Codecs"] == "vp8,opus"
    # what was recorded when it was asked for came at once, the rest as it was recorded
    first = whole.arrivals[0][0]
    later = sum(n for t, n in whole.arrivals if t > first + 2.0)
    assert later > 0.3 * len(whole.body), (later, len(whole.body))
    assert whole.arrivals[-1][0] - first >= LESSON_S - scenario.whole_asked_at - 4
    # and it ended by itself when the lesson ended
    assert whole.ended_at is not None

    playback = whole.playback(tmp_path / "whole.webm")
    numbers = [n for _, n, _ in playback.frames]
    assert playback.unreadable == 0
    assert numbers[0] == 0
    assert max(numbers) >= (LESSON_S - 2) * FPS  # up to the last seconds of the lesson
    assert len(set(numbers)) >= 0.95 * (max(numbers) + 1)  # nothing left out on the way
    assert playback.audio_seconds >= LESSON_S - 3
    assert len(playback.beeps) >= LESSON_S - 3  # the teacher's sound, with the picture


def test_an_h264_lesson_streams_as_fragmented_mp4_and_plays(
    scenario: Scenario, tmp_path: Path
) -> None:
    read = scenario.h264
    assert read.status == 200, read.body
    assert read.headers["Content-Type"] == "video/mp4"
    assert read.headers["X-Catch-Up-Codecs"].startswith("avc1")
    playback = read.playback(tmp_path / "h264.mp4")
    numbers = [n for _, n, _ in playback.frames]
    assert playback.video_codec == "h264" and playback.audio_codec == "opus"
    assert playback.unreadable == 0
    assert numbers[0] == 0 and max(numbers) >= 8 * FPS
    assert len(set(numbers)) >= 0.95 * (max(numbers) + 1)


def test_a_window_starts_at_the_keyframe_before_the_time_asked_and_stops_after_it(
    scenario: Scenario, tmp_path: Path
) -> None:
    window = scenario.window
    assert window.status == 200, window.body
    origin = float(window.headers["X-Catch-Up-Origin"])
    start = float(window.headers["X-Catch-Up-Start"])
    starts_at = scenario.info["sources"]["camera"]["starts_at"]
    assert start - starts_at == pytest.approx(5.0, abs=0.1)  # the keyframe before 5.5 s
    playback = window.playback(tmp_path / "window.webm")
    numbers = [n for _, n, _ in playback.frames]
    assert numbers[0] == 5 * GOP  # frame 150, the keyframe of second 5
    # frame n shows at its lesson time: 5.5 s is frame 165, where a player seeks to
    times = {n: t for t, n, _ in playback.frames}
    assert times[165] + origin - starts_at == pytest.approx(5.5, abs=0.2)
    assert 8.0 * FPS <= max(numbers) <= 10 * FPS, max(numbers)  # 3 s from second 5.5


def test_bad_requests_are_told_what_is_wrong(scenario: Scenario) -> None:
    expected = {
        "no token": (401, "unauthorized"),
        "teacher key": (401, "invalid_token"),
        "malformed from": (400, "bad_from"),
        "not finite": (400, "bad_from"),
        "negative offset": (400, "bad_offset"),
        "missing from": (400, "missing_from"),
        "from and offset": (400, "both_from_and_offset"),
        "before the start": (400, "before_start"),
        "after now": (400, "after_now"),
        "huge range": (400, "bad_duration"),
        "empty range": (400, "bad_duration"),
        "stage": (404, "no_such_source"),
    }
    answers = {name: (status, body["error"]) for name, (status, body) in scenario.refusals.items()}
    assert answers == expected
    starts_at = scenario.refusals["before the start"][1]["starts_at"]
    assert starts_at == scenario.info["sources"]["camera"]["starts_at"]
    assert scenario.before_live[0] == 409 and scenario.before_live[1]["error"] == "lesson_not_live"


def test_one_address_holds_a_bounded_number_of_streams(scenario: Scenario) -> None:
    # 16 per address: the stream from the start was still open (and, on a busy machine, the
    # H.264 lesson's reader from the same address), so at most 15 of 16 more are let in, and
    # the others are refused clearly
    assert set(scenario.crowd) <= {200, 429}, scenario.crowd
    assert scenario.crowd.count(429) >= 1, scenario.crowd
    assert scenario.crowd.count(200) <= 15, scenario.crowd


def test_after_the_end_live_tokens_no_longer_read_and_the_replay_keeps_its_rules(
    scenario: Scenario,
) -> None:
    classroom = scenario.after_end["classroom"]
    origin = scenario.after_end["origin"]
    assert (classroom[0], classroom[1]["error"]) == (410, "lesson_ended")
    assert (origin[0], origin[1]["error"]) == (410, "lesson_ended")
    # the recording's own rules, as before: not public, so the origin token opens it and a
    # classroom token does not
    assert scenario.after_end["replay file as classroom"][0] == 403
    assert scenario.after_end["replay file as origin"][0] == 200
    assert scenario.recording["state"] == "ready"


def test_a_classroom_watching_under_its_name_is_present(scenario: Scenario) -> None:
    assert scenario.hands == 1  # its hand counts
    status, attendance = scenario.after_end["attendance"]
    assert status == 200, attendance
    [row] = [r for r in attendance["classrooms"] if r["name"] == "远山"]
    assert row["visits"] == 1
    assert row["present_s"] >= LESSON_S - scenario.whole_asked_at - 4, row


def test_a_range_header_is_ignored_for_a_stream_that_has_no_length(scenario: Scenario) -> None:
    ranged = scenario.stops.ranged
    # RFC 9110: a range of bytes of a stream made as it is asked for is ignored, and the
    # answer says it takes none; the range is one of time (a second from the start here)
    assert ranged.status == 200
    assert ranged.headers["Accept-Ranges"] == "none"
    assert "Content-Range" not in ranged.headers
    assert len(ranged.body) > 100
    assert ranged.body[:4] == b"\x1a\x45\xdf\xa3"  # the WebM header, not bytes 0-99 only


def test_a_stream_stops_when_its_classroom_is_removed_or_its_link_replaced(
    scenario: Scenario,
) -> None:
    stops = scenario.stops
    for read in (stops.removed, stops.rotated, stops.origin):
        assert read.status == 200 and read.ended_at is not None, read.headers
    # the removed classroom's stream ends, the others play on; then the replaced link's; the
    # teacher's own goes on until the lesson ends
    assert stops.removed_at < stops.removed.ended_at < stops.rotated_at
    assert stops.rotated_at < stops.rotated.ended_at < stops.ended_at
    assert stops.others_on == [True, True]
    assert stops.origin.ended_at > stops.ended_at
