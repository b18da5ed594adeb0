"""``POST /api/check``, the network check's endpoint: it answers a data channel offer with a
probe that echoes pings and moves a fixed amount of data, refuses anything else with a clear
4xx, and runs only a few probes at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection

from media.probe import DOWN_BYTES
from signaling.check_api import MAX_PROBES
from tests.server import Server, start_server
from tests.support.peers import new_peer_connection, post_offer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def check_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # many offers from one address: the media rate limit is tested elsewhere
    instance = start_server(tmp_path_factory.mktemp("check"), "--rate-limit-media", "off")
    yield instance
    instance.stop()


async def data_offer() -> tuple[RTCPeerConnection, RTCDataChannel]:
    pc = new_peer_connection()
    channel = pc.createDataChannel("probe")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, channel


async def test_a_probe_echoes_pings_and_moves_data(check_server: Server) -> None:
    pc, channel = await data_offer()
    try:
        answer = await post_offer(check_server.url + "/api/check", None, pc.localDescription.sdp)
        assert answer.status == 201, answer.text
        assert " tcp " in answer.text and "tcptype passive" in answer.text
        await pc.setRemoteDescription(type(pc.localDescription)(sdp=answer.text, type="answer"))
        opened = asyncio.Event()
        texts: asyncio.Queue[str] = asyncio.Queue()
        received = 0

        channel.on("open", opened.set)

        @channel.on("message")
        def message(data: str | bytes) -> None:
            nonlocal received
            if isinstance(data, bytes):
                received += len(data)
            else:
                texts.put_nowait(data)

        await asyncio.wait_for(opened.wait(), 10)
        channel.send("ping:1")
        assert await asyncio.wait_for(texts.get(), 5) == "ping:1"
        channel.send("down")
        assert await asyncio.wait_for(texts.get(), 20) == f"down:{DOWN_BYTES}"
        assert received == DOWN_BYTES
        channel.send(bytes(50_000))
        channel.send("up")
        assert await asyncio.wait_for(texts.get(), 5) == "up:50000"
        channel.send("x" * 100_000)  # ignored
        channel.send("ping:2")
        assert await asyncio.wait_for(texts.get(), 5) == "ping:2"
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "error"),
    [
        ("text/plain", "v=0\r\n", 415, "unsupported_media_type"),
        ("application/sdp", "", 400, "malformed_sdp"),
        ("application/sdp", "hello", 400, "malformed_sdp"),
    ],
)
async def test_bad_offers_are_refused(
    check_server: Server, content_type: str, body: str, status: int, error: str
) -> None:
    answer = await post_offer(
        check_server.url + "/api/check", None, body, content_type=content_type
    )
    assert answer.status == status and json.loads(answer.text)["error"] == error


async def test_an_offer_with_media_is_refused(check_server: Server) -> None:
    pc = new_peer_connection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await post_offer(check_server.url + "/api/check", None, pc.localDescription.sdp)
    await pc.close()
    assert answer.status == 400
    assert json.loads(answer.text)["error"] == "too_many_media_sections"


async def test_only_a_few_probes_run_at_once(check_server: Server) -> None:
    pcs = []
    url = check_server.url + "/api/check"
    try:
        for _ in range(MAX_PROBES):
            pc, channel = await data_offer()
            pcs.append(pc)
            answer = await post_offer(url, None, pc.localDescription.sdp)
            assert answer.status == 201
            opened = asyncio.Event()
            channel.on("open", opened.set)
            await pc.setRemoteDescription(type(pc.localDescription)(sdp=answer.text, type="answer"))
            await asyncio.wait_for(opened.wait(), 10)
        pc, _ = await data_offer()
        pcs.append(pc)
        busy = await post_offer(url, None, pc.localDescription.sdp)
        assert busy.status == 503 and json.loads(busy.text)["error"] == "busy"
        assert int(busy.headers["Retry-After"]) > 0
    finally:
        for pc in pcs:
            await pc.close()
    # browsers that leave free their probes (a probe nobody connects to ends by itself later)
    pc, _ = await data_offer()
    try:
        for _ in range(50):
            again = await post_offer(url, None, pc.localDescription.sdp)
            if again.status == 201:
                break
            await asyncio.sleep(0.2)
        assert again.status == 201, again.text
    finally:
        await pc.close()


async def test_the_check_page_is_served(check_server: Server) -> None:
    status, page = check_server.request("GET", "/check")
    assert status == 200 and "网络检测" in page and "/static/js/check.js" in page
