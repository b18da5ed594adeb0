"""The recorder of a server: which lessons are being recorded, making recordings playable,
recovering the ones a crash interrupted, and deleting them when asked or when too old."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from media.router import Router

from .catalog import UNFINISHED, Recording, RecordingCatalog, RecordingState
from .layout import LOCK, RecordingsRoot, parse_log_name
from .lesson_capture import LessonCapture
from .live_index import LiveIndex
from .live_source import LiveSource
from .log_writer import LogWriter
from .remux_process import Follower, RemuxFailed, remux_once

logger = logging.getLogger(__name__)

DEFAULT_MIN_FREE_BYTES = 1_000_000_000
RETENTION_CHECK_S = 3600.0
FOLLOW_FINISH_TIMEOUT_S = 60.0
REMUX_TIMEOUT_S = 3600.0
PARALLEL_REMUXES = 2


# why a recording stopped before its lesson ended: what was recorded is kept, and playable
INCOMPLETE = ("low_disk_space", "disk_full", "write_failed")


class RecordingBusy(Exception):
    """The recording is being made or finalised; it cannot be deleted now."""


@dataclass
class _Live:
    capture: LessonCapture
    follower: Follower | None = None
    starting: asyncio.Task[None] | None = None
    readable: dict[str, LiveSource] = field(default_factory=dict)  # by source


class Recorder:
    def __init__(
        self,
        directory: Path,
        catalog: RecordingCatalog,
        lesson_over: Callable[[str], bool],
        *,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        retain_days: float | None = None,
        notify: Callable[[Recording], None] | None = None,
        clock: Callable[[], float] = time.time,
        on_disk_full: Callable[[], bool] | None = None,
    ) -> None:
        self.root = RecordingsRoot(directory)
        # called when a write finds the disk full; True if it made room (a reserve given back)
        self._on_disk_full = on_disk_full or (lambda: False)
        self._catalog = catalog
        self._lesson_over = lesson_over
        self._min_free_bytes = min_free_bytes
        self._retain_s = None if retain_days is None else retain_days * 86400
        self._notify = notify
        self._clock = clock
        self._writer = LogWriter()
        self._live: dict[str, _Live] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._remuxes = asyncio.Semaphore(PARALLEL_REMUXES)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # life cycle

    async def start(self) -> None:
        """Finalise what a crash left unfinished; start the retention sweep."""
        self.root.path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root.path).free
        if free < self._min_free_bytes:
            logger.warning(
                "only %d MB free on the disk of %s: lessons are not recorded until %d MB are "
                "(--record-min-free-mb)",
                free // 1_000_000,
                self.root.path,
                self._min_free_bytes // 1_000_000,
            )
        for recording in self._catalog.list():
            if recording.state in UNFINISHED:
                logger.info("lesson %s: recovering its recording", recording.lesson_id)
                self._save(replace(recording, state=RecordingState.FINALIZING))
                self._spawn(self._finalise(recording.lesson_id, None))
            elif self._lesson_over(recording.lesson_id):
                self._spawn(self._drop_logs(recording.lesson_id))
        if self._retain_s is not None:
            self._spawn(self._sweep_forever())

    async def close(self) -> None:
        """Stop capturing (what was recorded stays, to be recovered at the next start)."""
        self._closed = True
        for lesson_id in list(self._live):
            live = self._live.pop(lesson_id)
            await self._close_readable(live)
            await self._stop_capture(live)
            if live.follower is not None:
                await live.follower.abandon()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._writer.close)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lock(self, lesson_id: str) -> asyncio.Lock:
        return self._locks.setdefault(lesson_id, asyncio.Lock())

    # the lesson's events

    def lesson_live(self, lesson_id: str, router: Router) -> None:
        """The origin publishes into ``router``: record the lesson (again, after a restart), if
        not already."""
        if self._closed or lesson_id in self._live:
            return
        capture = LessonCapture(
            lesson_id,
            self.root.directory(lesson_id),
            router,
            self._writer,
            self._min_free_bytes,
            self._capture_stopped,
            self._on_disk_full,
        )
        live = self._live[lesson_id] = _Live(capture)
        existing = self._catalog.get(lesson_id)
        recording = Recording(
            lesson_id,
            RecordingState.RECORDING,
            started_at=existing.started_at if existing else self._clock(),
            public=existing.public if existing else False,
            details=existing.details if existing else {},
            size_bytes=existing.size_bytes if existing else 0,
        )
        self._save(recording)
        live.starting = self._spawn(self._start_capture(lesson_id, live))
        logger.info("lesson %s: recording", lesson_id)

    async def _start_capture(self, lesson_id: str, live: _Live) -> None:
        try:
            async with self._lock(lesson_id):  # a recovery may still be reading the logs
                await live.capture.start()
        except OSError as exc:
            logger.error("lesson %s: cannot record: %s", lesson_id, exc)
            if self._live.get(lesson_id) is live:  # not a newer capture started meanwhile
                del self._live[lesson_id]
            self._update(lesson_id, state=RecordingState.FAILED, error="cannot_write")
            return
        if live.capture.stopped_reason is None and self._live.get(lesson_id) is live:
            try:
                live.follower = await Follower.start(live.capture.directory)
            except OSError as exc:  # the files are then made in one go after the lesson
                logger.error("lesson %s: cannot start remuxing: %s", lesson_id, exc)

    def _capture_stopped(self, capture: LessonCapture, reason: str) -> None:
        # told once, in the log and to whoever follows the lesson (the teacher's page)
        logger.warning("lesson %s: recording stopped (%s)", capture.lesson_id, reason)
        self._update(capture.lesson_id, state=RecordingState.STOPPED, error=reason)

    def lesson_ended(self, lesson_id: str) -> None:
        """The lesson ended: make its recording playable."""
        live = self._live.pop(lesson_id, None)
        recording = self._catalog.get(lesson_id)
        if live is None and recording is None:
            return
        if live is None and recording is not None and recording.state not in UNFINISHED:
            self._spawn(self._drop_logs(lesson_id))
            return
        if live is not None:
            self._update(
                lesson_id, state=RecordingState.FINALIZING, size_bytes=live.capture.bytes_written
            )
        else:
            self._update(lesson_id, state=RecordingState.FINALIZING)
        self._spawn(self._finalise(lesson_id, live))

    async def live_source(self, lesson_id: str, source: str) -> LiveSource | None:
        """``source`` of a lesson being recorded, readable while it grows; None when it is
        not being written (not live, not recorded, not started yet, or remuxed only at the
        end)."""
        live = self._live.get(lesson_id)
        if live is None or live.follower is None:
            return None
        readable = live.readable.get(source)
        if readable is None or readable.closed:
            index = await asyncio.to_thread(LiveIndex.open, live.capture.directory, source)
            if index is None:
                return None
            if self._live.get(lesson_id) is not live:  # ended meanwhile
                await asyncio.to_thread(index.close)
                return None
            readable = live.readable.get(source)
            if readable is None or readable.closed:
                readable = live.readable[source] = LiveSource(lesson_id, source, index)
            else:
                await asyncio.to_thread(index.close)  # another request opened it meanwhile
        await readable.update()
        return None if readable.closed or readable.index.header is None else readable

    @staticmethod
    async def _close_readable(live: _Live) -> None:
        for readable in live.readable.values():
            await readable.close()
        live.readable.clear()

    async def _stop_capture(self, live: _Live) -> None:
        if live.starting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await live.starting
        await live.capture.stop()

    async def _finalise(self, lesson_id: str, live: _Live | None) -> None:
        directory = self.root.directory(lesson_id)
        result: dict[str, Any] | None = None
        error: str | None = None
        if live is not None:
            await self._close_readable(live)
            await self._stop_capture(live)
            if live.follower is not None:
                try:
                    async with asyncio.timeout(FOLLOW_FINISH_TIMEOUT_S):
                        result = await live.follower.finish()
                except (RemuxFailed, TimeoutError) as exc:
                    logger.warning(
                        "lesson %s: following remux failed (%s); remuxing again", lesson_id, exc
                    )
                if result is not None and result.get("late_tracks"):
                    # a track began after its file was started: the one-go remux includes it
                    logger.info(
                        "lesson %s: %s started late; remuxing again",
                        lesson_id,
                        ", ".join(result["late_tracks"]),
                    )
                    result = None
        async with self._lock(lesson_id):
            if lesson_id in self._live:
                return  # recording again (the teacher came back after a restart)
            if result is None:
                if not directory.is_dir():
                    error = "no_media"
                else:
                    result, error = await self._remux(lesson_id, directory)
                    if error == "disk_full" and self._on_disk_full():
                        result, error = await self._remux(lesson_id, directory)
            self._finished(lesson_id, result, error)
        if result is not None and self._lesson_over(lesson_id):
            await self._drop_logs(lesson_id)

    async def _remux(
        self, lesson_id: str, directory: Path
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Make the recording's files from its packet logs: the result, or why not."""
        try:
            async with self._remuxes, asyncio.timeout(REMUX_TIMEOUT_S):
                return await remux_once(directory), None
        except (RemuxFailed, TimeoutError, OSError) as exc:
            logger.error("lesson %s: finalising the recording failed: %s", lesson_id, exc)
            if isinstance(exc, RemuxFailed) and exc.no_media:
                return None, "no_media"
            if await asyncio.to_thread(_no_room, directory):
                return None, "disk_full"
            return None, "finalize_failed"

    def _finished(self, lesson_id: str, result: dict[str, Any] | None, error: str | None) -> None:
        recording = self._catalog.get(lesson_id)
        if recording is None:
            return  # deleted meanwhile
        if result is None and error == "disk_full":
            # the packet logs are kept whole: the next start finalises them, given room
            logger.error(
                "lesson %s: no room on the disk to finalise the recording; it is kept and "
                "finalised at the next start",
                lesson_id,
            )
            self._save(replace(recording, state=RecordingState.STOPPED, error=error))
            return
        if result is None:
            self._save(replace(recording, state=RecordingState.FAILED, error=error))
            return
        kept_error = recording.error if recording.error in INCOMPLETE else None
        self._save(
            replace(
                recording,
                state=RecordingState.READY,
                ended_at=self._clock(),
                duration_s=result.get("duration_s"),
                size_bytes=int(result.get("size_bytes") or 0),
                details={
                    k: result.get(k) for k in ("main", "files", "thumbnail", "chapters", "warnings")
                },
                error=kept_error,
            )
        )
        logger.info(
            "lesson %s: recording ready, %.1f s, %.1f MB (finalised in %.2f s)",
            lesson_id,
            result.get("duration_s") or 0,
            (result.get("size_bytes") or 0) / 1e6,
            result.get("finalize_s") or 0,
        )

    async def _drop_logs(self, lesson_id: str) -> None:
        """The lesson is over and its files are made: the packet logs are no longer needed."""
        async with self._lock(lesson_id):
            if lesson_id in self._live:
                return
            await asyncio.to_thread(_remove_logs, self.root, lesson_id)

    # catalog

    def _save(self, recording: Recording) -> None:
        self._catalog.put(recording)
        if self._notify is not None:
            try:
                self._notify(recording)
            except Exception:
                logger.exception("lesson %s: recording notification failed", recording.lesson_id)

    def _update(self, lesson_id: str, **changes: Any) -> None:
        recording = self._catalog.get(lesson_id)
        if recording is not None:
            self._save(replace(recording, **changes))

    def get(self, lesson_id: str) -> Recording | None:
        recording = self._catalog.get(lesson_id)
        live = self._live.get(lesson_id)
        if recording is not None and live is not None:
            recording = replace(recording, size_bytes=live.capture.bytes_written)
        return recording

    def list(self) -> list[Recording]:
        return [r for r in (self.get(r.lesson_id) for r in self._catalog.list()) if r is not None]

    def set_public(
        self, lesson_id: str, public: bool | None = None, public_stage: bool | None = None
    ) -> Recording | None:
        """Who may watch it without a link: ``public`` the teacher's camera, sound and
        courseware; ``public_stage`` the stage file too, which only a public recording can
        have (making it private makes the stage private as well)."""
        recording = self._catalog.get(lesson_id)
        if recording is None:
            return None
        public = recording.public if public is None else public
        public_stage = recording.public_stage if public_stage is None else public_stage
        self._save(replace(recording, public=public, public_stage=public and public_stage))
        return self.get(lesson_id)

    def file(self, lesson_id: str, name: str) -> Path | None:
        """A file of the recording that may be served, if it exists."""
        recording = self._catalog.get(lesson_id)
        if recording is None:
            return None
        names = {f.get("name") for f in recording.details.get("files") or []}
        names.add(recording.details.get("thumbnail"))
        if name not in names:
            return None
        return self.root.servable(lesson_id, name)

    async def delete(self, lesson_id: str) -> bool:
        """Delete the recording's files and entry; False if there was none."""
        recording = self._catalog.get(lesson_id)
        if recording is None:
            return False
        if lesson_id in self._live or recording.state in (
            RecordingState.RECORDING,
            RecordingState.FINALIZING,
        ):
            raise RecordingBusy(f"the recording of lesson {lesson_id} is {recording.state.value}")
        async with self._lock(lesson_id):
            await asyncio.to_thread(shutil.rmtree, self.root.directory(lesson_id), True)
            self._catalog.delete(lesson_id)
        logger.info("lesson %s: recording deleted", lesson_id)
        return True

    # retention

    async def _sweep_forever(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(RETENTION_CHECK_S)

    async def sweep(self) -> int:
        """Delete finished recordings older than the retention period; how many went."""
        if self._retain_s is None:
            return 0
        limit = self._clock() - self._retain_s
        deleted = 0
        for recording in self._catalog.list():
            if recording.state in UNFINISHED or recording.lesson_id in self._live:
                continue
            if (recording.ended_at or recording.started_at) < limit:
                with contextlib.suppress(RecordingBusy):
                    if await self.delete(recording.lesson_id):
                        deleted += 1
        if deleted:
            logger.info("retention: %d recording(s) older than the limit deleted", deleted)
        return deleted


def _remove_logs(root: RecordingsRoot, lesson_id: str) -> None:
    for path in root.logs(lesson_id):
        path.unlink(missing_ok=True)
    directory = root.directory(lesson_id)
    (directory / LOCK).unlink(missing_ok=True)


def _no_room(directory: Path) -> bool:
    """Whether the disk lacks the room to make the recording's files from its packet logs
    (they come out about as large as the logs)."""
    try:
        logs = sum(p.stat().st_size for p in directory.iterdir() if parse_log_name(p.name))
        return shutil.disk_usage(directory).free < logs
    except OSError:
        return True
