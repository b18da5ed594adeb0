"""The web pages: the home page, the teacher's lesson view and the classroom view."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def home(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def teach(request: web.Request) -> web.StreamResponse:
    return _page("teach.html")


async def join(request: web.Request) -> web.StreamResponse:
    return _page("join.html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/lessons/{lesson_id}/teach", teach)
    app.router.add_get("/lessons/{lesson_id}/join", join)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
