"""One source of a live lesson as its readers get it: the header, then the fragments from a
starting point, then each new one as the recording grows.

All readers of a source share one look at the file (a few times a second, only while anyone
reads) and the bytes of its newest fragments, so a reader at the live edge costs a wake-up
and a socket write per fragment, not a disk read; a reader further back reads from the file
in large pieces, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from .fragments import BadFile
from .live_index import LiveIndex

logger = logging.getLogger(__name__)

POLL_S = 0.25
READ_BYTES = 1 << 20  # at most this much read from the file at a time, for one reader
KEEP_RECENT = 8  # newest fragments kept in memory for the readers at the live edge
KEEP_MAX_BYTES = 4 << 20  # a fragment larger than this is read from the file by each reader


class LiveSource:
    def __init__(self, lesson_id: str, source: str, index: LiveIndex) -> None:
        self.lesson_id = lesson_id
        self.source = source
        self.index = index
        self.readers = 0
        self.closed = False
        self._grown = asyncio.Event()
        self._looking = asyncio.Lock()  # one look at the file at a time: the index is not shared
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    # what a reader needs to know (signaling.recording_port.LiveRecording)

    @property
    def content_type(self) -> str:
        return self.index.content_type

    @property
    def codecs(self) -> str:
        return self.index.codecs

    @property
    def origin(self) -> float:
        return self.index.origin

    @property
    def starts_at(self) -> float | None:
        return self.index.starts_at

    @property
    def recorded_until(self) -> float | None:
        return self.index.recorded_until

    def start_for(self, at: float) -> tuple[int, float] | None:
        position = self.index.start_for(at)
        if position is None:
            return None
        return position, self.index.origin + self.index.fragments[position].time

    async def update(self) -> None:
        """Look at the file now (the poll does it while there are readers)."""
        try:
            async with self._looking:
                found = await asyncio.to_thread(self._look)
        except (OSError, BadFile) as exc:
            logger.warning(
                "lesson %s: reading the growing %s file failed: %s",
                self.lesson_id,
                self.source,
                exc,
            )
            self.closed = True  # its readers end with what they had
            self._wake()
            return
        if found or self.index.complete:
            self._wake()

    def _wake(self) -> None:
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    def _look(self) -> int:
        found = self.index.refresh()
        first = len(self.index.fragments) - len(found)
        for position, fragment in enumerate(found, first):
            if fragment.end - fragment.offset <= KEEP_MAX_BYTES:
                self._recent[position] = self.index.read(
                    fragment.offset, fragment.end - fragment.offset
                )
                while len(self._recent) > KEEP_RECENT:
                    self._recent.popitem(last=False)
        return len(found)

    async def chunks(self, start: int, until: float | None) -> AsyncIterator[bytes]:
        """The header, then the fragments from position ``start`` on, as they come, up to the
        first one that begins after the wall-clock time ``until`` (None: until the end)."""
        header = self.index.header
        if header is None or self.closed:
            return
        self.readers += 1
        if self._task is None and not self.index.complete:
            self._task = asyncio.create_task(
                self._poll(), name=f"catch-up-{self.lesson_id}-{self.source}"
            )
        try:
            yield header
            position = start
            fragments = self.index.fragments
            while True:
                while position < len(fragments):
                    if until is not None and self.index.origin + fragments[position].time > until:
                        return
                    data, position = await self._take(position, until)
                    yield data
                if self.index.complete or self.closed:
                    return
                await self._grown.wait()
        finally:
            self.readers -= 1
            if self.readers == 0:
                self._stop()
                if self.closed:
                    self.index.close()

    async def _take(self, position: int, until: float | None) -> tuple[bytes, int]:
        """Bytes from fragment ``position`` on: one kept fragment, or a piece of the file."""
        kept = self._recent.get(position)
        if kept is not None:
            return kept, position + 1
        fragments = self.index.fragments
        stop = position + 1
        origin = self.index.origin
        while (
            stop < len(fragments)
            and stop not in self._recent
            and fragments[stop].end - fragments[position].offset <= READ_BYTES
            and (until is None or origin + fragments[stop].time <= until)
        ):
            stop += 1
        offset = fragments[position].offset
        data = await asyncio.to_thread(self.index.read, offset, fragments[stop - 1].end - offset)
        return data, stop

    async def _poll(self) -> None:
        while not self.closed and not self.index.complete:
            await asyncio.sleep(POLL_S)
            await self.update()
        self._task = None

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """The lesson ended: readers get what is indexed and their streams end."""
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake()
        if self.readers == 0:
            self.index.close()
