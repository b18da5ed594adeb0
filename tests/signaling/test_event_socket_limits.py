"""Limits an attacker meets: event sockets per lesson and per address, the first-message token
window, and rate limits that junk requests cannot drain for the valid holders beside them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.server import Server, start_server
from tests.signaling.test_tokens_http import recvonly_offer

pytestmark = pytest.mark.timeout(120)

PER_ADDRESS = 3


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with limits small enough to reach quickly; each test that reaches one does
    so from its own loopback addresses."""
    instance = start_server(
        tmp_path_factory.mktemp("tight"),
        "--max-event-sockets-per-address",
        str(PER_ADDRESS),
        "--rate-limit-media",
        "3/60",
        "--rate-limit-lessons",
        "8/60",  # the tests create their lessons from 127.0.0.1: 5 of them
    )
    yield instance
    instance.stop()


def from_address(address: str, limit: int = 100) -> aiohttp.ClientSession:
    """A client on its own address (all of 127.0.0.0/8 is this machine)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=limit)
    return aiohttp.ClientSession(connector=connector)


def events_url(server: Server, lesson: dict[str, Any], query: str = "") -> str:
    url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events"
    return f"{url}?{query}" if query else url


async def first_snapshot(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive_json(timeout=5)
    assert message["type"] == "lesson", message
    return dict(message)


async def refusal(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], str]:
    """What a plain GET of the socket's address is answered: status, JSON body, Retry-After."""
    async with session.get(url.replace("ws", "http", 1)) as response:
        return response.status, await response.json(), response.headers.get("Retry-After", "")


async def test_anonymous_sockets_are_refused_or_closed_fast(tight: Server) -> None:
    """300 sockets that never say a token, all at once from one address, are refused before
    the upgrade or closed within ~2 s; meanwhile the API answers and a classroom with the
    join link (from the same address, too) opens its socket."""
    lesson = tight.create_lesson("Flood", max_classrooms=4)
    url = events_url(tight, lesson)
    outcomes: list[tuple[str, float]] = []

    async def anonymous(session: aiohttp.ClientSession) -> None:
        start = time.monotonic()
        try:
            ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=15))
        except aiohttp.WSServerHandshakeError as exc:
            outcomes.append((f"refused {exc.status}", time.monotonic() - start))
            return
        msg = await ws.receive(timeout=15)  # says nothing: how long until the server closes?
        outcomes.append((f"closed {msg.type.name}", time.monotonic() - start))
        await ws.close()

    async with (
        from_address("127.0.2.1", limit=0) as attacker,
        aiohttp.ClientSession() as admin,
        from_address("127.0.2.1") as school,
        from_address("127.0.2.2") as elsewhere,
    ):
        flood = asyncio.gather(*(anonymous(attacker) for _ in range(300)))
        latencies = []
        for _ in range(20):
            start = time.monotonic()
            async with admin.get(
                f"{tight.url}/api/status",
                headers={"Authorization": f"Bearer {tight.admin_key}"},
            ) as response:
                assert response.status == 200
            latencies.append(time.monotonic() - start)
            await asyncio.sleep(0.05)
        for session in (school, elsewhere):
            async with session.ws_connect(
                events_url(tight, lesson, f"token={lesson['whep_token']}&name=Room")
            ) as ws:
                assert (await first_snapshot(ws))["state"] == "scheduled"
        await flood
    assert len(outcomes) == 300
    slow = [(what, seconds) for what, seconds in outcomes if seconds > 5]
    assert not slow, f"{len(slow)} anonymous sockets held for over 5 s: {slow[:3]}"
    refused = [what for what, _ in outcomes if what.startswith("refused")]
    assert refused and set(refused) <= {"refused 429", "refused 503"}, set(refused)
    assert max(latencies) <= 1.0, latencies  # generous: these machines are shared


async def test_a_lesson_takes_twice_its_classrooms_and_always_the_teacher(tight: Server) -> None:
    """A lesson of 2 takes 4 classroom sockets; the 5th gets a clear 503 before any upgrade,
    and the teacher (by origin token or key) still gets in."""
    lesson = tight.create_lesson("Cap", max_classrooms=2)
    classroom = events_url(tight, lesson, f"token={lesson['whep_token']}")
    sessions = [from_address(f"127.0.3.{i}") for i in range(1, 7)]
    try:
        sockets = []
        for i, session in enumerate(sessions[:4]):
            ws = await session.ws_connect(f"{classroom}&name=Room-{i}")
            await first_snapshot(ws)
            sockets.append(ws)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await sessions[4].ws_connect(classroom)  # watch-only counts too
        assert refused.value.status == 503
        status, body, retry = await refusal(sessions[4], classroom)
        assert status == 503 and body["error"] == "sockets_full" and body["message"]
        assert int(retry) >= 1
        # the teacher, even from an address the classrooms use
        for query in (f"token={lesson['whip_token']}", f"token={tight.teacher_key}"):
            for session in (sessions[0], sessions[5]):
                async with session.ws_connect(events_url(tight, lesson, query)) as teacher:
                    assert "roster" in await first_snapshot(teacher)
        await sockets[0].close()  # a place given back is taken again
        await asyncio.sleep(0.2)
        async with sessions[4].ws_connect(classroom) as ws:
            await first_snapshot(ws)
        for ws in sockets[1:]:
            await ws.close()
    finally:
        for session in sessions:
            await session.close()


async def test_one_address_holds_a_few_classroom_sockets(tight: Server) -> None:
    lesson = tight.create_lesson("Per address", max_classrooms=30)
    classroom = events_url(tight, lesson, f"token={lesson['whep_token']}")
    async with from_address("127.0.4.1") as school, from_address("127.0.4.2") as other:
        sockets = [await school.ws_connect(classroom) for _ in range(PER_ADDRESS)]
        status, body, retry = await refusal(school, classroom)
        assert status == 429 and body["error"] == "too_many_sockets" and int(retry) >= 1
        async with other.ws_connect(classroom) as ws:  # another address is not affected
            await first_snapshot(ws)
        async with school.ws_connect(events_url(tight, lesson, f"token={lesson['whip_token']}")):
            pass  # nor the teacher at the school's address
        for ws in sockets:
            await ws.close()


async def test_a_bad_token_is_refused_before_the_upgrade(tight: Server) -> None:
    lesson = tight.create_lesson("Bad token")
    async with aiohttp.ClientSession() as http:
        for query in ("token=junk", "token=" + "x" * 200):
            status, body, _ = await refusal(http, events_url(tight, lesson, query))
            assert status == 401 and body["error"] == "invalid_token"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(events_url(tight, lesson, query))
            assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                events_url(tight, lesson), headers={"Authorization": "Bearer junk"}
            )
        assert refused.value.status == 401


async def test_unauthenticated_requests_do_not_use_up_the_valid_holders_limits(
    tight: Server,
) -> None:
    """Junk joins and lesson creations from a school's address (no token, a junk one) do not
    make the real classroom's join or the teacher's lesson creation there get 429."""
    lesson = tight.create_lesson("Junk", max_classrooms=4)
    offer = await recvonly_offer()
    sdp = {"Content-Type": "application/sdp"}
    async with from_address("127.0.5.1") as school:
        junk = []
        for headers in ({}, {"Authorization": "Bearer junk"}) * 5:
            async with school.post(
                lesson["whep_url"], data=offer, headers={**sdp, **headers}
            ) as response:
                junk.append(response.status)
            async with school.post(
                f"{tight.url}/api/lessons", json={"title": "x"}, headers=headers
            ) as response:
                junk.append(response.status)
        assert junk.count(429) >= 7, junk  # the junk has a limit of its own
        async with school.post(
            f"{lesson['whep_url']}?name=Room",
            data=offer,
            headers={**sdp, "Authorization": f"Bearer {lesson['whep_token']}"},
        ) as response:
            assert response.status == 201, await response.text()
            location = response.headers["Location"]
        async with school.post(
            f"{tight.url}/api/lessons",
            json={"title": "Real", "record": False},
            headers={"Authorization": f"Bearer {tight.teacher_key}"},
        ) as response:
            assert response.status == 201, await response.text()
        await school.delete(
            f"{tight.url}{location}",
            headers={"Authorization": f"Bearer {lesson['whep_token']}"},
        )
