"""A teacher who sends three layers (simulcast with rids, as OBS and browsers do): the server
sees them arrive, a classroom gets the best one, decoded without a break while layers come and
go, and a publisher without simulcast is answered as before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av
import pytest

from tests.recorder.lessons import end_and_wait, fetch
from tests.recorder.playback import play, seek
from tests.server import Server
from tests.support.peers import whep_subscribe
from tests.support.simulcast import SimulcastPublisher, three_streams

pytestmark = pytest.mark.timeout(120)


def layers_of(server: Server, lesson_id: str) -> list[dict[str, Any]]:
    for entry in server.status()["video_layers"]:
        if entry["lesson"] == lesson_id and entry["source"] == "camera":
            return list(entry["layers"])
    return []


async def wait_for(predicate: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


async def test_three_layers_arrive_and_a_classroom_decodes_the_top_through_changes(
    server: Server,
) -> None:
    lesson = server.create_lesson("Simulcast")
    # rids in an order that is not the order of quality
    publisher = SimulcastPublisher(three_streams(order=("b", "c", "a")))
    await publisher.publish(lesson["whip_url"], lesson["whip_token"])
    assert "a=simulcast:recv b;c;a" in publisher.answer
    assert all(f"a=rid:{rid} recv" in publisher.answer for rid in "abc")
    classroom = None
    try:

        def three_active() -> bool:
            publisher.check()
            layers = layers_of(server, lesson["id"])
            return sum(1 for la in layers if la["active"] and la["width"] and la["fps"] > 20) == 3

        await wait_for(three_active, 15, "three layers in /api/status")
        layers = {la["rid"]: la for la in layers_of(server, lesson["id"])}
        assert (layers["b"]["width"], layers["b"]["height"]) == (1280, 720)
        assert (layers["c"]["width"], layers["c"]["height"]) == (640, 360)
        assert (layers["a"]["width"], layers["a"]["height"]) == (320, 180)
        assert all(20 <= la["fps"] <= 40 for la in layers.values()), str(layers)
        assert layers["b"]["bitrate"] > layers["c"]["bitrate"] > layers["a"]["bitrate"] > 0
        _, metrics = server.request("GET", "/metrics")
        assert "syncclass_video_layers 3.0" in metrics

        classroom = await whep_subscribe(
            lesson["whep_url"], lesson["whep_token"], name="village", audios=0
        )
        await classroom.wait_for_frames(30, timeout=15)
        video = classroom.video[0]
        assert (video.width, video.height) == (1280, 720)

        # the top layer vanishes: the classroom goes on with the next one
        publisher.stream("b").active = False
        await wait_for(lambda: video.width == 640, 20, "classroom moved to 640x360")
        decoded = video.frames
        await classroom.wait_for_frames(decoded + 30, timeout=20)
        # and comes back: the classroom returns to it
        publisher.stream("b").active = True
        await wait_for(lambda: video.width == 1280, 20, "classroom back on 1280x720")
        decoded = video.frames
        await classroom.wait_for_frames(decoded + 30, timeout=20)
        # the middle one goes and comes: the classroom, on the top, is not disturbed
        publisher.stream("c").active = False
        await asyncio.sleep(1.5)
        publisher.stream("c").active = True
        decoded = video.frames
        await classroom.wait_for_frames(decoded + 30, timeout=20)
        assert video.width == 1280
        assert video.unreadable == 0  # every decoded picture was whole
        # frame numbers only go forward (one continuous stream to the decoder)
        pts = video.frame_pts
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), "timestamps went back"
    finally:
        if classroom is not None:
            await classroom.close()
        await publisher.close()


async def test_the_recording_keeps_the_top_layer_through_changes(
    server: Server, tmp_path: Path
) -> None:
    lesson = server.create_lesson("Simulcast recording")
    publisher = SimulcastPublisher(three_streams(order=("l", "m", "h")))
    await publisher.publish(lesson["whip_url"], lesson["whip_token"])
    try:
        await asyncio.sleep(4)
        publisher.stream("m").active = False  # a lower layer goes and comes
        await asyncio.sleep(2)
        publisher.stream("m").active = True
        await asyncio.sleep(4)
        publisher.check()
        sent = publisher.stream("h").sent_frames
    finally:
        await publisher.close()
    _, recording = await end_and_wait(server, lesson["id"])
    path, _ = await fetch(server, recording, tmp_path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sizes = {(f.width, f.height) for f in container.decode(stream)}
    assert sizes == {(1280, 720)}
    played = play(path)
    assert played.unreadable == 0
    numbers = [n for _, n, _ in played.frames]
    # the clip loops every 4 s (120 frames): each picture follows the one before
    steps = [(b - a) % 120 for a, b in zip(numbers, numbers[1:], strict=False)]
    assert all(1 <= step <= 5 for step in steps), steps
    assert len(numbers) >= 0.9 * sent, (len(numbers), sent)
    assert 8 <= played.duration_s <= 12, played.duration_s
    at, keyframe = seek(path, played.duration_s / 2)
    assert keyframe and abs(at - played.duration_s / 2) <= 1.1
