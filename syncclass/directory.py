"""The lesson directory in Redis: this server registers itself (its address, region, whether
it is an edge, its load) and each lesson it holds as origin, with a heartbeat whose keys
expire when it stops beating, and reads the others' entries.

Keys (every one under ``syncclass:``):

- ``server:<id>``: JSON of the server's entry, expiring ``TTL_S`` after its last beat;
- ``servers``: a set of the ids that have registered (an id whose key expired is dropped
  from it by whoever reads it);
- ``lesson:<id>``: the id of the server holding the lesson, expiring as the server's key.

Redis being down never stops the server: what it hosts goes on, a lookup raises
`DirectoryUnavailable` (the caller answers 503 or serves at home), the failure is logged once
and the beat goes on trying; when Redis answers again everything is registered again (a
restarted Redis without persistence comes back empty)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from signaling.contracts import DirectoryUnavailable, LessonState, LessonStore, ServerEntry

logger = logging.getLogger(__name__)

PREFIX = "syncclass:"
BEAT_S = 2.0
TTL_S = 6  # three beats: an entry outlives one missed beat, not a dead server for long
OPERATION_TIMEOUT_S = 1.0  # a Redis that does not answer costs a request at most this
MAX_SERVERS = 1000  # read at most this many entries: a bounded reply whatever is in Redis
MAX_ENTRY_BYTES = 4096


def server_id_of(url: str) -> str:
    """A server's id in the directory: its address's host and port."""
    parts = urlsplit(url)
    return parts.netloc


class RedisDirectory:
    """`Directory` on a Redis server; ``load`` counts this server's live sessions."""

    def __init__(
        self,
        redis_url: str,
        server_url: str,
        store: LessonStore,
        load: Callable[[], int],
        *,
        region: str | None = None,
        edge: bool = False,
        beat_s: float = BEAT_S,
    ) -> None:
        # imported here: a server without --redis needs no Redis client installed
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=OPERATION_TIMEOUT_S,
            socket_connect_timeout=OPERATION_TIMEOUT_S,
            decode_responses=True,
        )
        self._url = server_url
        self._id = server_id_of(server_url)
        self._store = store
        self._load = load
        self._region = region
        self._edge = edge
        self._beat_s = beat_s
        self._registered: set[str] = set()  # lesson ids whose keys this server wrote
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.available = False
        self._failed = False  # logged as down, and not yet seen back

    @property
    def me(self) -> ServerEntry:
        return ServerEntry(self._id, self._url, self._region, self._edge, self._load())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="directory beat")

    def changed(self) -> None:
        self._wake.set()

    async def home_of(self, lesson_id: str) -> ServerEntry | None:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                found = await self._redis.get(f"{PREFIX}lesson:{lesson_id}")
                if found is None:
                    return None
                home = str(found)
                if home == self._id:
                    return self.me
                raw = await self._redis.get(f"{PREFIX}server:{home}")
        except Exception as exc:
            self._down(exc)
            raise DirectoryUnavailable(str(exc)) from None
        return _entry(raw)

    async def servers(self) -> list[ServerEntry]:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                members = await self._redis.srandmember(f"{PREFIX}servers", MAX_SERVERS)
                ids = [str(member) for member in members] if isinstance(members, list) else []
                raws = await self._redis.mget([f"{PREFIX}server:{i}" for i in ids]) if ids else []
                gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
                if gone:
                    await self._redis.srem(f"{PREFIX}servers", *gone)
        except Exception as exc:
            self._down(exc)
            raise DirectoryUnavailable(str(exc)) from None
        entries = [_entry(raw) for raw in raws]
        found = [entry for entry in entries if entry is not None]
        # this server as of now, not as of its last beat
        return [self.me if entry.id == self._id else entry for entry in found]

    async def _beat(self) -> None:
        while True:
            try:
                await self._register()
                if self._failed:
                    logger.info("lesson directory: Redis answers again; this server is registered")
                elif not self.available:
                    logger.info(
                        "lesson directory: registered as %s (%s%s%s)",
                        self._id,
                        self._url,
                        f", region {self._region}" if self._region else "",
                        ", edge" if self._edge else "",
                    )
                self.available, self._failed = True, False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._down(exc)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._beat_s)
            except TimeoutError:
                pass

    def _down(self, exc: BaseException) -> None:
        self.available = False
        if not self._failed:
            self._failed = True
            logger.warning(
                "lesson directory: Redis cannot be reached (%s): this server goes on with the "
                "lessons it holds, and tries again every %.0f s",
                type(exc).__name__ if not str(exc) else exc,
                self._beat_s,
            )

    async def _register(self) -> None:
        lessons = await asyncio.to_thread(self._hosted)
        entry = json.dumps(
            {
                "url": self._url,
                "region": self._region,
                "edge": self._edge,
                "load": self._load(),
            }
        )
        gone = self._registered - lessons
        async with asyncio.timeout(OPERATION_TIMEOUT_S * 2):
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(f"{PREFIX}server:{self._id}", entry, ex=TTL_S)
            pipe.sadd(f"{PREFIX}servers", self._id)
            for lesson_id in lessons:
                pipe.set(f"{PREFIX}lesson:{lesson_id}", self._id, ex=TTL_S)
            for lesson_id in gone:
                pipe.delete(f"{PREFIX}lesson:{lesson_id}")
            await pipe.execute()
        self._registered = lessons

    def _hosted(self) -> set[str]:
        """The lessons this server holds as origin: not ended, not relayed from another."""
        return {
            lesson.id
            for lesson in self._store.list()
            if lesson.state is not LessonState.ENDED
            and (lesson.source is None or lesson.source.kind != "whep")
        }

    async def close(self) -> None:
        """Stop beating and take this server's keys out, so it is not chosen any more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(f"{PREFIX}server:{self._id}")
                pipe.srem(f"{PREFIX}servers", self._id)
                for lesson_id in self._registered:
                    pipe.delete(f"{PREFIX}lesson:{lesson_id}")
                await pipe.execute()
            logger.info("lesson directory: %s left it", self._id)
        except Exception as exc:
            logger.warning("lesson directory: could not leave it (%s); its keys expire", exc)
        finally:
            await self._redis.aclose()


def _entry(raw: Any) -> ServerEntry | None:
    """A server's entry as Redis holds it; anything malformed counts as no entry."""
    if not isinstance(raw, str) or len(raw) > MAX_ENTRY_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    url, region, edge, load = (
        data.get("url"),
        data.get("region"),
        data.get("edge"),
        data.get("load"),
    )
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if region is not None and not isinstance(region, str):
        return None
    if not isinstance(edge, bool) or not isinstance(load, int) or isinstance(load, bool):
        return None
    return ServerEntry(server_id_of(url), url, region, edge, max(load, 0))
