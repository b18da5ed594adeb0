"""What the HTTP layer tells the application about a lesson's life, and what it asks about
its recording.

The application implements these protocols (by wiring the recorder in); signaling only sees
them, so it never imports the recorder: syncclass → signaling, syncclass → recorder.
"""

from __future__ import annotations

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
