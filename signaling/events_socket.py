"""The lesson events WebSocket: ``/api/lessons/{id}/events``, one socket per participant.

The token comes as a Bearer header, as ``?token=`` (browsers cannot set headers on a
WebSocket) or as the first message ``{"type": "auth", "token": ...}``. The server sends
``{"type": "lesson", ...}`` on connect and on every change, and ``{"type": "ended"}`` before
it closes the socket of an ended lesson. A classroom says its name as ``?name=`` (or in the auth
message) to take part: raise its hand, chat, report its quality. The messages are in
docs/interaction.md and handled by ``signaling.interaction``.

A token given with the request is checked before the upgrade, so a bad one gets the 4xx JSON
of the other routes; a socket that brings its token as the first message must send it within
``AUTH_TIMEOUT_S``. How many sockets may be open is in ``signaling.event_socket_limits``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from . import interaction
from .auth import credential_of, fixed_name, grant_of, key_manages
from .classrooms import classroom_name, valid_client
from .contracts import LessonState, Role
from .errors import http_error
from .event_socket_limits import EVENT_SOCKET_LIMITS, PER_ADDRESS, EventSocketLimits, Place
from .events_hub import TEACHER, Participant
from .interaction import error as _error
from .json_answers import dumps
from .keys import LESSONS, STORE
from .rate_limits import CLOSE_RATE_LIMITED, client_of, message_gate

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
# a client that did not give its token with the request says it at once; waiting longer only
# lets anonymous sockets pile up
AUTH_TIMEOUT_S = 2.0
HEARTBEAT_S = 20.0
ROLES = {Role.ORIGIN, Role.CLASSROOM}
# Close codes 4000-4999 are the application's; 4000 + the HTTP status it stands for.
_CLOSE_UNAUTHORIZED = 4401


def _check(
    request: web.Request, lesson_id: str, token: str, name: object, client: object
) -> Participant:
    """Who the token makes the caller; raise the HTTP error a bad token or name gets (4xx).
    The key of the lesson's teacher (or the admin's) is always good."""
    if key_manages(request, token, lesson_id):
        return TEACHER
    # an ended lesson's own tokens still open the socket, to be told at once that it ended
    # (and let go): the clear answer for a page that comes back late
    grant = grant_of(request, token, lesson_id, ROLES, after_end=ROLES)
    if grant.role is Role.ORIGIN:
        return TEACHER
    name = fixed_name(grant) or name
    if name is None or name == "":
        return Participant(Role.CLASSROOM)
    # the name is taken at its word here; what it may do is checked against the classroom's
    # WHEP session (same client id) when it acts (signaling.interaction)
    if client is not None and not (isinstance(client, str) and valid_client(client)):
        raise http_error(400, "bad_client", "client must be 8 to 64 letters, digits, - or _")
    return Participant(Role.CLASSROOM, classroom_name(name), client)


def _parse(data: str) -> dict[str, Any] | tuple[str, str]:
    """The message as a JSON object, or an error code and what is wrong with it."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return "malformed_json", "the message is not valid JSON"
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "bad_message", 'a message must be a JSON object with a string "type"'
    return message


async def _refuse(socket: web.WebSocketResponse, code: str, message: str, close: int) -> None:
    await socket.send_json(_error(code, message), dumps=dumps)
    await socket.close(code=close, message=code.encode()[:100])


async def _authenticate(
    request: web.Request, socket: web.WebSocketResponse, lesson_id: str
) -> Participant | None:
    """Read the first message as ``{"type": "auth", "token": ..., "name": ...}``; close on
    anything else."""
    try:
        msg = await socket.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        await socket.close(code=_CLOSE_UNAUTHORIZED, message=b"no token")
        return None
    if msg.type is not WSMsgType.TEXT:
        await socket.close(code=_CLOSE_UNAUTHORIZED, message=b"no token")
        return None
    message = _parse(msg.data)
    if isinstance(message, tuple):
        return await _refuse(socket, "unauthorized", message[1], _CLOSE_UNAUTHORIZED)
    token = message.get("token")
    if message["type"] != "auth" or not isinstance(token, str):
        expected = 'the first message must be {"type": "auth", "token": ...}'
        return await _refuse(socket, "unauthorized", expected, _CLOSE_UNAUTHORIZED)
    try:
        return _check(request, lesson_id, token, message.get("name"), message.get("client"))
    except web.HTTPException as exc:
        body = json.loads(exc.text or "{}")
        return await _refuse(
            socket, body.get("error", "unauthorized"), body.get("message", ""), 4000 + exc.status
        )


def _kind(participant: Participant | None) -> str:
    if participant is None:
        return "pending"
    return "teacher" if participant.is_teacher else "classroom"


async def lesson_events(request: web.Request) -> web.StreamResponse:
    lesson_id = request.match_info["lesson_id"]
    token = credential_of(request)
    participant: Participant | None = None
    if token is not None:
        # before the upgrade, so a bad token gets a 4xx
        participant = _check(
            request, lesson_id, token, request.query.get("name"), request.query.get("client")
        )
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    limits = request.app[EVENT_SOCKET_LIMITS]
    # before the upgrade too: a refusal is a 429 or 503, and no socket is held for it
    place = limits.admit(lesson_id, client_of(request), _kind(participant), lesson.max_classrooms)
    try:
        return await _serve(request, lesson_id, participant, limits, place)
    finally:
        limits.release(place)


async def _serve(
    request: web.Request,
    lesson_id: str,
    participant: Participant | None,
    limits: EventSocketLimits,
    place: Place,
) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    await socket.prepare(request)
    if participant is None:
        participant = await _authenticate(request, socket, lesson_id)
        if participant is None:
            return socket
        lesson = request.app[STORE].get(lesson_id)
        try:
            limits.settle(place, _kind(participant), lesson.max_classrooms if lesson else 0)
        except web.HTTPException as exc:
            body = json.loads(exc.text or "{}")
            await _refuse(
                socket,
                body.get("error", "sockets_full"),
                body.get("message", ""),
                4000 + exc.status,
            )
            return socket
    events = request.app[LESSONS].events
    snapshot = events.snapshot(lesson_id, participant)
    if snapshot is None or not events.add(lesson_id, socket, participant):
        await socket.close(code=WSCloseCode.GOING_AWAY)
        return socket
    try:
        await socket.send_json(snapshot, dumps=dumps)
        if snapshot["state"] == LessonState.ENDED.value:
            await socket.send_json({"type": "ended"}, dumps=dumps)
            await socket.close(code=WSCloseCode.OK, message=b"lesson ended")
            return socket
        gate = message_gate(request)
        async for msg in socket:
            if msg.type is WSMsgType.ERROR:  # e.g. a message over the size limit: closed
                break
            refusal = gate.refusal()
            if refusal is not None:
                await socket.send_json(refusal, dumps=dumps)
                if gate.exhausted:
                    await socket.close(code=CLOSE_RATE_LIMITED, message=b"too many messages")
                    break
                continue
            if msg.type is WSMsgType.TEXT:
                parsed = _parse(msg.data)
                if isinstance(parsed, dict):
                    reply = _handle(request, lesson_id, participant, parsed)
                else:
                    reply = _error(*parsed)
            else:
                reply = _error("bad_message", "only JSON text messages are understood")
            if reply is not None:
                await socket.send_json(reply, dumps=dumps)
    except ConnectionError:
        pass  # the client went away mid-reply
    finally:
        events.discard(lesson_id, socket)
        live = request.app[LESSONS].get(lesson_id)
        if live is not None and participant.name is not None and not participant.is_teacher:
            # a page that rewound and went away is not held back on its next visit
            live.rewinding(participant.name, False)
    return socket


def _handle(
    request: web.Request, lesson_id: str, participant: Participant, message: dict[str, Any]
) -> dict[str, Any] | None:
    """One message's effect; a failure of the server's own (its database, say) is logged and
    answered, and the socket stays open."""
    try:
        return interaction.handle(request.app, lesson_id, participant, message)
    except Exception:
        logger.exception("lesson %s: handling a %r message failed", lesson_id, message["type"])
        return _error("server_error", "the server could not handle this message")


def add_routes(app: web.Application, per_address: int = PER_ADDRESS) -> None:
    """The events route; ``per_address``: classroom sockets one client address may hold."""
    app[EVENT_SOCKET_LIMITS] = EventSocketLimits(per_address)
    app.router.add_get("/api/lessons/{lesson_id}/events", lesson_events)
