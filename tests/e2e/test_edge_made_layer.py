"""An edge relays a one-layer camera (FFmpeg over WHIP at the origin) to a classroom whose link
cannot carry it: the edge makes the lighter layer itself, once for its lesson, as for any
single-layer source, while its classroom on a good link keeps the camera as sent and the origin
sends the edge the original, making nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_edge import whep_source
from tests.e2e.test_made_layer import _link, _made_layers, _wait_for, _wait_for_height
from tests.server import Server, start_server
from tests.support.ffmpeg_whip import start_ffmpeg_publisher
from tests.support.link_emulator import POOR, LinkEmulator
from tests.support.peers import Classroom, whep_subscribe

pytestmark = [pytest.mark.alone, pytest.mark.timeout(180)]  # timing through the link emulator

WIDTH, HEIGHT, BITRATE = 1280, 720, 2_000_000  # twice what the poor profile carries


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    origin = start_server(tmp_path_factory.mktemp("origin"))
    edge = start_server(tmp_path_factory.mktemp("edge"), "--made-layer-idle", "2")
    yield origin, edge
    edge.stop()
    origin.stop()


async def test_the_edge_makes_the_lighter_layer_for_its_poor_classroom(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    origin, edge = servers
    at_origin = origin.create_lesson("One layer", record=False)
    teacher = await start_ffmpeg_publisher(
        at_origin["whip_url"],
        at_origin["whip_token"],
        60.0,
        tmp_path,
        WIDTH,
        HEIGHT,
        gop=30,
        bitrate=BITRATE,
    )
    at_edge = edge.create_lesson("One layer", source_url=whep_source(origin, at_origin))
    link = LinkEmulator(POOR, seed=11)
    good: Classroom | None = None
    poor: Classroom | None = None
    try:
        good = await whep_subscribe(
            at_edge["whep_url"] + "?name=good", at_edge["whep_token"], name="good"
        )
        await good.wait_for_frames(1, timeout=30)
        poor = await whep_subscribe(
            at_edge["whep_url"] + "?name=poor", at_edge["whep_token"], name="poor", link=link
        )
        lid = at_edge["id"]

        def fed_made(status: dict[str, Any]) -> bool:
            poor_link = _link(status, "poor")
            layers = poor_link.get("layers") or []
            return (
                poor_link.get("state") == "reduced"
                and bool(layers)
                and layers[0]["height"] == 360
                and bool(_made_layers(status, lid))
            )

        began = time.monotonic()
        status = await _wait_for(edge, fed_made, 60, "the edge's poor classroom on a made layer")
        print(f"made layer at the edge after {time.monotonic() - began:.1f} s")
        assert len(_made_layers(status, lid)) == 1
        await _wait_for_height(poor, 360, 30)
        frames = good.video_frames
        await good.wait_for_frames(frames + 30, timeout=10)
        assert good.video[0].height == HEIGHT
        assert _link(status, "good").get("state") == "full", status["classrooms"]
        # the origin makes nothing: it sends the edge what the teacher sends
        origin_status = origin.status()
        assert not _made_layers(origin_status, at_origin["id"])
    finally:
        for room in (poor, good):
            if room is not None:
                await room.close()
        link.close()
        teacher.terminate()
        await teacher.wait()
