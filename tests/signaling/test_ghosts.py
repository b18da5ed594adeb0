"""Sessions that never connect (offers without candidates, sent with the join link) do not
count as classrooms and are closed after the connect timeout; the teacher can remove a
classroom, whose name is then refused until the join link is rotated. Real aiortc
classrooms join and decode beside them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server import Server, start_server
from tests.signaling.test_interaction import client_of, events_url, join, snapshot, until
from tests.signaling.test_tokens_http import recvonly_offer
from tests.support.link_emulator import SATELLITE, LinkEmulator
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import post_offer, whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)

CONNECT_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("server"), "--connect-timeout", str(CONNECT_TIMEOUT_S)
    )
    yield instance
    instance.stop()


def without_candidates(sdp: str) -> str:
    return "".join(
        line for line in sdp.splitlines(keepends=True) if not line.startswith("a=candidate")
    )


async def settles(check: Callable[[], bool], seconds: float) -> float:
    """Poll ``check`` until it holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "the server did not settle in time"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def classrooms(server: Server, lesson: dict[str, Any]) -> int:
    _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
    return int(body["classrooms"])


def connect_times(server: Server) -> list[float]:
    return [float(s) for s in re.findall(r"connected after ([0-9.]+) s", server.log())]


async def test_offers_that_never_connect_do_not_fill_the_lesson(server: Server) -> None:
    lesson = server.create_lesson("Ghosts", max_classrooms=3)
    teacher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(4),
        audio=encode_opus_clip(4),
    )
    try:
        await teacher.wait_connected()
        baseline = server.status()
        offer = without_candidates(await recvonly_offer())
        ghosts = await asyncio.gather(
            *(
                post_offer(f"{lesson['whep_url']}?name=Ghost{n}", lesson["whep_token"], offer)
                for n in range(30)
            )
        )
        assert [g.status for g in ghosts] == [201] * 30, {g.status for g in ghosts}
        offer_with_end = offer.rstrip("\r\n") + "\r\na=end-of-candidates\r\n"
        more = await post_offer(
            f"{lesson['whep_url']}?name=Ghost30", lesson["whep_token"], offer_with_end
        )
        assert more.status == 201, more.text
        assert classrooms(server, lesson) == 0
        # a real classroom still gets in, and sees and hears the teacher
        real = await whep_subscribe(
            f"{lesson['whep_url']}?name=Real&client={client_of('Real')}", lesson["whep_token"]
        )
        try:
            await real.wait_for_frames(5, 10)
            await real.wait_for_frames(5, 10, kind="audio")
            await settles(lambda: classrooms(server, lesson) == 1, 5)
            # the ghosts are closed after the connect timeout; the real classroom stays
            took = await settles(
                lambda: server.status()["sessions"] == baseline["sessions"] + 1,
                CONNECT_TIMEOUT_S + 10,
            )
            print(f"ghosts gone {took:.2f} s after the real classroom decoded")
            status = server.status()
            assert status["peers"] == baseline["peers"] + 1, (status, baseline)
            assert classrooms(server, lesson) == 1
            assert real.pc.connectionState == "connected"
            await real.wait_for_frames(real.video[0].frames + 5, 10)
            _, attendance = server.request(
                "GET", f"/api/lessons/{lesson['id']}/attendance", token=server.teacher_key
            )
            assert [c["name"] for c in attendance["classrooms"]] == ["Real"], attendance
        finally:
            await real.close()
        await settles(lambda: server.status()["sessions"] == baseline["sessions"], 5)
        assert server.status()["peers"] == baseline["peers"]
    finally:
        await teacher.close()
    times = connect_times(server)
    assert times
    print(f"ICE+DTLS on loopback: {min(times):.3f}..{max(times):.3f} s over {len(times)}")


async def test_the_teacher_removes_a_classroom_until_the_link_is_rotated(server: Server) -> None:
    lesson = server.create_lesson("Remove", max_classrooms=3)
    baseline = server.status()
    oak = await join(lesson, "Oak")
    elm = await join(lesson, "Elm")
    try:
        async with aiohttp.ClientSession() as http:
            teacher = await http.ws_connect(events_url(server, lesson, lesson["whip_token"]))
            pupils = await http.ws_connect(events_url(server, lesson, lesson["whep_token"], "Oak"))
            await until(teacher, snapshot(lambda m: m["classrooms"] == 2))
            # a classroom may not remove another
            await pupils.send_str(json.dumps({"type": "remove", "classroom": "Elm"}))
            reply = await until(pupils, lambda m: m["type"] == "error")
            assert reply["error"] == "forbidden"
            await teacher.send_str(json.dumps({"type": "remove", "classroom": "Oak"}))
            told = await until(pupils, lambda m: m["type"] == "removed")
            assert told["classroom"] == "Oak"
            lesson_now = await until(teacher, snapshot(lambda m: m["classrooms"] == 1))
            assert [r["name"] for r in lesson_now["roster"]] == ["Elm"]
            await teacher.close()
            await pupils.close()
        await settles(lambda: server.status()["sessions"] == baseline["sessions"] + 1, 5)
        await settles(lambda: oak.pc.connectionState in ("closed", "failed"), 35)
        # its name is refused, with its own client id or another
        for client in (client_of("Oak"), "another-client"):
            again = await whep_subscribe(
                f"{lesson['whep_url']}?name=Oak&client={client}",
                lesson["whep_token"],
                check=False,
            )
            assert again.status == 403, again.status
            await again.close()
        # a feed in its name is refused too (it is not watching)
        status, body = server.request(
            "POST",
            f"/whip/{lesson['id']}?source=feed&name=Oak&client={client_of('Oak')}",
            token=lesson["whep_token"],
            raw=b"v=0\r\n",
            content_type="application/sdp",
        )
        assert status == 409 and body["error"] == "not_joined"
        status, body = server.request(
            "POST", f"/api/lessons/{lesson['id']}/rotate", token=server.teacher_key
        )
        assert status == 200
        rotated = {**lesson, "whep_token": body["whep_token"]}
        back = await join(rotated, "Oak")
        try:
            await settles(lambda: classrooms(server, lesson) == 2, 5)
        finally:
            await back.close()
    finally:
        await oak.close()
        await elm.close()


def test_connect_timeout_is_validated(tmp_path: Path) -> None:
    import subprocess
    import sys

    for bad in ("0", "-1", "nan", "abc", "1000"):
        result = subprocess.run(
            [sys.executable, "-m", "syncclass", "serve", "--connect-timeout", bad],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert result.returncode != 0
        assert "--connect-timeout" in result.stderr, result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "syncclass", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "--connect-timeout" in help_text


async def test_classrooms_on_a_satellite_link_connect_well_within_the_default_grace(
    tmp_path: Path,
) -> None:
    """What the default --connect-timeout (15 s) must leave room for: ICE and DTLS over a
    600 ms round trip with 1 % loss take a few round trips."""
    server = start_server(tmp_path / "satellite")
    links = [LinkEmulator(SATELLITE, seed=seed) for seed in range(1, 5)]
    rooms = []
    try:
        lesson = server.create_lesson("Satellite")
        took = []
        for n, link in enumerate(links):
            room = await whep_subscribe(
                f"{lesson['whep_url']}?name=Island{n}&client={client_of(f'Island{n}')}",
                lesson["whep_token"],
                link=link,
            )
            rooms.append(room)
            await room.wait_connected(timeout=15)
            took.append(time.monotonic() - room.started_at)
        await settles(lambda: classrooms(server, lesson) == len(links), 5)
        print(f"satellite: offer to connected {', '.join(f'{s:.2f}' for s in took)} s")
        print(f"satellite: server side {connect_times(server)} s")
        assert max(took) < 15 / 2
    finally:
        for room in rooms:
            await room.close()
        for link in links:
            link.close()
        server.stop()
