"""The network check's endpoints: ``POST /api/check`` takes an SDP offer with one data channel
and answers it with a diagnostic peer (media/probe.py) on the lessons' own ports; ``GET
/api/check`` gives the page the TURN servers to try the relay with, if any are configured.

They need no credential (the school's IT person may have no lesson link), so they are
bounded: both count against the media rate limit per address, at most ``MAX_PROBES`` checks
run at once on the server (a 503 with ``Retry-After`` beyond), each ends by itself, and a
TURN credential handed out here lasts ``CHECK_TURN_S`` (coturn relays only to the media
server: it is a way to this server's ports, nothing more).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from media.offer import OfferError
from media.probe import LIFETIME_S, Probe

from .errors import http_error
from .json_answers import json_response
from .keys import LESSONS, TURN
from .whip import read_offer

logger = logging.getLogger(__name__)

MAX_PROBES = 8
CHECK_TURN_S = 120  # a check's TURN credential expires this long after it was handed out
CHECK_SECTIONS = {"application": 1}
PROBES: web.AppKey[set[Probe]] = web.AppKey("network_probes")


async def check_post(request: web.Request) -> web.Response:
    probes: set[Probe] = request.app[PROBES]
    offer = await read_offer(request, CHECK_SECTIONS)
    if len(probes) >= MAX_PROBES:
        raise http_error(
            503,
            "busy",
            "the server is running as many network checks as it will at once; try again soon",
            {"Retry-After": str(int(LIFETIME_S))},
        )
    probe = Probe(request.app[LESSONS].network, probes.discard)
    probes.add(probe)
    try:
        answer = await probe.negotiate(offer)
    except OfferError as exc:
        await probe.close()
        raise http_error(400, exc.code, str(exc)) from exc
    except Exception:
        await probe.close()
        logger.exception("network check: negotiation failed")
        raise http_error(
            500, "negotiation_failed", "the server could not answer this offer"
        ) from None
    return web.Response(status=201, text=answer, content_type="application/sdp")


async def check_get(request: web.Request) -> web.Response:
    turn = request.app.get(TURN)
    servers = []
    if turn is not None:
        servers.append(turn.mint("check", "check", time.time() + CHECK_TURN_S).ice_server())
    return json_response({"ice_servers": servers})


async def _close_probes(app: web.Application) -> None:
    probes: set[Probe] = app[PROBES]
    for probe in probes.copy():
        await probe.close()


def add_routes(app: web.Application) -> None:
    app[PROBES] = set()
    app.router.add_post("/api/check", check_post)
    app.router.add_get("/api/check", check_get)
    app.on_shutdown.append(_close_probes)
