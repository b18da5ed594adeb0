"""The server's ICE-TCP port (RFC 6544 passive candidates, RFC 4571 framing) under a hand-made
TCP client: an authenticated check is answered on the stream; garbage, oversized frames,
silence and floods of half-open connections are refused and cleaned up while a live lesson's
classrooms keep decoding."""

from __future__ import annotations

import re

import pytest
from aioice import stun

from tests.server import Server
from tests.support.ice_tcp_client import IceTcpClient, credentials, tcp_candidates
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)


def client_ufrag(offer_sdp: str) -> str:
    found = re.search(r"a=ice-ufrag:(\S+)", offer_sdp)
    assert found
    return found.group(1)


async def test_an_authenticated_check_is_answered_on_the_stream(server: Server) -> None:
    lesson = server.create_lesson("TCP check", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2.0),
        audio=encode_opus_clip(2.0),
    )
    room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    try:
        await room.wait_for_frames(10, timeout=10)
        [address] = tcp_candidates(room.answer_sdp)
        ufrag, pwd = credentials(room.answer_sdp)
        client = await IceTcpClient.connect(address)
        answer = await client.check(ufrag, pwd, client_ufrag(room.pc.localDescription.sdp))
        assert answer.message_class == stun.Class.RESPONSE, answer
        assert answer.check_message_integrity(pwd.encode())
        port = server.status()["tcp_ports"][0]
        assert port["half_open"] == 0, port
        client.close()
    finally:
        await room.close()
        await publisher.close()
