"""Capture of one lesson: a sink per origin track, flushed to its packet log twice a second."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from media.router import Router

from . import log_writer
from .layout import SIDECAR, TRACKS, log_name
from .log_writer import LogWriter
from .packet_log import LogFile
from .track_sink import TrackSink

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
FSYNC_EVERY = 2  # flushes: what a kill -9 can lose is one flush interval, a power cut ~1 s


class LessonCapture:
    """Owns the sinks and log files of one lesson while it is live."""

    def __init__(
        self,
        lesson_id: str,
        directory: Path,
        router: Router,
        writer: LogWriter,
        min_free_bytes: int,
        on_stopped: Callable[[LessonCapture, str], None],
        on_disk_full: Callable[[], bool] = lambda: False,
    ) -> None:
        self.lesson_id = lesson_id
        self.directory = directory
        self.router = router
        self.stopped_reason: str | None = None  # why it stopped before the lesson ended
        self._writer = writer
        self._min_free_bytes = min_free_bytes
        self._on_stopped = on_stopped
        self._on_disk_full = on_disk_full  # makes room for the database to say so
        self._sinks = [TrackSink(source, kind) for source, kind in TRACKS]
        self._logs: list[LogFile] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return sum(log.size for log in self._logs)

    @property
    def packets(self) -> int:
        return sum(sink.packets for sink in self._sinks)

    async def start(self) -> None:
        """Attach to the lesson's producers, then open (or reopen, after a restart) the logs.

        The sinks are attached first and keep what arrives in memory until the logs are
        open: the lesson's first keyframe must not go by while the disk is being prepared,
        or the recording would start only at the next one."""
        for sink in self._sinks:
            self.router.add_consumer(sink)
        try:
            free = await self._writer.run(_prepare, self.directory, self.lesson_id)
            if free < self._min_free_bytes:
                self._detach()
                self._stop_early("low_disk_space", free)
                return
            paths = [self.directory / log_name(s.source, s.kind) for s in self._sinks]
            self._logs = await self._writer.run(log_writer.open_logs, paths)
        except BaseException:
            self._detach()
            raise
        if self._closed:  # the lesson ended while the files were being opened
            await self._writer.run(log_writer.close_logs, self._logs)
            return
        self._task = asyncio.create_task(self._run(), name=f"recording-{self.lesson_id}")

    async def _run(self) -> None:
        flushes = 0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            flushes += 1
            try:
                free = await self._flush(fsync=flushes % FSYNC_EVERY == 0)
                if free >= self._min_free_bytes:
                    continue
                # stop while there is still room: what is on disk stays whole
                self._detach()
                await self._flush(fsync=True)
            except OSError as exc:
                logger.error("lesson %s: writing the recording failed: %s", self.lesson_id, exc)
                self._detach()
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                if full:
                    self._on_disk_full()
                self._stop_early("disk_full" if full else "write_failed", None)
                return
            self._stop_early("low_disk_space", free)
            return

    async def _flush(self, fsync: bool) -> int:
        batches = []
        for sink, log in zip(self._sinks, self._logs, strict=True):
            sink.sample_sender_report()
            batches.append((log, sink.take()))
        return await self._writer.run(log_writer.append, batches, fsync, self.directory)

    def _detach(self) -> None:
        for sink in self._sinks:
            self.router.remove_consumer(sink)

    def _stop_early(self, reason: str, free: int | None) -> None:
        self.stopped_reason = reason
        if free is not None:
            logger.warning(
                "lesson %s: recording stopped, only %d MB left on the disk (minimum %d MB); "
                "what was recorded is kept",
                self.lesson_id,
                free // 1_000_000,
                self._min_free_bytes // 1_000_000,
            )
        self._on_stopped(self, reason)

    async def stop(self) -> None:
        """Detach, write what is still buffered, and close the logs."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._detach()
        if self._logs:
            try:
                await self._flush(fsync=True)
            except OSError as exc:
                logger.error(
                    "lesson %s: last write of the recording failed: %s", self.lesson_id, exc
                )
            await self._writer.run(log_writer.close_logs, self._logs)


def _prepare(directory: Path, lesson_id: str) -> int:
    """Create the directory and its sidecar (kept from an earlier run); return free bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    sidecar = directory / SIDECAR
    if not sidecar.exists():
        info = {"format": 1, "lesson_id": lesson_id, "started_at": time.time()}
        tmp = sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(sidecar)
    return shutil.disk_usage(directory).free
