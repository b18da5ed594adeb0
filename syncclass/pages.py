"""The web pages: the home page, the teacher's lesson view, the classroom view (of one lesson,
or of a course: waiting for its next lesson and entering each by itself), the
recordings library's entry point, the operator's wall of live lessons, the lesson report
and the network check.
Plain HTML, CSS and ES modules from ``static/``."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from signaling.cluster import before_join

STATIC = Path(__file__).parent / "static"


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def home(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def teach(request: web.Request) -> web.StreamResponse:
    return _page("teach.html")


async def join(request: web.Request) -> web.StreamResponse:
    # with a lesson directory: sent to the server that should carry this classroom, or the
    # lesson relayed here from its home, before the page is given
    await before_join(request, request.match_info["lesson_id"], None)
    return _page("join.html")


async def room(request: web.Request) -> web.StreamResponse:
    return _page("room.html")


async def recordings(request: web.Request) -> web.StreamResponse:
    return _page("recordings.html")


async def live(request: web.Request) -> web.StreamResponse:
    return _page("live.html")


async def report(request: web.Request) -> web.StreamResponse:
    return _page("report.html")


async def check(request: web.Request) -> web.StreamResponse:
    return _page("check.html")


async def _revalidate_static(request: web.Request, response: web.StreamResponse) -> None:
    # the modules import each other, so a browser must never mix two releases of them: it
    # asks again each time (a 304 when nothing changed)
    if request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-cache"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/lessons/{lesson_id}/teach", teach)
    app.router.add_get("/lessons/{lesson_id}/join", join)
    app.router.add_get("/lessons/{lesson_id}/report", report)
    app.router.add_get("/courses/{course_id}/room", room)
    app.router.add_get("/recordings", recordings)
    app.router.add_get("/live", live)
    app.router.add_get("/check", check)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.on_response_prepare.append(_revalidate_static)
