"""HTTP hardening as a client sees it: security headers, cross-origin access (none unless
granted), rate limits per client address, and size limits on bodies and messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.server import Server, free_port, start_server
from tests.signaling.test_tokens_http import recvonly_offer, sendonly_offer
from tests.support.browser import launch, open_page

pytestmark = pytest.mark.timeout(120)

PORTAL = "https://portal.example"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def portal_port() -> int:
    """Where a school portal's page is served from: another origin than the server's."""
    return free_port()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, portal_port: int) -> Iterator[Server]:
    """A server that lets two other sites in, with limits small enough to reach quickly.
    Each test that reaches a limit does so from its own loopback address."""
    instance = start_server(
        tmp_path_factory.mktemp("strict"),
        "--cors-origin",
        PORTAL,
        "--cors-origin",
        f"http://127.0.0.1:{portal_port}",
        "--rate-limit-lessons",
        "3/60",
        "--rate-limit-media",
        "2/60",
        "--rate-limit-messages",
        "5/60",
    )
    yield instance
    instance.stop()


def from_address(address: str) -> aiohttp.ClientSession:
    """A client on its own address (all of 127.0.0.0/8 is this machine)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


async def create(http: aiohttp.ClientSession, server: Server, **headers: str) -> Any:
    return await http.post(
        f"{server.url}/api/lessons",
        json={"title": "Hardening", "record": False},
        headers=auth(server.teacher_key, **headers),
    )


# --- security headers ----------------------------------------------------------------------


async def test_pages_and_answers_carry_security_headers(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/") as page:
        assert page.status == 200 and page.content_type == "text/html"
        policy = page.headers["Content-Security-Policy"]
        host = server.url.removeprefix("http://")
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            f"connect-src 'self' ws://{host} wss://{host}",
        ):
            assert directive in policy, policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
    async with http.get(f"{server.url}/static/js/home.js") as script:
        assert script.status == 200
        assert script.content_type in ("text/javascript", "application/javascript")
        assert script.headers["X-Content-Type-Options"] == "nosniff"
    async with await create(http, server) as created:
        assert created.status == 201
        lesson = await created.json()
        assert created.headers["Cache-Control"] == "no-store"  # it carries the tokens
        assert created.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in created.headers["Content-Security-Policy"]
    async with http.post(
        lesson["whep_url"],
        data=await recvonly_offer(),
        headers=auth(lesson["whep_token"], **{"Content-Type": "application/sdp"}),
    ) as answer:
        assert answer.status == 201
        assert answer.headers["Cache-Control"] == "no-store"  # ICE credentials
        await http.delete(
            f"{server.url}{answer.headers['Location']}", headers=auth(lesson["whep_token"])
        )
    async with http.get(f"{server.url}/api/lessons/nope", headers=auth("x")) as error:
        assert error.status == 401 and error.headers["Cache-Control"] == "no-store"


async def test_the_pages_run_under_their_policy(server: Server) -> None:
    """Every page loads its modules and does its work with nothing blocked by the policy."""
    lesson = server.create_lesson("Policy")
    pages = [
        f"{server.url}/",
        f"{server.url}/recordings",
        lesson["teacher_url"],
        lesson["join_url"],
    ]
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            for url in pages:
                page = await open_page(browser, None)
                blocked: list[str] = []
                page.on(
                    "console",
                    lambda m, b=blocked: b.append(m.text) if "Content Security" in m.text else None,
                )
                await page.context.add_init_script(WATCH_VIOLATIONS)
                await page.goto(url)
                await page.wait_for_load_state("networkidle")
                await asyncio.sleep(1)  # the pages open their event sockets, start previews
                # the modules ran: they fill every text of the page from their string tables
                assert await page.evaluate(EMPTY_TEXTS) == [], url
                assert await page.evaluate("window.__violations") == [], url
                assert not blocked, (url, blocked)
                await page.context.close()
        finally:
            await browser.close()


WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
EMPTY_TEXTS = """
[...document.querySelectorAll('[data-i18n]')]
  .filter((e) => !e.textContent.trim()).map((e) => e.dataset.i18n)
"""


# --- cross-origin access -------------------------------------------------------------------


async def test_no_cross_origin_access_by_default(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("CORS")
    for path in (f"/whip/{lesson['id']}", f"/whep/{lesson['id']}"):
        async with http.options(f"{server.url}{path}") as plain:
            # the WHIP/WHEP spec's OPTIONS: what the endpoint accepts, for anyone
            assert plain.status == 204
            assert plain.headers["Accept-Post"] == "application/sdp"
        async with http.options(
            f"{server.url}{path}",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        ) as preflight:
            assert preflight.status == 204
            assert preflight.headers["Accept-Post"] == "application/sdp"
            assert "Access-Control-Allow-Origin" not in preflight.headers
    async with http.get(
        f"{server.url}/api/lessons", headers=auth(server.teacher_key, Origin=EVIL)
    ) as listed:
        assert listed.status == 200
        assert "Access-Control-Allow-Origin" not in listed.headers


async def test_listed_origins_get_correct_cors_answers(strict: Server) -> None:
    async with from_address("127.0.0.6") as http:
        await listed_origin_answers(strict, http)


async def listed_origin_answers(strict: Server, http: aiohttp.ClientSession) -> None:
    lesson = strict.create_lesson("Portal")
    whep = f"/whep/{lesson['id']}"
    async with http.options(
        f"{strict.url}{whep}",
        headers={
            "Origin": PORTAL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    ) as preflight:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == PORTAL
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert preflight.headers["Accept-Post"] == "application/sdp"
    async with http.options(
        f"{strict.url}{whep}/some-session",
        headers={"Origin": PORTAL, "Access-Control-Request-Method": "DELETE"},
    ) as preflight:
        assert preflight.status == 204
        assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
    async with http.options(
        f"{strict.url}/api/lessons",
        headers={"Origin": PORTAL, "Access-Control-Request-Method": "POST"},
    ) as preflight:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == PORTAL
        assert "Accept-Post" not in preflight.headers
    async with http.options(f"{strict.url}/api/nothing-here", headers={"Origin": PORTAL}) as r:
        assert r.status == 404
    # the actual request: the page may read the answer and its Location
    async with http.post(
        f"{strict.url}{whep}",
        data=await recvonly_offer(),
        headers=auth(lesson["whep_token"], Origin=PORTAL, **{"Content-Type": "application/sdp"}),
    ) as answer:
        assert answer.status == 201
        assert answer.headers["Access-Control-Allow-Origin"] == PORTAL
        assert "Location" in answer.headers["Access-Control-Expose-Headers"]
        assert "Origin" in answer.headers["Vary"]
        location = answer.headers["Location"]
    async with http.delete(f"{strict.url}{location}", headers=auth(lesson["whep_token"])) as gone:
        assert gone.status == 200
    # errors are readable too, so the page can say what went wrong
    async with http.post(f"{strict.url}{whep}", data="v=0", headers={"Origin": PORTAL}) as refused:
        assert refused.status == 401
        assert refused.headers["Access-Control-Allow-Origin"] == PORTAL
    async with http.get(
        f"{strict.url}/api/lessons/{lesson['id']}", headers=auth(lesson["whep_token"], Origin=EVIL)
    ) as other:
        assert other.status == 200
        assert "Access-Control-Allow-Origin" not in other.headers


PORTAL_PAGE = """<!doctype html><title>portal</title><p>a school portal</p>"""

JOIN_FROM_PAGE = """
async ([url, token]) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: {'Authorization': `Bearer ${token}`, 'Content-Type': 'application/sdp'},
      body: pc.localDescription.sdp,
    });
    const location = response.headers.get('Location');
    if (location) {
      await fetch(new URL(location, url), {
        method: 'DELETE', headers: {'Authorization': `Bearer ${token}`}});
    }
    return {status: response.status, location};
  } catch (error) {
    return {error: String(error)};
  } finally {
    pc.close();
  }
}
"""


async def test_a_page_on_a_listed_origin_joins_and_others_cannot(
    strict: Server, server: Server, portal_port: int
) -> None:
    """In Chromium: a portal page on another origin posts a WHEP offer and reads the answer's
    Location when its origin is listed; the same page is refused by a server that does not
    list it."""
    app = web.Application()

    async def portal(request: web.Request) -> web.Response:
        return web.Response(text=PORTAL_PAGE, content_type="text/html")

    app.router.add_get("/", portal)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", portal_port).start()
    lesson = strict.create_lesson("Portal page")
    closed = server.create_lesson("Closed")
    try:
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                page = await open_page(browser, f"http://127.0.0.1:{portal_port}/")
                joined = await page.evaluate(
                    JOIN_FROM_PAGE, [lesson["whep_url"], lesson["whep_token"]]
                )
                assert joined["status"] == 201, joined
                assert joined["location"].startswith(f"/whep/{lesson['id']}/")
                refused = await page.evaluate(
                    JOIN_FROM_PAGE, [closed["whep_url"], closed["whep_token"]]
                )
                assert "error" in refused, refused  # the browser withholds the answer
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


# --- rate limits ---------------------------------------------------------------------------


async def test_lesson_creation_is_limited_per_address(strict: Server) -> None:
    before = len(strict.request("GET", "/api/lessons", token=strict.teacher_key)[1]["lessons"])
    statuses = []
    async with from_address("127.0.0.2") as school:
        for _ in range(6):
            async with await create(school, strict) as response:
                statuses.append(response.status)
                if response.status == 429:
                    body = await response.json()
                    assert body["error"] == "rate_limited" and body["message"]
                    assert int(response.headers["Retry-After"]) >= 1
    assert statuses == [201] * 3 + [429] * 3
    after = len(strict.request("GET", "/api/lessons", token=strict.teacher_key)[1]["lessons"])
    assert after == before + 3  # a refused request creates nothing
    async with from_address("127.0.0.5") as elsewhere, await create(elsewhere, strict) as response:
        assert response.status == 201  # another address is not affected


async def test_offers_are_limited_per_address(strict: Server) -> None:
    async with from_address("127.0.0.3") as school:
        async with await create(school, strict) as created:
            lesson = await created.json()
        offer = await sendonly_offer()
        statuses = []
        for url, token in [(lesson["whip_url"], lesson["whip_token"])] * 2 + [
            (lesson["whep_url"], lesson["whep_token"])
        ] * 2:
            async with school.post(
                url, data=offer, headers=auth(token, **{"Content-Type": "application/sdp"})
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert response.headers["Retry-After"]
                    assert (await response.json())["error"] == "rate_limited"
        assert statuses == [201, 201, 429, 429]  # the second publication replaced the first
    assert strict.status()["sessions"] <= 1


async def test_event_messages_are_limited_then_the_socket_closed(strict: Server) -> None:
    async with from_address("127.0.0.4") as school:
        async with await create(school, strict) as created:
            lesson = await created.json()
        url = strict.url.replace("http", "ws", 1) + f"/api/lessons/{lesson['id']}/events"
        async with school.ws_connect(f"{url}?token={lesson['whep_token']}&name=Room") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "lesson"
            replies = []
            for _ in range(40):
                await ws.send_json({"type": "ping"})
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                replies.append(json.loads(msg.data))
            kinds = [r.get("error", r["type"]) for r in replies if r["type"] != "lesson"]
            assert kinds[:5] == ["pong"] * 5
            assert kinds[5:] == ["rate_limited"] * (len(kinds) - 5) and len(kinds) > 10
            assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4429


async def test_a_school_behind_one_address_is_not_limited(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """30 classrooms of one school join within seconds and report their quality: with the
    default limits nothing is refused."""
    lesson = server.create_lesson("Whole school", max_classrooms=30)
    offers = [await recvonly_offer() for _ in range(30)]

    async def join(i: int) -> tuple[int, str | None]:
        async with http.post(
            f"{lesson['whep_url']}?name=Room-{i}",
            data=offers[i],
            headers=auth(lesson["whep_token"], **{"Content-Type": "application/sdp"}),
        ) as response:
            return response.status, response.headers.get("Location")

    joined = await asyncio.gather(*(join(i) for i in range(30)))
    assert [status for status, _ in joined] == [201] * 30
    url = server.url.replace("http", "ws", 1) + f"/api/lessons/{lesson['id']}/events"
    sockets = [
        await http.ws_connect(f"{url}?token={lesson['whep_token']}&name=Room-{i}")
        for i in range(30)
    ]
    for ws in sockets:
        for _ in range(5):
            await ws.send_json({"type": "ping"})
    for ws in sockets:
        replies = []
        while len([r for r in replies if r["type"] != "lesson"]) < 5:
            replies.append(await ws.receive_json(timeout=5))
        assert not [r for r in replies if r["type"] == "error"], replies
        await ws.close()
    for _, location in joined:
        await http.delete(f"{server.url}{location}", headers=auth(lesson["whep_token"]))


# --- sizes ---------------------------------------------------------------------------------


async def test_json_bodies_are_limited_and_validated(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/lessons"
    headers = auth(server.teacher_key, **{"Content-Type": "application/json"})
    cases = {
        json.dumps({"title": "x" * 20000}): (413, "body_too_large"),
        "[" * 5000 + "]" * 5000: (400, "malformed_json"),  # deeper than Python's parser goes
        '{"title": "x", "max_classrooms": 1' + "0" * 5000 + "}": (400, "malformed_json"),
        '{"title": "\xff"}': (400, "malformed_json"),
        '{"title": "x", "max_classrooms": 1e999}': (400, "bad_max_classrooms"),
        '{"title": "x", "max_classrooms": NaN}': (400, "bad_max_classrooms"),
        "[]": (400, "malformed_json"),
        "": (400, "malformed_json"),
    }
    before = len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"])
    for body, (status, code) in cases.items():
        data = body.encode("latin-1") if "\xff" in body else body.encode()
        async with http.post(url, data=data, headers=headers) as response:
            assert response.status == status, (body[:60], await response.text())
            assert response.content_type == "application/json"
            assert (await response.json())["error"] == code
    after = len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"])
    assert after == before


async def test_an_offer_arriving_in_pieces_is_read_whole(server: Server) -> None:
    """Over a slow link a body comes in several TCP segments; the server reads all of them."""
    lesson = server.create_lesson("Slow link")
    offer = (await recvonly_offer()).encode()
    path = lesson["whep_url"].removeprefix(server.url)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path}?name=Far HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/sdp\r\n"
        f"Authorization: Bearer {lesson['whep_token']}\r\nContent-Length: {len(offer)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    writer.write(head + offer[: len(offer) // 3])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.write(offer[len(offer) // 3 :])
    await writer.drain()
    answer = (await reader.read()).decode()
    writer.close()
    assert answer.startswith("HTTP/1.1 201"), answer[:300]
    location = next(
        line.split(": ", 1)[1] for line in answer.split("\r\n") if line.startswith("Location:")
    )
    status, _ = server.request("DELETE", location, token=lesson["whep_token"])
    assert status == 200


async def test_an_oversized_event_message_closes_the_socket(
    server: Server, http: aiohttp.ClientSession
) -> None:
    lesson = server.create_lesson("Big message")
    url = server.url.replace("http", "ws", 1) + f"/api/lessons/{lesson['id']}/events"
    async with http.ws_connect(f"{url}?token={lesson['whep_token']}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "lesson"
        await ws.send_str(json.dumps({"type": "chat", "text": "x" * 5000}))
        while (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    # the lesson and its events go on for everybody else
    async with http.ws_connect(f"{url}?token={lesson['whep_token']}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "lesson"
