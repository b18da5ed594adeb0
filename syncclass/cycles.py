"""Giving back the memory of closed peer connections, in small steps.

aiortc's peer connection is a web of reference cycles (transceivers and their sender and
receiver, the DTLS and ICE transports, bound methods kept as callbacks), about 1,500 objects
each, a thousand of them the buckets of a rate counter. Reference counting never frees it:
only a full collection does, and Python runs one only when the objects that outlived two
collections have grown by a quarter. Left to that, 300 classrooms that came and went stay in
memory, and are then freed all at once in a pause of about 0.25 s that every classroom's
video and sound wait through.

So: the objects made while starting (modules, the app) are moved out of the collector's
sight (``gc.freeze``), and a full collection runs as soon as a few peer connections have
closed, or a little after even one has, each freeing a few of them in a few milliseconds.
The memory the C allocator then holds free is handed back to the system (``malloc_trim``,
off the event loop)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from media.peer import Peer

logger = logging.getLogger("syncclass")

CHECK_EVERY_S = 1.0
COLLECT_AFTER = 8  # closed peer connections that call for a collection at once
COLLECT_WITHIN_S = 10.0  # how long one closed peer connection may wait for its collection
SLOW_PAUSE_S = 0.05  # a collection that held the event loop longer is logged


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, where there is one."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class CycleCollector:
    """Runs full collections as peer connections close (see the module's text)."""

    def __init__(self, closed_total: Callable[[], int] = lambda: Peer.shut_total) -> None:
        self._closed_total = closed_total
        self._collected_at = closed_total()  # the count at the last collection
        self._waiting_since: float | None = None  # when the first uncollected one closed
        self._trim = _malloc_trim()
        self.collections = 0
        self.longest_pause_s = 0.0

    def due(self, now: float) -> bool:
        waiting = self._closed_total() - self._collected_at
        if waiting <= 0:
            self._waiting_since = None
            return False
        if self._waiting_since is None:
            self._waiting_since = now
        return waiting >= COLLECT_AFTER or now - self._waiting_since >= COLLECT_WITHIN_S

    async def collect(self) -> None:
        self._collected_at = self._closed_total()
        self._waiting_since = None
        began = time.perf_counter()
        found = gc.collect()
        pause = time.perf_counter() - began
        self.collections += 1
        self.longest_pause_s = max(self.longest_pause_s, pause)
        if pause > SLOW_PAUSE_S:
            logger.info("a collection freed %d objects in %.0f ms", found, pause * 1000)
        if self._trim is not None:
            await asyncio.to_thread(self._trim)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            if self.due(time.monotonic()):
                await self.collect()


async def collect_cycles(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: freeze what starting made, then collect as peers close."""
    gc.collect()
    gc.freeze()
    collector = CycleCollector()
    task = asyncio.get_running_loop().create_task(collector.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gc.unfreeze()
