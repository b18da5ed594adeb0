"""The process's open-file limit: raised to the most the system allows at start, and watched,
because at the limit every new connection fails (``Too many open files``) and uvloop, which
accepts them, logs nothing about it."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from collections.abc import AsyncIterator

from aiohttp import web

logger = logging.getLogger("syncclass")

WATCH_EVERY_S = 1.0  # so a warning comes at most once a second
NEAR = 0.9  # the share of the limit in use from which it is worth a warning


def raise_limit() -> int:
    """Raise the soft limit on open files to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def _open(soft: int) -> int | None:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError as exc:
        # the listing itself needs a file: failing for want of one says they are all in use
        return soft if exc.errno in (errno.EMFILE, errno.ENFILE) else None


async def _watch() -> None:
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        count = _open(soft)
        if count is not None and soft != resource.RLIM_INFINITY and count >= NEAR * soft:
            logger.warning(
                "%d of %d open files in use: new connections may fail (Too many open files)",
                count,
                soft,
            )


async def watch_open_files(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: warn, at most once a second, while the limit is nearly reached."""
    task = asyncio.get_running_loop().create_task(_watch())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
