"""Cross-origin access to the API and WHIP/WHEP: none by default, granted to listed origins.

The server's own pages are on its own origin and need no grant. An operator who lets a page
on another site publish or play (a school portal with a WHEP player, say) lists that site's
origin. An ``OPTIONS`` request on a WHIP/WHEP endpoint is answered ``204`` with
``Accept-Post: application/sdp`` whatever its origin (RFC 9725); only a listed origin also
gets the CORS headers that let its page read the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

CORS_ORIGINS = web.AppKey("cors_origins", frozenset)

_SCOPE = ("/api/", "/whip/", "/whep/")
_REQUEST_HEADERS = "Authorization, Content-Type, If-Match"
# what a page may read from an answer: a WHIP/WHEP session's URL above all
_EXPOSED_HEADERS = "Location, Link, ETag, Retry-After, WWW-Authenticate"
_MAX_AGE_S = "600"


def _in_scope(request: web.Request) -> bool:
    return request.path.startswith(_SCOPE)


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin in request.app.get(CORS_ORIGINS, frozenset()):
        return origin
    return None


def preflight(request: web.Request, allowed_methods: set[str]) -> web.Response:
    """The answer to ``OPTIONS``: the methods allowed, and for a listed origin the CORS grant."""
    methods = ", ".join(sorted(allowed_methods | {"OPTIONS"}))
    headers = {hdrs.ALLOW: methods}
    if "POST" in allowed_methods and request.path.startswith(("/whip/", "/whep/")):
        headers["Accept-Post"] = "application/sdp"
    origin = _allowed_origin(request)
    if origin is not None:
        headers.update(
            {
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: methods,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _REQUEST_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: _MAX_AGE_S,
            }
        )
    return web.Response(status=204, headers=headers)


@web.middleware
async def answer_options(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer ``OPTIONS`` (CORS preflights among them) on the API and WHIP/WHEP routes."""
    if request.method == hdrs.METH_OPTIONS and _in_scope(request):
        error = request.match_info.http_exception
        if isinstance(error, web.HTTPMethodNotAllowed):  # the route exists, OPTIONS is ours
            return preflight(request, set(error.allowed_methods))
    return await handler(request)


async def _grant(request: web.Request, response: web.StreamResponse) -> None:
    if not _in_scope(request) or not request.app.get(CORS_ORIGINS):
        return
    response.headers.add(hdrs.VARY, "Origin")  # the answer differs by origin
    origin = _allowed_origin(request)
    if origin is not None and hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSED_HEADERS


def setup_cors(app: web.Application, origins: frozenset[str]) -> None:
    app[CORS_ORIGINS] = origins
    app.middlewares.append(answer_options)
    app.on_response_prepare.append(_grant)
