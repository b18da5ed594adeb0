"""The network check's endpoint: ``POST /api/check`` takes an SDP offer with one data channel
and answers it with a diagnostic peer (media/probe.py) on the lessons' own ports.

It needs no credential (the school's IT person may have no lesson link), so it is bounded:
offers count against the media rate limit per address, at most ``MAX_PROBES`` checks run at
once on the server (a 503 with ``Retry-After`` beyond), and each ends by itself.
"""

from __future__ import annotations

import logging

from aiohttp import web

from media.offer import OfferError
from media.probe import LIFETIME_S, Probe

from .errors import http_error
from .keys import LESSONS
from .whip import read_offer

logger = logging.getLogger(__name__)

MAX_PROBES = 8
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


async def _close_probes(app: web.Application) -> None:
    probes: set[Probe] = app[PROBES]
    for probe in probes.copy():
        await probe.close()


def add_routes(app: web.Application) -> None:
    app[PROBES] = set()
    app.router.add_post("/api/check", check_post)
    app.on_shutdown.append(_close_probes)
