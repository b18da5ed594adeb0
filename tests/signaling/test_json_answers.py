"""The API answers JSON as UTF-8 text, not ASCII-escaped: the README's ``curl`` example shows
a Chinese title as itself, and so do errors and the lesson's event socket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp

from tests.server import Server

TITLE = "三年级数学"
JSON_UTF8 = "application/json; charset=utf-8"


def _raw(
    server: Server, method: str, path: str, token: str, body: Any = None, **headers: str
) -> tuple[int, str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _plain(payload: bytes, *words: str) -> None:
    """``payload`` holds each word as UTF-8, and no ``\\u`` escape."""
    for word in words:
        assert word.encode() in payload, payload[:300]
    assert b"\\u" not in payload, payload[:300]


async def test_json_answers_are_utf8_not_ascii_escaped(server: Server) -> None:
    key = server.teacher_key
    status, kind, payload = _raw(server, "POST", "/api/lessons", key, {"title": TITLE})
    assert (status, kind) == (201, JSON_UTF8)
    _plain(payload, TITLE)
    lesson = json.loads(payload)
    assert lesson["title"] == TITLE

    for path in (f"/api/lessons/{lesson['id']}", "/api/lessons"):
        status, kind, payload = _raw(server, "GET", path, key)
        assert (status, kind) == (200, JSON_UTF8), path
        _plain(payload, TITLE)

    # errors too: what was wrong is quoted as it was sent
    status, kind, payload = _raw(
        server,
        "POST",
        f"/whip/{lesson['id']}?source=%E8%AF%BE%E4%BB%B6",  # 课件
        lesson["whip_token"],
        Content_Type="application/sdp",
    )
    assert (status, kind) == (400, JSON_UTF8)
    _plain(payload, "课件")
    assert json.loads(payload)["error"] == "bad_source"

    # and the lesson's event socket
    url = f"{server.url}/api/lessons/{lesson['id']}/events?token={lesson['whep_token']}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as socket:
        message = await socket.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.TEXT
        assert json.loads(message.data)["title"] == TITLE
        _plain(message.data.encode(), TITLE)
