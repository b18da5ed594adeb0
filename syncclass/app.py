"""Wires the parts into one aiohttp application: store, tokens, SFU, HTTP routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from media.network import SAME_AS_UDP, NetworkConfig
from media.rtmp_server import RtmpServer
from signaling import (
    accounts_api,
    audit_api,
    catch_up_api,
    check_api,
    cluster,
    courses_api,
    events_socket,
    lessons_api,
    reports_api,
    whip,
)
from signaling.cluster_credentials import ClusterCredentials
from signaling.cors import setup_cors
from signaling.errors import setup_json_errors
from signaling.keys import (
    ACCOUNTS,
    AUDIT,
    AUTHORITY,
    COURSES,
    JOURNAL,
    LESSONS,
    RTMP,
    STORE,
    TURN,
)
from signaling.lesson_clock import TIMES, TimetableTimes, keep_time
from signaling.live_lessons import LiveLessons
from signaling.quality import QualityMonitor
from signaling.rate_limits import Rate, RateLimits, setup_rate_limits
from signaling.rtmp_ingest import RtmpIngest
from signaling.timetable import local_zone
from signaling.turn_credentials import TurnCredentials
from signaling.vouched_tokens import VouchedTokens

from . import metrics, pages, status
from .accounts import SqliteAccounts
from .audit import SqliteAuditLog
from .config import Config
from .courses import SqliteCourses
from .cycles import collect_cycles
from .disk_reserve import DISK_RESERVE, RESERVE_FILE, DiskReserve
from .journal import SqliteLessonJournal
from .open_files import watch_open_files
from .recorder_wiring import setup_recording
from .secret_box import SecretBox
from .security_headers import setup_security_headers
from .store import DATABASE_FILE, SqliteLessonStore
from .tokens import (
    TokenAuthority,
    load_or_create_admin_key,
    load_or_create_secret,
    load_or_create_teacher_key,
)

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
QUALITY = web.AppKey("quality_monitor", QualityMonitor)


def teacher_key(config: Config) -> tuple[str, bool]:
    """The configured teacher key, else the one kept in the data directory (made once)."""
    if config.teacher_key:
        return config.teacher_key, False
    return load_or_create_teacher_key(config.data_dir)


def admin_key(config: Config) -> tuple[str, bool]:
    """The configured admin key, else the one kept in the data directory (made once)."""
    if config.admin_key:
        return config.admin_key, False
    return load_or_create_admin_key(config.data_dir)


def _rate(limit: tuple[int, float] | None) -> Rate | None:
    return None if limit is None else Rate(*limit)


def create_app(config: Config) -> web.Application:
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key, _ = teacher_key(config)
    admin, _ = admin_key(config)
    if admin == key:
        raise ValueError("the admin key and the teacher key must differ")
    app = web.Application(client_max_size=1024 * 1024)
    setup_json_errors(app)
    setup_security_headers(app)
    setup_cors(app, frozenset(config.cors_origins))  # before the limits: preflights are free
    setup_rate_limits(
        app,
        RateLimits(
            _rate(config.rate_limit_lessons),
            _rate(config.rate_limit_media),
            _rate(config.rate_limit_messages),
        ),
    )
    app[CONFIG] = config
    reserve = DiskReserve(data_dir / RESERVE_FILE, config.disk_reserve_mb * 1_000_000)
    reserve.keep()
    app[DISK_RESERVE] = reserve
    server_secret = load_or_create_secret(data_dir)
    store = SqliteLessonStore(
        data_dir / DATABASE_FILE, on_full=reserve.release, secrets_box=SecretBox(server_secret)
    )
    app[STORE] = store
    app[COURSES] = SqliteCourses(store)
    app[TIMES] = TimetableTimes(
        config.timezone or local_zone().key, config.join_early_s, config.end_grace_s
    )
    app[AUTHORITY] = TokenAuthority(server_secret, config.token_ttl_s)
    if config.redis_url is not None:
        # several servers: classrooms' tokens of other servers' lessons, once vouched for
        app[AUTHORITY] = VouchedTokens(app[AUTHORITY])
    app[ACCOUNTS] = SqliteAccounts(store, key, admin)
    if config.turn_urls and config.turn_secret:
        app[TURN] = TurnCredentials(config.turn_urls, config.turn_secret)
    app[AUDIT] = SqliteAuditLog(store)
    journal = SqliteLessonJournal(store)
    journal.close_open_visits()  # cut short by a stop or a crash
    app[JOURNAL] = journal
    network = NetworkConfig(
        bind=config.ice_bind,
        announce=config.ice_announce,
        ports=config.ice_ports,
        shared_port=None if config.ice_ports is not None else config.ice_port,
        tcp_port=_tcp_port(config),
        consent_timeout_s=config.ice_consent_timeout_s,
        transport_cc=config.transport_cc,
        adapt_to_links=not config.no_adaptation,
        made_layers=config.made_layer,
        made_layer_idle_s=config.made_layer_idle_s,
    )
    app[LESSONS] = LiveLessons(
        store, journal, network, config.max_on_stage, config.connect_timeout_s
    )
    if config.rtmp_port is not None:
        ingest = RtmpIngest(store, app[AUTHORITY], app[LESSONS])
        app[RTMP] = RtmpServer(config.host, config.rtmp_port, ingest.authorize)
    app[QUALITY] = QualityMonitor(app)
    if config.redis_url is not None:
        _join_directory(app, config, store)
    app[lessons_api.DEFAULT_MAX_CLASSROOMS] = config.max_classrooms
    lessons_api.add_routes(app)
    courses_api.add_routes(app)
    accounts_api.add_routes(app)
    audit_api.add_routes(app)
    whip.add_routes(app)
    check_api.add_routes(app)
    events_socket.add_routes(app, config.event_sockets_per_address)
    catch_up_api.add_routes(app, config.catch_up_per_address)
    reports_api.add_routes(app)
    metrics.add_routes(app, config.metrics_lesson_ids)
    status.add_routes(app)
    pages.add_routes(app)
    setup_recording(app, config, data_dir)
    app.on_startup.append(_open_media_ports)
    app.on_startup.append(_start_quality)
    app.on_startup.append(_resume_pulls)
    app.on_startup.append(_open_rtmp)
    app.on_shutdown.append(_stop_quality)

    async def journal_retention(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(
            journal.keep_retention(config.attendance_retain_days)
        )
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(journal_retention)
    app.cleanup_ctx.append(watch_open_files)
    app.cleanup_ctx.append(collect_cycles)
    app.cleanup_ctx.append(keep_time)
    app.on_shutdown.append(_close_rtmp)
    app.on_shutdown.append(_close_lessons)
    app.on_cleanup.append(_close_store)
    return app


def _join_directory(app: web.Application, config: Config, store: SqliteLessonStore) -> None:
    """With --redis: this server in the lesson directory, and the joins it sends elsewhere."""
    from .directory import RedisDirectory  # needs the redis client, only installed for this

    assert config.redis_url and config.server_url and config.cluster_secret
    lessons = app[LESSONS]
    directory = RedisDirectory(
        config.redis_url,
        config.server_url,
        store,
        lessons.sessions,
        region=config.region,
        edge=config.edge,
    )
    authority = app[AUTHORITY]
    assert isinstance(authority, VouchedTokens)
    app[cluster.CLUSTER] = cluster.Cluster(
        directory,
        ClusterCredentials(config.cluster_secret),
        authority,
        edge=config.edge,
        spill_load=config.spill_load,
    )
    cluster.add_routes(app)

    async def in_directory(app: web.Application) -> AsyncIterator[None]:
        directory.start()
        yield
        # out of the directory first, so that no classroom is sent here while it stops
        await directory.close()
        await app[cluster.CLUSTER].close()

    app.cleanup_ctx.append(in_directory)


def _tcp_port(config: Config) -> int | None:
    """ICE-TCP's port: on the shared UDP port's number unless told otherwise; with a UDP port
    per peer, only where a number is given."""
    if config.ice_tcp_port == SAME_AS_UDP and config.ice_ports is not None:
        return None
    return config.ice_tcp_port


class MediaPortError(Exception):
    """A port for media cannot be opened (in use, or not this machine's address)."""


async def _open_media_ports(app: web.Application) -> None:
    network = app[LESSONS].network
    try:
        await network.open()
    except OSError as exc:
        shared, tcp = network.shared, network.tcp
        if shared is not None and not shared.opened():
            port, kind = shared.port, "UDP"
        else:
            port, kind = (tcp.port if tcp is not None else 0), "TCP"
        raise MediaPortError(f"cannot open {kind} port {port} for media: {exc.strerror}") from exc


async def _open_rtmp(app: web.Application) -> None:
    rtmp = app.get(RTMP)
    if rtmp is not None:
        try:
            await rtmp.open()
        except OSError as exc:
            raise MediaPortError(
                f"cannot open TCP port {rtmp.port} for RTMP: {exc.strerror}"
            ) from exc


async def _close_rtmp(app: web.Application) -> None:
    rtmp = app.get(RTMP)
    if rtmp is not None:
        await rtmp.close()


async def _resume_pulls(app: web.Application) -> None:
    await app[LESSONS].resume_pulls()


async def _start_quality(app: web.Application) -> None:
    app[QUALITY].start()


async def _stop_quality(app: web.Application) -> None:
    await app[QUALITY].stop()


async def _close_lessons(app: web.Application) -> None:
    await app[LESSONS].close()


async def _close_store(app: web.Application) -> None:
    app[STORE].close()
