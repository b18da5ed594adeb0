"""The lesson events WebSocket: ``/api/lessons/{id}/events``, one socket per participant.

The token comes as a Bearer header, as ``?token=`` (browsers cannot set headers on a
WebSocket) or as the first message ``{"type": "auth", "token": ...}``. The server sends
``{"type": "lesson", ...}`` on connect and on every change, and ``{"type": "ended"}`` before
it closes the socket of an ended lesson. A client may send ``{"type": "ping"}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .auth import credential_of, grant_of
from .contracts import LessonState, Role
from .errors import http_error
from .keys import AUTHORITY, EVENTS, STORE

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 20.0
ROLES = {Role.ORIGIN, Role.CLASSROOM}
# Close codes 4000-4999 are the application's; 4000 + the HTTP status it stands for.
_CLOSE_UNAUTHORIZED = 4401


def _check(request: web.Request, lesson_id: str, token: str) -> None:
    """Raise the HTTP error a bad token gets (401/403); the teacher key is always good."""
    if not request.app[AUTHORITY].is_teacher_key(token):
        grant_of(request, token, lesson_id, ROLES)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": code, "message": message}


def _parse(data: str) -> dict[str, Any] | tuple[str, str]:
    """The message as a JSON object, or an error code and what is wrong with it."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return "malformed_json", "the message is not valid JSON"
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "bad_message", 'a message must be a JSON object with a string "type"'
    return message


async def _refuse(socket: web.WebSocketResponse, code: str, message: str, close: int) -> bool:
    await socket.send_json(_error(code, message))
    await socket.close(code=close, message=b"unauthorized")
    return False


async def _authenticate(
    request: web.Request, socket: web.WebSocketResponse, lesson_id: str
) -> bool:
    """Read the first message as ``{"type": "auth", "token": ...}``; close on anything else."""
    try:
        msg = await socket.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        await socket.close(code=_CLOSE_UNAUTHORIZED, message=b"no token")
        return False
    if msg.type is not WSMsgType.TEXT:
        await socket.close(code=_CLOSE_UNAUTHORIZED, message=b"no token")
        return False
    message = _parse(msg.data)
    if isinstance(message, tuple):
        return await _refuse(socket, "unauthorized", message[1], _CLOSE_UNAUTHORIZED)
    token = message.get("token")
    if message["type"] != "auth" or not isinstance(token, str):
        expected = 'the first message must be {"type": "auth", "token": ...}'
        return await _refuse(socket, "unauthorized", expected, _CLOSE_UNAUTHORIZED)
    try:
        _check(request, lesson_id, token)
    except web.HTTPException as exc:
        body = json.loads(exc.text or "{}")
        return await _refuse(
            socket, body.get("error", "unauthorized"), body.get("message", ""), 4000 + exc.status
        )
    return True


def _reply(message: dict[str, Any]) -> dict[str, Any]:
    if message["type"] == "ping":
        return {"type": "pong"}
    return _error("unknown_type", f"unknown message type {message['type'][:40]!r}")


async def lesson_events(request: web.Request) -> web.StreamResponse:
    lesson_id = request.match_info["lesson_id"]
    token = credential_of(request)
    if token is not None:
        _check(request, lesson_id, token)  # before the upgrade, so a bad token gets a 4xx
    if request.app[STORE].get(lesson_id) is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    await socket.prepare(request)
    if token is None and not await _authenticate(request, socket, lesson_id):
        return socket
    events = request.app[EVENTS]
    snapshot = events.snapshot(lesson_id)
    if snapshot is None or not events.add(lesson_id, socket):
        await socket.close(code=WSCloseCode.GOING_AWAY)
        return socket
    try:
        await socket.send_json(snapshot)
        if snapshot["state"] == LessonState.ENDED.value:
            await socket.send_json({"type": "ended"})
            await socket.close(code=WSCloseCode.OK, message=b"lesson ended")
            return socket
        async for msg in socket:
            if msg.type is WSMsgType.ERROR:  # e.g. a message over the size limit: closed
                break
            if msg.type is WSMsgType.TEXT:
                parsed = _parse(msg.data)
                reply = _reply(parsed) if isinstance(parsed, dict) else _error(*parsed)
            else:
                reply = _error("bad_message", "only JSON text messages are understood")
            await socket.send_json(reply)
    except ConnectionError:
        pass  # the client went away mid-reply
    finally:
        events.discard(lesson_id, socket)
    return socket


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/lessons/{lesson_id}/events", lesson_events)
