"""Tokens and keys never reach the server's log: not from the access log (which prints every
request, including the ``?token=`` of page links, media URLs and WebSockets), not from the
server's own lines. The keys appear once, in the start-up banner that hands them to the
operator, and nowhere else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.server import start_server
from tests.support.peers import post_offer, whep_subscribe

from .credentials import add_teacher, admin_key, create_lesson, sdp_offer, tamper


def _fragments(secret: str) -> set[str]:
    """The secret, and the parts of it that would give it away if logged cut short."""
    parts = {secret, secret[:16], secret[-16:]}
    if "." in secret:
        parts.add(secret.rpartition(".")[2])
    return parts


async def test_no_token_or_key_is_ever_logged(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        admin = admin_key(server)
        key = await asyncio.to_thread(add_teacher, server, "wu")
        lesson = await asyncio.to_thread(create_lesson, server, key, "Secrets")
        lid, origin, classroom = lesson["id"], lesson["whip_token"], lesson["whep_token"]
        base = server.url
        async with aiohttp.ClientSession() as http:

            async def get(path: str, credential: str | None = None) -> int:
                headers = {"Authorization": f"Bearer {credential}"} if credential else {}
                async with http.get(base + path, headers=headers) as response:
                    await response.read()
                    return response.status

            # page links, as browsers open them, and a parameter name spelled in escapes
            assert await get(f"/lessons/{lid}/join?token={classroom}") == 200
            assert await get(f"/lessons/{lid}/teach?token={origin}&lang=zh") == 200
            assert await get(f"/lessons/{lid}/join?%74oken={classroom}") == 200
            # the API with header and query credentials, good and bad
            assert await get(f"/api/lessons/{lid}", classroom) == 200
            assert await get(f"/api/lessons/{lid}", tamper(classroom)) == 401
            assert await get(f"/api/recordings/{lid}?token={origin}") == 404  # none yet
            assert await get(f"/recordings/{lid}/camera.webm?token={key}") == 404
            assert await get(f"/recordings/{lid}/camera.webm?TOKEN={tamper(origin)}") == 404
            assert await get("/api/teachers", admin) == 200
            assert await get("/api/status", server.teacher_key) == 403
            assert await get("/api/status", admin) == 200
            assert await get("/api/lessons", f"{key}x") == 401
            # events sockets with the token in the query, the header, the first message
            ws_base = base.replace("http", "ws", 1) + f"/api/lessons/{lid}/events"
            async with http.ws_connect(f"{ws_base}?token={origin}") as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "lesson"
            async with http.ws_connect(
                ws_base, headers={"Authorization": f"Bearer {classroom}"}
            ) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "lesson"
            async with http.ws_connect(ws_base) as ws:
                await ws.send_json({"type": "auth", "token": tamper(origin)})
                assert (await ws.receive_json(timeout=5))["error"] == "invalid_token"
            # media: a classroom joins; a tampered offer is refused
            room = await whep_subscribe(lesson["whep_url"], classroom, name="Room 9")
            await room.wait_connected()
            refused = await post_offer(
                lesson["whep_url"], tamper(classroom), await sdp_offer("receive")
            )
            assert refused.status == 401
            await room.close()
        status, relinked = await asyncio.to_thread(
            server.request, "POST", f"/api/lessons/{lid}/rotate", token=origin
        )
        assert status == 200
        status, _ = await asyncio.to_thread(
            server.request, "POST", f"/api/lessons/{lid}/end", token=key
        )
        assert status == 200
    finally:
        server.stop()

    log = server.log()
    lines = log.splitlines()
    banner = [line for line in lines if line.startswith("syncclass: ")]
    rest = "\n".join(line for line in lines if line not in banner)
    secrets = {
        "teacher key": server.teacher_key,
        "admin key": admin,
        "account key": key,
        "origin token": origin,
        "classroom token": classroom,
        "replaced-by token": relinked["whep_token"],
        "tampered token": tamper(origin),
    }
    for what, secret in secrets.items():
        for fragment in _fragments(secret):
            assert fragment not in rest, f"the {what} is in the log"
    for what, secret in secrets.items():
        if what not in ("teacher key", "admin key"):
            assert secret not in log, f"the {what} is in the banner"
    assert sum(server.teacher_key in line for line in banner) == 1
    assert sum(admin in line for line in banner) == 1  # made on this first start
    again = start_server(tmp_path)  # the same data directory: the admin key is not shown again
    try:
        assert admin not in again.log()
    finally:
        again.stop()
    # the access log is on, and shows where a credential was, not what it was
    assert f'"GET /lessons/{lid}/join?token=[redacted]" 200' in rest
    assert f'"GET /lessons/{lid}/teach?token=[redacted]&lang=zh" 200' in rest
    assert f'"GET /recordings/{lid}/camera.webm?TOKEN=[redacted]" 404' in rest
    assert rest.count(f"GET /lessons/{lid}/join?token=[redacted]") == 2
