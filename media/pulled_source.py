"""A source the server pulls from a camera (RTSP) instead of one a publisher sends: the same
producers as a WHIP publisher's, fed from a ``StreamReader`` thread, made again on every
reconnection (with back-off) while the camera comes and goes.

The camera cannot be asked for a keyframe or a retransmission: a classroom that joins waits
for the camera's next keyframe, and the producers' throttled requests end here."""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .camera_feed import Camera, CameraFeed
from .producer import Producer
from .reconnect import BACKOFF_FIRST_S, BACKOFF_MAX_S, Backoff
from .stream_reader import (
    RtpBatch,
    StreamError,
    StreamInfo,
    StreamReader,
)

logger = logging.getLogger(__name__)


class PullState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PullStatus:
    state: PullState
    error: str | None = None  # why the last attempt failed or ended, in words
    code: str | None = None  # the same as a short code (unauthorized, not_h264, …)
    retry_in_s: float | None = None  # while lost: when the next attempt starts


class PulledSource:
    """Made by ``Router.pull``, with the router's closures (as a ``Publisher``); ``on_state`` is
    told every change of state. ``close`` is its own end, ``router_closed`` the router's."""

    role = "pulled"

    def __init__(
        self,
        router_id: str,
        source: str,
        url: str,
        *,
        add_producer: Callable[[Producer], None],
        remove_producer: Callable[[Producer], None],
        released: Callable[[PulledSource], None],
        on_state: Callable[[PullStatus], None],
        timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (BACKOFF_FIRST_S, BACKOFF_MAX_S),
    ) -> None:
        self.router_id = router_id
        self.source = source
        self._url = url
        self._released = released
        self._on_state = on_state
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self.status = PullStatus(PullState.CONNECTING)
        self.camera = Camera()
        self.feed = CameraFeed(source, add_producer, remove_producer, self.camera)
        self.connections = 0  # streams opened so far
        self.closed = False
        self._reader: StreamReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_logged: str | None = None

    def __repr__(self) -> str:  # never the URL: it holds the camera's password
        return f"<PulledSource {self.router_id} {self.source} {self.status.state}>"

    def start(self) -> None:
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    # the connection, again and again

    async def _run(self) -> None:
        backoff = Backoff(*self._backoff_s)
        while not self.closed:
            self._set(PullStatus(PullState.CONNECTING, self.status.error, self.status.code))
            started = time.monotonic()
            error = await self._connect_once()
            self._drop_producers()
            if self.closed:
                return
            live = self.status.state is PullState.LIVE
            delay = backoff.after(time.monotonic() - started if live else 0.0)
            self._set(PullStatus(PullState.LOST, str(error), error.code, delay))
            if self._last_logged != error.code:
                self._last_logged = error.code
                logger.warning(
                    "lesson %s: %s source %s: %s (trying again, back-off up to %g s)",
                    self.router_id,
                    self.source,
                    error.code,
                    error,
                    self._backoff_s[1],
                )
            await asyncio.sleep(delay)

    async def _connect_once(self) -> StreamError:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[StreamError] = loop.create_future()
        reader: StreamReader

        def to_loop(callback: Callable[..., None]) -> Callable[..., None]:
            def call(*args: object) -> None:
                try:
                    loop.call_soon_threadsafe(callback, reader, *args)
                except RuntimeError:  # the loop has closed: the server is gone
                    reader.stop()

            return call

        reader = StreamReader(
            self._url,
            on_open=to_loop(self._opened),
            on_batch=to_loop(self._batch),
            timeout_s=self._timeout_s,
        )

        def finished(result: StreamError) -> None:
            if not done.done():
                done.set_result(result)

        def body() -> None:
            try:
                reader.run()
                result = StreamError("ended", "the camera's stream ended")
            except StreamError as exc:
                result = exc
            except Exception as exc:  # a bug here must not take the server down
                result = StreamError("failed", f"the stream cannot be read ({type(exc).__name__})")
            try:
                loop.call_soon_threadsafe(finished, result)
            except RuntimeError:
                pass

        self._reader = reader
        threading.Thread(target=body, name=f"pull {self.router_id}", daemon=True).start()
        try:
            return await done
        finally:
            reader.stop()
            self._reader = None

    # on the loop, from the reader's thread

    def _opened(self, reader: StreamReader, info: StreamInfo) -> None:
        if reader is not self._reader or self.closed:
            return
        self.connections += 1
        self.feed.open(
            f"{self.router_id}/{self.source}/pull{self.connections}",
            info.profile_level_id,
            info.audio_ssrc is not None,
        )
        logger.info(
            "lesson %s: %s source connected: H.264 %s, sound %s",
            self.router_id,
            self.source,
            info.profile_level_id,
            f"{info.audio_codec} transcoded to Opus" if info.audio_codec else "none",
        )

    def _batch(self, reader: StreamReader, batch: RtpBatch) -> None:
        if reader is not self._reader or self.closed:
            return
        self.feed.feed(batch)
        if batch.video and self.feed.producers and self.status.state is not PullState.LIVE:
            self._last_logged = None
            self._set(PullStatus(PullState.LIVE))

    # state and lifetime

    def _set(self, status: PullStatus) -> None:
        changed = status != self.status
        self.status = status
        if changed and not self.closed:
            try:
                self._on_state(status)
            except Exception:
                logger.exception("lesson %s: %s source state", self.router_id, self.source)

    def _drop_producers(self) -> None:
        self.feed.close(give_back=not self.closed)

    def _stop(self) -> None:
        self.closed = True
        self.status = PullStatus(PullState.STOPPED)
        if self._reader is not None:
            self._reader.stop()
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        """Stop pulling: the producers go back to the router (its consumers keep their place)."""
        if self.closed:
            return
        self._stop()
        self.feed.close()
        self._released(self)

    async def router_closed(self) -> None:
        """The router closed (its producers are already retired): stop the thread."""
        self._stop()
        self.feed.close(give_back=False)
