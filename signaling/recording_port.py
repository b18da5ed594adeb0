"""What the HTTP layer tells the application about a lesson's life, and what it asks about
its recording.

The application implements these protocols (by wiring the recorder in); signaling only sees
them, so it never imports the recorder: syncclass → signaling, syncclass → recorder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from media.router import Router

from .contracts import Lesson


class RecordingBusyError(Exception):
    """The recording is being made or finalised and cannot be changed that way now."""


class RecordingHooks(Protocol):
    def on_live(self, lesson: Lesson, router: Router) -> None:
        """The origin published a source into ``router`` (called on every publication, so
        after a restart too); a lesson to be recorded is recorded from now on."""
        ...

    def on_ended(self, lesson: Lesson) -> None:
        """The lesson ended: its recording is to be made playable."""
        ...

    def recording_info(self, lesson_id: str) -> dict[str, Any] | None:
        """The recording as the API shows it (``state``, ``url``, ``duration_s``,
        ``size_bytes``, ``public``, ...), or None if the lesson has none."""
        ...


class RecordingLibrary(Protocol):
    def set_public(
        self, lesson_id: str, public: bool | None, public_stage: bool | None
    ) -> dict[str, Any] | None:
        """Change who may watch without a link (None: leave as it is). ``public`` opens the
        teacher's camera, sound and courseware; ``public_stage`` the stage file as well, and
        only while ``public`` holds."""
        ...

    async def delete(self, lesson_id: str) -> bool:
        """Delete the recording; False if there is none, RecordingBusyError while it is
        being made."""
        ...

    def file(self, lesson_id: str, name: str) -> Path | None:
        """The path of a file of the recording that may be served, else None."""
        ...


class LiveRecording(Protocol):
    """One source of a lesson recorded now, readable while it grows (a classroom catching
    up). Times are Unix seconds on the server's clock."""

    @property
    def content_type(self) -> str: ...

    @property
    def codecs(self) -> str: ...

    @property
    def origin(self) -> float:
        """The time of the stream's time 0 (a player's currentTime is counted from it)."""
        ...

    @property
    def starts_at(self) -> float | None:
        """The first time a player can start at."""
        ...

    @property
    def recorded_until(self) -> float | None:
        """The start of the newest complete fragment."""
        ...

    @property
    def readers(self) -> int: ...

    def start_for(self, at: float) -> tuple[int, float] | None:
        """Where to start to show ``at``: (position, time of its keyframe at or before)."""
        ...

    def chunks(self, start: int, until: float | None) -> AsyncIterator[bytes]:
        """The stream's header, then its fragments from ``start`` on as they are recorded,
        up to the one beginning after ``until`` (None: until the lesson ends)."""
        ...


class LiveRecordings(Protocol):
    async def live_source(self, lesson_id: str, source: str) -> LiveRecording | None:
        """``source`` of the lesson as recorded so far, if it is being recorded now."""
        ...


class _NoRecording:
    """For an application without a recorder: lessons are never recorded."""

    def on_live(self, lesson: Lesson, router: Router) -> None:
        pass

    def on_ended(self, lesson: Lesson) -> None:
        pass

    def recording_info(self, lesson_id: str) -> dict[str, Any] | None:
        return None


NO_RECORDING: RecordingHooks = _NoRecording()
LIBRARY = web.AppKey("recording_library", RecordingLibrary)
LIVE_RECORDINGS = web.AppKey("live_recordings", LiveRecordings)
