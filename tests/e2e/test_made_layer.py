"""A camera that sends one layer (FFmpeg over WHIP, as OBS or a 录播 box would) and a classroom
whose link cannot carry it: the server makes one lighter layer of it, once for the lesson, and
that classroom plays it with its sound while a classroom on a good link keeps the original; the
layer stops once nobody needs it, and nothing is made of a simulcast camera."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Server, start_server
from tests.support.ffmpeg_whip import start_ffmpeg_publisher
from tests.support.link_emulator import POOR, LinkEmulator, Loss, Profile
from tests.support.peers import Classroom, whep_subscribe
from tests.support.simulcast import SimulcastPublisher, three_streams

pytestmark = pytest.mark.alone  # timing through the link emulator: tests/conftest.py

IDLE_S = 2.0  # the made layer's idle time on this server (30 s by default)
# the camera: 720p at 2 Mbit/s, twice what the poor profile's 1 Mbit/s carries
WIDTH, HEIGHT, BITRATE = 1280, 720, 2_000_000
PUBLISH_S = 60.0  # ended by the test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("server"),
        "--made-layer-idle",
        str(IDLE_S),
        "--ice-consent-timeout",
        "30",
    )
    yield instance
    instance.stop()


def _made_layers(status: dict[str, Any], lesson_id: str) -> list[dict[str, Any]]:
    return [
        layer
        for entry in status["video_layers"]
        if entry["lesson"] == lesson_id and entry["source"] == "camera"
        for layer in entry["layers"]
        if layer["made"]
    ]


async def _wait_for(
    server: Server, accept: Callable[[dict[str, Any]], bool], seconds: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await asyncio.to_thread(server.status)
        if accept(status):
            return status
        await asyncio.sleep(0.25)
    raise TimeoutError(
        f"{what} never came: {status.get('video_layers')} {status.get('classrooms')}"
    )


def _link(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next((c for c in status["classrooms"] if c["name"] == name), {})


def _metric(server: Server, name: str) -> float:
    _, text = server.request("GET", "/metrics")
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def _rates(
    rooms: tuple[Classroom, ...], seconds: float
) -> list[tuple[float, float, set[int]]]:
    """For each classroom, the video and audio frames a second it decodes over the same
    ``seconds``, and the picture heights it saw."""
    counts = [(room.video_frames, room.audio_frames) for room in rooms]
    heights: list[set[int]] = [set() for _ in rooms]
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        await asyncio.sleep(0.1)
        for room, seen in zip(rooms, heights, strict=True):
            seen.add(room.video[0].height)
    took = time.monotonic() - began
    return [
        ((room.video_frames - video) / took, (room.audio_frames - audio) / took, seen)
        for room, (video, audio), seen in zip(rooms, counts, heights, strict=True)
    ]


async def test_a_poor_link_plays_a_layer_made_once_while_a_good_one_keeps_the_camera(
    server: Server, tmp_path: Path
) -> None:
    lesson = server.create_lesson("One layer", record=False)
    link = LinkEmulator(POOR, seed=11)
    good: Classroom | None = None
    poor: Classroom | None = None
    teacher = await start_ffmpeg_publisher(
        lesson["whip_url"],
        lesson["whip_token"],
        PUBLISH_S,
        tmp_path,
        WIDTH,
        HEIGHT,
        gop=30,
        bitrate=BITRATE,
    )
    try:
        good = await whep_subscribe(
            lesson["whep_url"] + "?name=good", lesson["whep_token"], name="good"
        )
        poor = await whep_subscribe(
            lesson["whep_url"] + "?name=poor", lesson["whep_token"], name="poor", link=link
        )
        await poor.wait_connected(timeout=15)
        await good.wait_for_frames(1, timeout=15)
        began = time.monotonic()

        def fed_made(status: dict[str, Any]) -> bool:
            link = _link(status, "poor")
            layers = link.get("layers") or []  # (none before it joins)
            # fed it, not only given it to resume on (a paused classroom waits out its hold)
            return (
                link.get("state") == "reduced"
                and bool(layers)
                and layers[0]["height"] == 360
                and bool(_made_layers(status, lid))
            )

        lid = lesson["id"]
        status = await _wait_for(server, fed_made, 30, "the poor classroom on a made layer")
        to_made = time.monotonic() - began
        made = _made_layers(status, lid)
        # one layer made for the lesson, 640x360, at a rate the poor link carries
        assert len(made) == 1, made
        assert (made[0]["width"], made[0]["height"]) == (640, 360)
        layers = next(e for e in status["video_layers"] if e["lesson"] == lid)["layers"]
        original = next(layer for layer in layers if not layer["made"])
        assert (original["width"], original["height"]) == (WIDTH, HEIGHT)
        assert _metric(server, "syncclass_made_layers") == 1

        # the poor classroom decodes it at a steady rate, with its sound. (aiortc's receiver
        # holds up to 512 video packets behind a packet it never got: one lost while the camera
        # overfilled this link before the switch holds the made layer's first frames ~8 s at its
        # ~60 packets a second, and a second such hole as long again; a browser plays on.)
        await _wait_for_height(poor, 360, 30)
        await asyncio.sleep(1.0)  # what its link had queued before plays out
        numbers = len(poor.video[0].frame_numbers)
        # (measured beside the good classroom: what the camera sends, on a loaded machine)
        (fps, audio_fps, heights), (good_fps, good_audio, _) = await _rates((poor, good), 4.0)
        window = poor.video[0].frame_numbers[numbers:]
        assert window, f"the poor classroom decoded nothing: {poor.video[0]}"
        # of the camera's frames over the window, those it decoded
        decoded = len(set(window)) / (max(window) - min(window) + 1)
        # how far the made layer runs behind the camera as it is sent, in frames
        behind = good.video[0].frame_numbers[-1] - poor.video[0].frame_numbers[-1]
        good_height = good.video[0].height
        status = await asyncio.to_thread(server.status)
        made = _made_layers(status, lid)
        print(
            f"made layer after {to_made:.1f} s: {made}; poor classroom {fps:.1f} fps at "
            f"{heights} ({decoded:.1%} of the camera's frames, {behind} frames behind the good "
            f"classroom), sound {audio_fps:.1f} frames/s; "
            f"good classroom at {good_height} lines, {good_fps:.1f} fps, sound {good_audio:.1f}; "
            f"{_link(status, 'good')['state']}; poor link {_link(status, 'poor')}"
        )
        assert heights == {360}
        assert decoded >= 0.9, window
        assert fps >= max(10.0, 0.66 * good_fps), (fps, good_fps)  # the camera sends 30
        assert audio_fps >= 0.9 * good_audio, (audio_fps, good_audio)  # 50 Opus frames/s
        # the good classroom still gets the camera as it is sent
        assert good_height == HEIGHT
        assert _link(status, "good")["state"] == "full"
        assert len(made) == 1

        # nobody needs it any more: it stops after its idle time, the camera plays on
        await poor.close()
        left = time.monotonic()
        status = await _wait_for(
            server, lambda s: not _made_layers(s, lid), IDLE_S + 5, "the made layer's stop"
        )
        stopped_after = time.monotonic() - left
        assert teacher.returncode is None  # stopped for want of classrooms, not of the camera
        assert _metric(server, "syncclass_made_layers") == 0
        frames = good.video_frames
        await good.wait_for_frames(frames + 15, timeout=5)
        print(f"made layer stopped {stopped_after:.1f} s after the poor classroom left")
        assert stopped_after >= IDLE_S - 1
        assert good.video[0].height == HEIGHT
    finally:
        for room in (poor, good):
            if room is not None:
                await room.close()
        link.close()
        teacher.terminate()
        await teacher.wait()


async def _wait_for_height(room: Classroom, height: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while room.video[0].height != height:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{room.name} decodes {room.video[0].height} lines, not {height}")
        await asyncio.sleep(0.05)


# a link that carries the sound and not even the lowest simulcast layer
TRICKLE = Profile("trickle", rtt=0.100, loss=Loss.random(0.01), rate=120e3, jitter=0.010)


async def test_nothing_is_made_of_a_simulcast_camera(server: Server) -> None:
    lesson = server.create_lesson("Simulcast", record=False)
    publisher = SimulcastPublisher(three_streams(seconds=4.0))
    await publisher.publish(lesson["whip_url"], lesson["whip_token"])
    link = LinkEmulator(TRICKLE, seed=3)
    room: Classroom | None = None
    try:
        room = await whep_subscribe(
            lesson["whep_url"] + "?name=trickle", lesson["whep_token"], name="trickle", link=link
        )
        await room.wait_connected(timeout=15)

        def paused(status: dict[str, Any]) -> bool:
            return _link(status, "trickle").get("state") == "audio_only"

        await _wait_for(server, paused, 30, "the trickle classroom's pause")
        since = time.monotonic()
        # paused for twice the made layers' check interval, and more: nothing made
        while time.monotonic() - since < 3.0:
            status = await asyncio.to_thread(server.status)
            assert paused(status)
            assert not _made_layers(status, lesson["id"])
            await asyncio.sleep(0.5)
        layers = next(e for e in status["video_layers"] if e["lesson"] == lesson["id"])["layers"]
        assert len(layers) == 3 and not any(layer["made"] for layer in layers)
    finally:
        if room is not None:
            await room.close()
        await publisher.close()
        link.close()
