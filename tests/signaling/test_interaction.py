"""Classrooms talking back, with aiortc classrooms: return feeds to the teacher, hands, the
stage (forwarded to every other classroom and recorded), the classroom cap, attendance,
quality grades and metrics."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.recorder.lessons import download, end_and_wait
from tests.recorder.playback import play
from tests.server import Server, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)

TEACHER_SIZE = (320, 240)
FEED_SIZES = {"Ash": (160, 120), "Birch": (240, 176)}
STAGE_VIDEO, STAGE_AUDIO = 2, 1  # index of the stage track among a classroom's video/audio


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def events_url(
    server: Server, lesson: dict[str, Any], token: str, name: str = "", client: str | None = None
) -> str:
    """The events socket, as the teacher or (with ``name``) as the classroom watching from
    ``client`` (by default, the one ``join`` uses for that name)."""
    url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events?token={token}"
    if not name:
        return url
    return url + f"&name={quote(name)}&client={client or client_of(name)}"


def client_of(name: str) -> str:
    """The client id the test's browser-like classroom ``name`` keeps."""
    return "client-" + hashlib.sha256(name.encode()).hexdigest()[:16]


async def until(
    ws: aiohttp.ClientWebSocketResponse,
    check: Callable[[dict[str, Any]], bool],
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Read messages until one satisfies ``check``."""
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        message = json.loads(msg.data)
        if check(message):
            return dict(message)
        seen.append(message["type"])
    raise AssertionError(f"no such message within {seconds} s; saw {seen}")


def snapshot(check: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "lesson" and check(m)


async def teach(lesson: dict[str, Any]) -> Publisher:
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(4, width=TEACHER_SIZE[0], height=TEACHER_SIZE[1]),
        audio=encode_opus_clip(4),
    )
    await publisher.wait_connected()
    return publisher


async def join(
    lesson: dict[str, Any], name: str, client: str | None = None, **kwargs: Any
) -> Classroom:
    """A classroom watching the lesson with the stage m-lines (3 video, 2 audio)."""
    client = client or client_of(name)
    room = await whep_subscribe(
        f"{lesson['whep_url']}?name={quote(name)}&client={client}",
        lesson["whep_token"],
        videos=3,
        audios=2,
        name=name,
        **kwargs,
    )
    await room.wait_connected()
    return room


async def send_feed(lesson: dict[str, Any], name: str) -> Publisher:
    width, height = FEED_SIZES[name]
    feed = await whip_publish(
        f"{lesson['whip_url']}?source=feed&name={name}&client={client_of(name)}",
        lesson["whep_token"],  # the classroom's own token
        video=encode_vp8_clip(4, width=width, height=height),
        audio=encode_opus_clip(4),
    )
    await feed.wait_connected()
    return feed


async def frames_within(room: Classroom, track: int, more: int, seconds: float) -> float:
    """Wait until ``track`` decoded ``more`` frames beyond now; the seconds it took."""
    start = time.monotonic()
    target = room.video[track].frames + more
    while room.video[track].frames < target:
        if time.monotonic() - start > seconds:
            raise AssertionError(
                f"{room.name}: video track {track} decoded "
                f"{room.video[track].frames - target + more} of {more} frames in {seconds} s"
            )
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def audio_within(room: Classroom, track: int, more: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    target = room.audio[track].frames + more
    while room.audio[track].frames < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"{room.name}: audio track {track} decoded too little sound")
        await asyncio.sleep(0.05)


async def close_all(*peers: Publisher | Classroom) -> None:
    for peer in peers:
        await peer.close()


async def test_a_return_feed_reaches_the_teacher_and_no_classroom(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Feeds")
    teacher = await teach(lesson)
    ash = await join(lesson, "Ash")
    birch = await join(lesson, "Birch")
    feed = await send_feed(lesson, "Ash")
    watching = await whep_subscribe(
        f"{lesson['whep_url']}?source=feed:Ash", lesson["whip_token"], videos=1, audios=1
    )
    try:
        await watching.wait_for_frames(30, timeout=10)
        assert (watching.video[0].width, watching.video[0].height) == FEED_SIZES["Ash"]
        assert watching.audio[0].frames > 0

        refused = await whep_subscribe(
            f"{lesson['whep_url']}?source=feed:Ash", lesson["whep_token"], check=False
        )
        assert refused.status == 403

        ws = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
        told = await until(ws, snapshot(lambda m: any(r["feed"] for r in m.get("roster", []))))
        assert [(r["name"], r["feed"]) for r in told["roster"]] == [
            ("Ash", True),
            ("Birch", False),
        ]
        await ws.close()

        # the classrooms see the teacher and nothing else: no feed arrives on any slot
        await frames_within(birch, 0, 30, 10)
        assert (birch.video[0].width, birch.video[0].height) == TEACHER_SIZE
        for room in (ash, birch):
            assert room.video[1].frames == 0 and room.video[STAGE_VIDEO].frames == 0
            assert room.audio[STAGE_AUDIO].frames == 0
    finally:
        await close_all(watching, feed, ash, birch, teacher)


async def test_hands_and_the_stage_reach_every_other_classroom_and_the_recording(
    server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    lesson = server.create_lesson("Stage", record=True)
    teacher = await teach(lesson)
    ash, birch = await join(lesson, "Ash"), await join(lesson, "Birch")
    feeds = [await send_feed(lesson, "Ash"), await send_feed(lesson, "Birch")]
    desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
    sockets = {
        name: await http.ws_connect(events_url(server, lesson, lesson["whep_token"], name))
        for name in ("Ash", "Birch")
    }
    try:
        await until(desk, snapshot(lambda m: sum(r["feed"] for r in m["roster"]) == 2))
        await sockets["Ash"].send_json({"type": "hand", "raised": True})
        await asyncio.sleep(0.05)
        await sockets["Birch"].send_json({"type": "hand", "raised": True})
        told = await until(desk, snapshot(lambda m: len(m["hands"]) == 2))
        assert [h["classroom"] for h in told["hands"]] == ["Ash", "Birch"]
        cue = await until(sockets["Birch"], lambda m: m["type"] == "hand")
        assert cue["classroom"] == "Birch" and cue["raised"] is True

        # a classroom may not call itself on stage
        await sockets["Ash"].send_json({"type": "stage", "classroom": "Ash", "on": True})
        refused = await until(sockets["Ash"], lambda m: m["type"] == "error")
        assert refused["error"] == "forbidden"

        called = time.monotonic()
        stage_on_at = time.time()
        await desk.send_json({"type": "stage", "classroom": "Birch", "on": True})
        await desk.send_json({"type": "hand", "classroom": "Birch", "raised": False})
        you = await until(
            sockets["Birch"],
            snapshot(lambda m: m["you"]["on_stage"] and not m["you"]["hand_raised"]),
        )
        assert you["on_stage"] == ["Birch"]
        await frames_within(ash, STAGE_VIDEO, 10, 3.0)
        assert time.monotonic() - called < 3.0
        stage = ash.video[STAGE_VIDEO]
        assert (stage.width, stage.height) == FEED_SIZES["Birch"]
        await audio_within(ash, STAGE_AUDIO, 25, 3.0)

        # the classroom on stage does not get its own feed back (no echo)
        await asyncio.sleep(3)
        assert birch.video[STAGE_VIDEO].frames == 0 and birch.audio[STAGE_AUDIO].frames == 0
        await frames_within(birch, 0, 30, 5)  # while it keeps seeing the teacher

        # a second classroom may not join the stage (max_on_stage is 1)
        await desk.send_json({"type": "stage", "classroom": "Ash", "on": True})
        full = await until(desk, lambda m: m["type"] == "error")
        assert full["error"] == "stage_full"

        stage_off_at = time.time()
        await desk.send_json({"type": "stage", "classroom": "Birch", "on": False})
        await until(sockets["Ash"], snapshot(lambda m: m["on_stage"] == []))
        await asyncio.sleep(0.5)
        frozen = ash.video[STAGE_VIDEO].frames
        await asyncio.sleep(2)
        assert ash.video[STAGE_VIDEO].frames == frozen, "the stage kept playing after off stage"
        await frames_within(ash, 0, 30, 5)  # the teacher still plays
    finally:
        for ws in (desk, *sockets.values()):
            await ws.close()
        await close_all(*feeds, ash, birch, teacher)

    _, recording = await end_and_wait(server, lesson["id"])
    assert recording["stage"] is not None, recording
    stage_file = download(server, recording["stage"]["url"], tmp_path / "stage.webm")
    played = play(stage_file)
    assert played.video_codec == "vp8" and played.audio_codec == "opus"
    on_stage_s = stage_off_at - stage_on_at
    # every frame of the stage file is Birch's picture, and it covers the time on stage
    assert played.unreadable == 0
    assert len(played.frames) >= 0.7 * 30 * (on_stage_s - 1)
    with av_open(stage_file) as size:
        assert size == FEED_SIZES["Birch"]
    _stage_stays_private_until_chosen(server, lesson["id"], recording["stage"]["url"])

    status, report = server.request(
        "GET", f"/api/lessons/{lesson['id']}/report", token=lesson["whip_token"]
    )
    assert status == 200, report
    by_name = {row["name"]: row for row in report["interaction"]}
    assert by_name["Ash"]["hands_raised"] == 1 and by_name["Ash"]["on_stage_s"] == 0
    assert by_name["Birch"]["hands_raised"] == 1
    assert abs(by_name["Birch"]["on_stage_s"] - on_stage_s) < 0.5


class av_open:
    """The first video stream's size of a file, as a context manager."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __enter__(self) -> tuple[int, int]:
        import av

        self._container = av.open(str(self._path))
        stream = self._container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height

    def __exit__(self, *_: object) -> None:
        self._container.close()


async def test_the_fourth_classroom_is_told_the_lesson_is_full_and_gets_in_when_one_leaves(
    server: Server,
) -> None:
    lesson = server.create_lesson("Cap", max_classrooms=3)
    rooms = [await join(lesson, name) for name in ("Ash", "Birch", "Cedar")]
    try:
        fourth = await whep_subscribe(
            f"{lesson['whep_url']}?name=Damson", lesson["whep_token"], check=False
        )
        assert fourth.status == 409
        # another classroom cannot take a name in use
        impostor = await whep_subscribe(
            f"{lesson['whep_url']}?name=Cedar&client=someone-else",
            lesson["whep_token"],
            check=False,
        )
        assert impostor.status == 409
        # the same classroom coming back (its network dropped) is not a fourth one
        again = await join(lesson, "Cedar")
        rooms.append(again)
        await asyncio.sleep(0.5)
        assert (
            server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)[1][
                "classrooms"
            ]
            == 3
        )
        await rooms.pop(0).close()
        damson = await join(lesson, "Damson")
        rooms.append(damson)
    finally:
        await close_all(*rooms)


def _full_answer(server: Server, lesson: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{lesson['whep_url']}?name=Elm",
        data=b"v=0\r\n",
        method="POST",
        headers={
            "Authorization": f"Bearer {lesson['whep_token']}",
            "Content-Type": "application/sdp",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


async def test_a_full_lesson_says_when_to_try_again(server: Server) -> None:
    lesson = server.create_lesson("Full", max_classrooms=1)
    room = await join(lesson, "Ash")
    try:
        status, headers, body = await asyncio.to_thread(_full_answer, server, lesson)
        assert status == 409 and body["error"] == "lesson_full"
        assert int(headers["Retry-After"]) > 0
    finally:
        await room.close()


async def test_attendance_matches_the_joins_and_leaves(server: Server) -> None:
    lesson = server.create_lesson("Attendance")
    made: dict[str, list[tuple[float, float | None]]] = {"Ash": [], "Birch": []}
    ash_joined = time.time()
    ash = await join(lesson, "Ash")
    made["Ash"].append((ash_joined, None))
    birch_joined = time.time()
    birch = await join(lesson, "Birch")
    made["Birch"].append((birch_joined, None))
    await asyncio.sleep(1.5)
    await ash.close()
    made["Ash"][0] = (ash_joined, time.time())
    await asyncio.sleep(1.0)
    ash_back = time.time()
    ash = await join(lesson, "Ash")
    made["Ash"].append((ash_back, None))
    await asyncio.sleep(1.0)
    await ash.close()
    await birch.close()
    left = time.time()
    await asyncio.sleep(0.5)

    status, body = server.request(
        "GET", f"/api/lessons/{lesson['id']}/attendance", token=lesson["whip_token"]
    )
    assert status == 200, body
    rows = {row["name"]: row for row in body["classrooms"]}
    assert set(rows) == {"Ash", "Birch"}
    assert rows["Ash"]["visits"] == 2 and rows["Birch"]["visits"] == 1
    assert abs(rows["Ash"]["joined_at"] - ash_joined) < 1.0
    assert abs(rows["Ash"]["left_at"] - left) < 1.0
    assert abs(rows["Birch"]["joined_at"] - birch_joined) < 1.0
    ash_present = (made["Ash"][0][1] or 0) - ash_joined + (left - ash_back)
    assert abs(rows["Ash"]["present_s"] - ash_present) < 1.0
    assert abs(rows["Birch"]["present_s"] - (left - birch_joined)) < 1.0

    status, text = server.request(
        "GET", f"/api/lessons/{lesson['id']}/attendance.csv", token=lesson["whip_token"]
    )
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [r["classroom"] for r in table] == ["Ash", "Birch"]
    assert [int(r["visits"]) for r in table] == [2, 1]
    assert abs(float(table[1]["present_minutes"]) * 60 - (left - birch_joined)) < 6

    # a classroom cannot read the attendance
    status, _ = server.request(
        "GET", f"/api/lessons/{lesson['id']}/attendance", token=lesson["whep_token"]
    )
    assert status == 403


async def test_a_lossy_classroom_is_graded_worse_than_a_clean_one(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Quality")
    teacher = await teach(lesson)
    clean = await join(lesson, "Clean")
    lossy = await join(lesson, "Lossy", drop_rate=0.05, seed=3)
    desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
    try:
        grades: dict[str, list[str]] = {"Clean": [], "Lossy": []}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            told = await until(desk, lambda m: m["type"] == "quality", 5)
            for row in told["classrooms"]:
                grades[row["name"]].append(row["grade"])
                # 5 % random loss that retransmission repairs keeps the picture (高清)
                assert row["link_state"] == "full", row
            if len(grades["Lossy"]) >= 5:
                break
        settled = {name: seen[2:] for name, seen in grades.items()}  # after the first reports
        assert settled["Lossy"] and all(g in ("fair", "poor") for g in settled["Lossy"]), grades
        assert settled["Clean"] and all(g == "good" for g in settled["Clean"]), grades
    finally:
        await desk.close()
        await close_all(clean, lossy, teacher)


def _scrape(server: Server) -> dict[str, float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def test_metrics_parse_and_move_with_traffic(server: Server) -> None:
    lesson = server.create_lesson("Metrics")
    teacher = await teach(lesson)
    room = await join(lesson, "Ash")
    try:
        await frames_within(room, 0, 10, 10)
        before = await asyncio.to_thread(_scrape, server)
        await asyncio.sleep(2)
        after = await asyncio.to_thread(_scrape, server)
    finally:
        await close_all(room, teacher)
    assert after["syncclass_lessons_live"] >= 1
    assert after["syncclass_classrooms_connected"] >= 1
    # no lesson is named by default (tests/syncclass/test_metrics_lesson_ids.py)
    assert not any(lesson["id"] in key for key in after)
    assert "syncclass_classrooms_by_quality{grade=good}" in after
    # what each classroom's link is sent (full picture or sound only), and switches
    assert after["syncclass_classrooms_by_link{state=full}"] >= 1
    assert "syncclass_link_switches_total{state=audio_only}" in after
    for counter in (
        "syncclass_rtp_packets_received_total",
        "syncclass_rtp_packets_forwarded_total",
    ):
        assert after[counter] > before[counter] > 0, counter
    assert (
        after["syncclass_rtp_payload_bytes_forwarded_total"]
        > before["syncclass_rtp_payload_bytes_forwarded_total"]
    )
    # the counters never go back when classrooms leave
    await asyncio.sleep(0.5)
    later = await asyncio.to_thread(_scrape, server)
    assert (
        later["syncclass_rtp_packets_forwarded_total"]
        >= after["syncclass_rtp_packets_forwarded_total"]
    )


async def test_chat_is_relayed_and_kept_only_when_the_lesson_asks(
    server: Server, http: aiohttp.ClientSession
) -> None:
    kept: dict[bool, list[dict[str, Any]]] = {}
    for keep in (False, True):
        lesson = server.create_lesson("Chat", keep_chat=keep)
        assert lesson["keep_chat"] is keep
        room = await join(lesson, "Ash")
        desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
        ash = await http.ws_connect(events_url(server, lesson, lesson["whep_token"], "Ash"))
        try:
            await until(desk, snapshot(lambda m: len(m["roster"]) == 1))
            await ash.send_json({"type": "chat", "text": "我们听得很清楚"})
            heard = await until(desk, lambda m: m["type"] == "chat")
            assert (heard["from"], heard["text"]) == ("Ash", "我们听得很清楚")
            await desk.send_json({"type": "chat", "text": "很好"})
            reply = await until(ash, lambda m: m["type"] == "chat" and m["from"] == "teacher")
            assert reply["text"] == "很好"
            await ash.send_json({"type": "chat", "text": "x" * 501})
            too_long = await until(ash, lambda m: m["type"] == "error")
            assert too_long["error"] == "chat_too_long"
        finally:
            await desk.close()
            await ash.close()
            await room.close()
        status, report = server.request(
            "GET", f"/api/lessons/{lesson['id']}/report", token=lesson["whip_token"]
        )
        assert status == 200, report
        kept[keep] = report["chat"]
    assert kept[False] == []
    assert [(m["from"], m["text"]) for m in kept[True]] == [
        ("Ash", "我们听得很清楚"),
        ("teacher", "很好"),
    ]
    status, body = server.request(
        "POST", "/api/lessons", token=server.teacher_key, body={"title": "x", "keep_chat": "yes"}
    )
    assert status == 400 and body["error"] == "bad_keep_chat"


async def test_one_classroom_cannot_act_in_another_ones_name(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """All classrooms share the link; a name is only believed from the browser that watches
    under it."""
    lesson = server.create_lesson("Impostor")
    ash = await join(lesson, "Ash")
    feed = await send_feed(lesson, "Ash")
    desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
    real = await http.ws_connect(events_url(server, lesson, lesson["whep_token"], "Ash"))
    fake = await http.ws_connect(
        events_url(server, lesson, lesson["whep_token"], "Ash", client="someone-else")
    )
    try:
        # its camera cannot be replaced by another one's, with or without a made-up client id
        for client in ("someone-else", None):
            suffix = f"&client={client}" if client else ""
            refused = await whip_publish(
                f"{lesson['whip_url']}?source=feed&name=Ash{suffix}",
                lesson["whep_token"],
                video=encode_vp8_clip(1),
                audio=None,
                check=False,
            )
            assert refused.status == 409, refused.status
        # nor its hand raised, its chat written or its quality reported by the impostor
        for message in (
            {"type": "hand", "raised": True},
            {"type": "chat", "text": "我们是 Ash"},
            {"type": "stats", "loss": 0.5},
        ):
            await fake.send_json(message)
            answer = await until(fake, lambda m: m["type"] == "error")
            assert answer["error"] == "not_joined", answer
        # and what Ash tells the teacher does not reach the impostor
        await real.send_json({"type": "chat", "text": "只给老师"})
        heard = await until(desk, lambda m: m["type"] == "chat")
        assert (heard["from"], heard["role"]) == ("Ash", "classroom")
        await fake.send_json({"type": "ping"})
        seen = await until(fake, lambda m: m["type"] in ("chat", "pong"))
        assert seen["type"] == "pong", seen
        async with http.ws_connect(events_url(server, lesson, lesson["whip_token"])) as again:
            told = await until(again, snapshot(lambda m: True))
        assert told["hands"] == [] and [r["name"] for r in told["roster"]] == ["Ash"]
        assert told["roster"][0]["feed"] is True  # still Ash's own camera
        # the teacher's name is nobody else's
        for name in ("teacher", "Teacher"):
            posing = await whep_subscribe(
                f"{lesson['whep_url']}?name={name}&client=client-posing",
                lesson["whep_token"],
                check=False,
            )
            assert posing.status == 400, name
    finally:
        for ws in (desk, real, fake):
            await ws.close()
        await close_all(feed, ash)


async def test_the_attendance_csv_keeps_formulas_as_text(server: Server) -> None:
    lesson = server.create_lesson("Formula")
    room = await join(lesson, "=HYPERLINK(1)")
    await room.close()
    await asyncio.sleep(0.3)
    status, text = server.request(
        "GET", f"/api/lessons/{lesson['id']}/attendance.csv", token=lesson["whip_token"]
    )
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [r["classroom"] for r in table] == ["'=HYPERLINK(1)"]


async def test_two_classrooms_on_stage_see_each_other_and_everyone_sees_both(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server = start_server(tmp_path, "--max-on-stage", "2")
    try:
        lesson = server.create_lesson("Two on stage")
        teacher = await teach(lesson)
        rooms = {
            name: await whep_subscribe(
                f"{lesson['whep_url']}?name={name}&client={client_of(name)}",
                lesson["whep_token"],
                videos=4,  # camera, courseware, stage, stage2
                audios=1,
                name=name,
            )
            for name in ("Ash", "Birch", "Cedar")
        }
        # a classroom has joined once its session connected: only then may it send a feed
        for room in rooms.values():
            await room.wait_connected()
        feeds = [await send_feed(lesson, "Ash"), await send_feed(lesson, "Birch")]
        desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
        try:
            await until(desk, snapshot(lambda m: sum(r["feed"] for r in m["roster"]) == 2))
            for name in ("Ash", "Birch"):
                await desk.send_json({"type": "stage", "classroom": name, "on": True})
            await until(desk, snapshot(lambda m: m["on_stage"] == ["Ash", "Birch"]))
            cedar, ash, birch = rooms["Cedar"], rooms["Ash"], rooms["Birch"]
            # everyone else sees both, in the order they were called
            await frames_within(cedar, STAGE_VIDEO, 10, 5)
            await frames_within(cedar, STAGE_VIDEO + 1, 10, 5)
            assert (cedar.video[STAGE_VIDEO].width, cedar.video[STAGE_VIDEO + 1].width) == (
                FEED_SIZES["Ash"][0],
                FEED_SIZES["Birch"][0],
            )
            # each one on stage sees the other in its first stage place, never itself
            await frames_within(ash, STAGE_VIDEO, 10, 5)
            await frames_within(birch, STAGE_VIDEO, 10, 5)
            assert ash.video[STAGE_VIDEO].width == FEED_SIZES["Birch"][0]
            assert birch.video[STAGE_VIDEO].width == FEED_SIZES["Ash"][0]
            assert ash.video[STAGE_VIDEO + 1].frames == birch.video[STAGE_VIDEO + 1].frames == 0
            # a classroom that sends no camera cannot be called on stage
            await desk.send_json({"type": "stage", "classroom": "Cedar", "on": True})
            refused = await until(desk, lambda m: m["type"] == "error")
            assert refused["error"] == "no_feed"
        finally:
            await desk.close()
            await close_all(*feeds, *rooms.values(), teacher)
    finally:
        server.stop()


def _stage_stays_private_until_chosen(server: Server, lesson_id: str, stage_url: str) -> None:
    """Public means the teacher's camera, sound and courseware: the pupils on stage become
    public only by a choice of their own, on a public recording, and the audit log keeps it."""
    path = f"/api/recordings/{lesson_id}"
    key = server.teacher_key

    def anonymous(url: str) -> int:
        return server.request("GET", url)[0]

    assert server.request("PATCH", path, token=key, body={"public_stage": True})[0] == 409
    assert server.request("PATCH", path, token=key, body={"public_stage": "yes"})[0] == 400
    status, info = server.request("PATCH", path, token=key, body={"public": True})
    assert status == 200 and info["public"] is True and info["public_stage"] is False
    status, seen = server.request("GET", path)
    assert status == 200 and seen["stage"] is None and seen["url"]
    listed = server.request("GET", "/api/recordings")[1]["recordings"]
    assert [entry["stage"] for entry in listed if entry["lesson_id"] == lesson_id] == [None]
    assert anonymous(seen["url"]) == 200
    status, refused = server.request("GET", stage_url)
    assert status == 403 and refused["error"] == "stage_not_public"

    status, info = server.request("PATCH", path, token=key, body={"public_stage": True})
    assert status == 200 and info["public_stage"] is True
    assert server.request("GET", path)[1]["stage"]["url"] == stage_url
    assert anonymous(stage_url) == 200

    # private again: the stage goes with it, and is not public when the recording next is
    server.request("PATCH", path, token=key, body={"public": False})
    assert anonymous(stage_url) == 401
    status, info = server.request("PATCH", path, token=key, body={"public": True})
    assert info["public_stage"] is False and anonymous(stage_url) == 403

    status, log = server.request("GET", f"/api/audit?lesson={lesson_id}", token=server.admin_key)
    assert status == 200
    actions = [entry["action"] for entry in log["entries"]]
    assert actions.count("recording_stage_public") == 1
    assert "recording_stage_private" in actions


async def test_the_path_a_classroom_reports_reaches_the_teacher(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """直连 UDP / 直连 TCP / 中继: the path a classroom's page reads from its selected candidate
    pair goes with its stats to the teacher's wall, 巡课 and /api/status; anything else is
    refused."""
    lesson = server.create_lesson("Paths", record=False)
    teacher = await teach(lesson)
    room = await join(lesson, "Pine")
    desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
    pine = await http.ws_connect(events_url(server, lesson, lesson["whep_token"], "Pine"))
    try:
        for bad in ("carrier-pigeon", 3, "", ["relay"]):
            await pine.send_json({"type": "stats", "loss": 0.0, "path": bad})
            answer = await until(pine, lambda m: m["type"] == "error")
            assert answer["error"] == "bad_message" and "path" in answer["message"], answer
        await pine.send_json({"type": "stats", "loss": 0.0, "path": "relay"})
        told = await until(
            desk,
            lambda m: (
                m["type"] == "quality"
                and any(r["name"] == "Pine" and r["path"] == "relay" for r in m["classrooms"])
            ),
        )
        assert told
        [link] = [c for c in server.status()["classrooms"] if c["name"] == "Pine"]
        assert link["path"] == "relay"
        status, live = server.request("GET", "/api/live", token=server.teacher_key)
        assert status == 200
        [tile] = [x for x in live["lessons"] if x["id"] == lesson["id"]]
        assert tile["paths"] == {"udp": 0, "tcp": 0, "relay": 1}
    finally:
        for ws in (desk, pine):
            await ws.close()
        await close_all(room, teacher)


async def test_the_teachers_uplink_reaches_status_metrics_and_the_layers_events(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """What the teacher's browser says of its uplink (its own estimate, what it sends, whether
    the picture is held back) shows per source in /api/status, /metrics and the teacher's
    layers events; a classroom cannot report it, and bad values are refused."""
    lesson = server.create_lesson("Uplink", record=False)
    teacher = await teach(lesson)
    room = await join(lesson, "Oak")
    desk = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
    oak = await http.ws_connect(events_url(server, lesson, lesson["whep_token"], "Oak"))
    report = {
        "type": "uplink",
        "source": "camera",
        "available_kbps": 1450,
        "sent_kbps": 1300,
        "width": 1280,
        "height": 720,
        "limited": True,
    }
    try:
        await oak.send_json(report)
        assert (await until(oak, lambda m: m["type"] == "error"))["error"] == "forbidden"
        for bad in (
            {"source": "stage"},
            {"available_kbps": -1},
            {"available_kbps": "fast"},
            {"width": float("inf")},
            {"limited": "yes"},
        ):
            await desk.send_str(json.dumps({**report, **bad}))
            answer = await until(desk, lambda m: m["type"] == "error")
            assert answer["error"] == "bad_message", (bad, answer)
        await desk.send_json(report)
        told = await until(
            desk, lambda m: m["type"] == "layers" and m.get("uplinks", {}).get("camera")
        )
        assert told["uplinks"]["camera"]["available_kbps"] == 1450
        [camera] = [
            e
            for e in server.status()["video_layers"]
            if e["lesson"] == lesson["id"] and e["source"] == "camera"
        ]
        assert camera["uplink"] == {
            "available_kbps": 1450.0,
            "sent_kbps": 1300.0,
            "width": 1280.0,
            "height": 720.0,
            "limited": True,
        }
        assert _scrape(server)["syncclass_teacher_uplinks_limited"] == 1
    finally:
        for ws in (desk, oak):
            await ws.close()
        await close_all(room, teacher)
