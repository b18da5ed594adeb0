"""TURN through a real coturn: the server hands out short-lived credentials (TURN REST) in its
WHIP/WHEP answers, on OPTIONS and to the pages, and a classroom that reaches nothing but the
TURN server's TLS port plays the lesson through it.

coturn runs in the test's namespace with TLS (a certificate the test makes), use-auth-secret
and peers limited to 127.0.0.1 (tests/support/coturn.py); the server gets the secret from its
environment, as an operator keeps it out of ``ps``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from aiortc import RTCIceServer

from tests.server import Server, start_server
from tests.support.coturn import Coturn, start_coturn
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, new_peer_connection, whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)

LINK = re.compile(
    r'^<(?P<url>[^>]+)>; rel="ice-server"; username="(?P<username>[^"]+)"; '
    r'credential="(?P<credential>[^"]+)"; credential-type="password"$'
)


@dataclass(frozen=True)
class IceServerLink:
    url: str
    username: str
    credential: str

    def ice_server(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)


def parse_links(values: list[str]) -> list[IceServerLink]:
    links = []
    for value in values:
        match = LINK.match(value)
        assert match is not None, value
        links.append(IceServerLink(**match.groupdict()))
    return links


def token_expiry(token: str) -> int:
    payload = token.split(".")[0]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["e"])


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    instance = start_coturn(tmp_path_factory.mktemp("coturn"))
    yield instance
    instance.stop()


def start_turn_server(directory: Path, coturn: Coturn, *args: str) -> Server:
    # the secret from the environment: not on the command line, where ps shows it
    return start_server(
        directory,
        "--turn-url",
        coturn.turns_url,
        *args,
        env={"SYNCCLASS_TURN_SECRET": coturn.secret},
    )


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory, coturn: Coturn) -> Iterator[Server]:
    instance = start_turn_server(tmp_path_factory.mktemp("server"), coturn)
    yield instance
    instance.stop()


@pytest.fixture
def trust_coturn(coturn: Coturn, monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice checks the TURN server's certificate: trust the one the test made."""
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn.cert))


async def offer_sdp(direction: str) -> str:
    pc = new_peer_connection()
    try:
        pc.addTransceiver("video", direction=direction)
        pc.addTransceiver("audio", direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def http(
    method: str, url: str, token: str | None = None, **headers: str
) -> tuple[int, aiohttp.typedefs.LooseHeaders, list[str], str]:
    """Status, headers, every Link header and the body of one request."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if method == "POST":
        direction = "sendonly" if "/whip/" in url else "recvonly"
        data = (await offer_sdp(direction)).encode()
        headers["Content-Type"] = "application/sdp"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        body = await response.text()
        location = response.headers.get("Location")
        if response.status == 201 and location is not None:
            # leave at once: only the answer's headers matter here
            await session.delete(
                str(response.url.join(aiohttp.client.URL(location))),
                headers={"Authorization": f"Bearer {token}"},
            )
        return response.status, response.headers, response.headers.getall("Link", []), body


def check_credential(link: IceServerLink, secret: str, lesson_id: str, role: str) -> int:
    """The credential is the TURN REST one coturn expects; returns its expiry."""
    expiry, _, label = link.username.partition(":")
    assert label == f"{lesson_id}.{role}"  # the lesson and the role, never a classroom's name
    digest = hmac.new(secret.encode(), link.username.encode(), hashlib.sha1).digest()
    assert link.credential == base64.b64encode(digest).decode()
    return int(expiry)


async def allocate(coturn: Coturn, username: str, password: str) -> tuple[str, int]:
    """A real TURN allocation over TLS; returns the relayed address."""
    context = ssl.create_default_context(cafile=str(coturn.cert))
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        ("127.0.0.1", coturn.tls_port),
        username,
        password,
        ssl=context,
        transport="tcp",
    )
    try:
        return transport.get_extra_info("sockname")  # type: ignore[no-any-return]
    finally:
        transport.close()


async def bind_peer(coturn: Coturn, username: str, password: str, peer: tuple[str, int]) -> int:
    """Ask coturn for a channel to ``peer`` (what a relayed client does before it sends to
    it); 0 when granted, else the STUN error code."""
    context = ssl.create_default_context(cafile=str(coturn.cert))
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        ("127.0.0.1", coturn.tls_port),
        username,
        password,
        ssl=context,
        transport="tcp",
    )
    try:
        client = transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        await client.channel_bind(0x4000, peer)
        return 0
    except TransactionFailed as failure:
        return int(failure.response.attributes["ERROR-CODE"][0])
    finally:
        transport.close()


async def refused(coturn: Coturn, username: str, password: str) -> int:
    """The STUN error code coturn refuses an allocation with."""
    with pytest.raises(TransactionFailed) as failure:
        await allocate(coturn, username, password)
    return int(failure.value.response.attributes["ERROR-CODE"][0])


async def test_whip_and_whep_answers_and_options_carry_the_turn_server(
    turn_server: Server, coturn: Coturn
) -> None:
    lesson = turn_server.create_lesson("Links", record=False)
    lesson_id = lesson["id"]
    for url, token, role in (
        (lesson["whep_url"] + "?name=Room", lesson["whep_token"], "classroom"),
        (lesson["whip_url"], lesson["whip_token"], "origin"),
    ):
        status, headers, links, body = await http("POST", url, token)
        assert status == 201, body
        [link] = parse_links(links)
        assert link.url == coturn.turns_url
        assert check_credential(link, coturn.secret, lesson_id, role) == token_expiry(token)

        endpoint = url.split("?")[0]
        status, headers, links, body = await http("OPTIONS", endpoint, token)
        assert status == 204, body
        assert headers["Accept-Post"] == "application/sdp"
        [link] = parse_links(links)
        assert check_credential(link, coturn.secret, lesson_id, role) == token_expiry(token)

        # a CORS preflight carries no credential: it is answered, with no ICE servers
        status, headers, links, _ = await http(
            "OPTIONS",
            endpoint,
            Origin="https://portal.example",
            **{"Access-Control-Request-Method": "POST"},
        )
        assert status == 204 and links == []
        assert headers["Accept-Post"] == "application/sdp"

        # a bad token on OPTIONS is refused as on POST
        status, _, links, body = await http("OPTIONS", endpoint, token[:-4] + "AAAA")
        assert status == 401 and links == [], body
        assert json.loads(body)["error"] == "invalid_token"

    # the pages get the same server with the lesson
    status, data = turn_server.request(
        "GET", f"/api/lessons/{lesson_id}", token=lesson["whep_token"]
    )
    assert status == 200
    [server] = data["ice_servers"]
    assert server["urls"] == [coturn.turns_url]
    link = IceServerLink(server["urls"][0], server["username"], server["credential"])
    expiry = check_credential(link, coturn.secret, lesson_id, "classroom")
    assert expiry == token_expiry(lesson["whep_token"])
    # the credential really opens coturn
    relayed = await allocate(coturn, link.username, link.credential)
    assert relayed[0] == "127.0.0.1"
    # and its relay reaches the media server's address, and no other (403 Forbidden IP)
    [media_port] = [port["port"] for port in turn_server.status()["shared_ports"]]
    assert await bind_peer(coturn, link.username, link.credential, ("127.0.0.1", media_port)) == 0
    assert await bind_peer(coturn, link.username, link.credential, ("127.0.0.2", 9)) == 403


async def test_a_relay_only_aiortc_classroom_plays_the_lesson_through_coturn(
    turn_server: Server, coturn: Coturn, trust_coturn: None
) -> None:
    lesson = turn_server.create_lesson("Relay", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    classroom: Classroom | None = None
    try:
        await publisher.wait_connected()
        # as a WHEP client learns it (RFC 9725): OPTIONS with its token, before the offer
        status, _, links, body = await http("OPTIONS", lesson["whep_url"], lesson["whep_token"])
        assert status == 204, body
        [link] = parse_links(links)
        classroom = await whep_subscribe(
            lesson["whep_url"] + "?name=Relay",
            lesson["whep_token"],
            ice_servers=[link.ice_server()],
            relay_only=True,
        )
        offered = [line for line in classroom.pc.localDescription.sdp.splitlines()]
        candidates = [line for line in offered if line.startswith("a=candidate:")]
        assert candidates and all(" typ relay" in line for line in candidates), candidates
        await classroom.wait_for_frames(60, timeout=30)
        assert classroom.video_frames >= 60
        # the pair in use is the relayed one, on an address of coturn's relay range
        kind, port = selected_pair(classroom)
        low, high = coturn.relay_ports
        assert kind == "relay" and low <= port <= high, (kind, port)
    finally:
        if classroom is not None:
            await classroom.close()
        await publisher.close()


def selected_pair(classroom: Classroom) -> tuple[str, int]:
    """The type and port of the local candidate of the pair aioice nominated."""
    transport = classroom.pc.getTransceivers()[0].receiver.transport
    pair = transport.transport._connection._nominated[1]
    return pair.local_candidate.type, pair.local_candidate.port


async def test_expired_and_forged_credentials_are_refused_by_coturn(
    tmp_path: Path, coturn: Coturn
) -> None:
    server = start_turn_server(tmp_path / "server", coturn, "--token-ttl", "5")
    try:
        lesson = server.create_lesson("Short", record=False)
        token = lesson["whep_token"]
        status, _, links, body = await http("OPTIONS", lesson["whep_url"], token)
        assert status == 204, body
        [link] = parse_links(links)
        expiry = check_credential(link, coturn.secret, lesson["id"], "classroom")
        assert expiry == token_expiry(token) <= time.time() + 6
        await allocate(coturn, link.username, link.credential)  # works while the token does

        # forged: a later expiry under the same password, or a password of another secret
        later = f"{expiry + 3600}:{lesson['id']}.classroom"
        assert await refused(coturn, later, link.credential) == 401
        other = base64.b64encode(hmac.new(b"guess", later.encode(), hashlib.sha1).digest())
        assert await refused(coturn, later, other.decode()) == 401

        # expired with the token: coturn refuses it once its time is past
        await asyncio.sleep(max(0.0, expiry + 1.2 - time.time()))  # a clock time, no event
        assert await refused(coturn, link.username, link.credential) == 401
        status, _, _, _ = await http("OPTIONS", lesson["whep_url"], token)
        assert status == 401  # and the token with it
    finally:
        server.stop()
    assert link.credential not in server.log()


async def test_no_credential_reaches_the_log(turn_server: Server, coturn: Coturn) -> None:
    lesson = turn_server.create_lesson("Quiet", record=False)
    credentials = []
    for url, token in ((lesson["whep_url"], lesson["whep_token"]), (lesson["whip_url"], None)):
        token = token or lesson["whip_token"]
        _, _, links, _ = await http("OPTIONS", url, token)
        _, _, posted, _ = await http("POST", url + "?name=Quiet", token)
        credentials += [link.credential for link in parse_links(links + posted)]
    _, data = turn_server.request("GET", f"/api/lessons/{lesson['id']}", token=lesson["whep_token"])
    credentials += [server["credential"] for server in data["ice_servers"]]
    assert len(credentials) == 5
    log = turn_server.log()
    assert "OPTIONS /whep/" in log  # the requests were logged, without what they answered
    for credential in credentials:
        assert credential not in log
    assert coturn.secret not in log
    # nor is the secret on the server's command line
    assert coturn.secret not in command_line(turn_server.process.pid)


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode()
