"""The thread that writes every recording's packet logs, so the event loop never waits on disk."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .packet_log import LogFile
from .track_sink import Pending, serialise

T = TypeVar("T")


class LogWriter:
    """One writer thread shared by all recordings: appends are sequential on disk anyway, and
    serialising a batch costs a few microseconds per packet."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder-writer")

    async def run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def open_logs(paths: list[Path]) -> list[LogFile]:
    return [LogFile(path) for path in paths]


def append(batches: list[tuple[LogFile, list[Pending]]], fsync: bool, directory: Path) -> int:
    """Write each batch to its log (and fsync them if asked); return the free bytes left."""
    for log, pending in batches:
        if pending:
            log.write(serialise(pending))
    if fsync:
        for log, _ in batches:
            log.sync()
    return shutil.disk_usage(directory).free


def close_logs(logs: list[LogFile]) -> None:
    for log in logs:
        try:
            log.sync()
        finally:
            log.close()
