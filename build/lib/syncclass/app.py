"""Wires the parts into one aiohttp application: store, tokens, SFU, HTTP routes."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from media.network import NetworkConfig
from media.sfu import Sfu
from signaling import events, lessons_api, whip
from signaling.keys import AUTHORITY, EVENTS, SESSIONS, SFU, STORE
from signaling.lesson_events import LessonEvents
from signaling.sessions import Sessions

from . import pages, status
from .config import Config
from .recording import setup_recording
from .store import SqliteLessonStore
from .tokens import TokenAuthority, load_or_create_secret, load_or_create_teacher_key

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)


def teacher_key(config: Config) -> tuple[str, bool]:
    """The configured teacher key, else the one kept in the data directory (made once)."""
    if config.teacher_key:
        return config.teacher_key, False
    return load_or_create_teacher_key(config.data_dir)


def create_app(config: Config) -> web.Application:
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key, _ = teacher_key(config)
    app = web.Application(client_max_size=1024 * 1024)
    app[CONFIG] = config
    app[STORE] = SqliteLessonStore(data_dir / "syncclass.db")
    app[AUTHORITY] = TokenAuthority(load_or_create_secret(data_dir), key, config.token_ttl_s)
    app[SFU] = Sfu(
        NetworkConfig(bind=config.ice_bind, announce=config.ice_announce, ports=config.ice_ports)
    )
    app[SESSIONS] = Sessions()
    app[EVENTS] = LessonEvents(app[STORE], app[SESSIONS])
    app[lessons_api.DEFAULT_MAX_CLASSROOMS] = config.max_classrooms
    lessons_api.add_routes(app)
    whip.add_routes(app)
    events.add_routes(app)
    status.add_routes(app)
    pages.add_routes(app)
    setup_recording(app, config, data_dir)
    app.on_shutdown.append(_close_events)
    app.on_shutdown.append(_close_media)
    app.on_cleanup.append(_close_store)
    return app


async def _close_events(app: web.Application) -> None:
    await app[EVENTS].close()


async def _close_media(app: web.Application) -> None:
    sfu = app[SFU]
    if sfu.routers:
        logger.info("closing %d lesson(s)", len(sfu.routers))
    await sfu.close()


async def _close_store(app: web.Application) -> None:
    app[STORE].close()
