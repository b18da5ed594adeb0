"""Security headers on every answer: what a browser may load into the pages, and what it must
not do with the answers (sniff their type, frame them, pass links on, keep them in a cache).

The pages hold no inline script or style, so their policy allows only this server's own
files, its event sockets and the cameras' streams. Join links carry tokens in their query,
so no answer lets the browser send its address on as a referrer.
"""

from __future__ import annotations

import re

from aiohttp import web

_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
# the answers that may carry tokens or keys (lesson links, WHIP/WHEP answers with ICE
# credentials, accounts) are never kept by a browser or a proxy
_PRIVATE = ("/api/", "/whip/", "/whep/")


def page_policy(host: str) -> str:
    """The Content-Security-Policy of a page served as ``host``; WebSocket URLs need naming
    in connect-src, as not every browser counts them as 'self'."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return _PAGE_POLICY.format(sockets=sockets)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if response.content_type == "text/html":
        headers.setdefault("Content-Security-Policy", page_policy(request.host))
    else:
        headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    if request.path.startswith(_PRIVATE):
        headers.setdefault("Cache-Control", "no-store")


def setup_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)
