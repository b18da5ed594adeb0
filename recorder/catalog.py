"""What the recorder keeps about each recording, and the store it keeps it in.

The application implements ``RecordingCatalog`` (in its database); the recorder only sees the
protocol, so the arrows keep pointing down (syncclass → recorder → media).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class RecordingState(enum.StrEnum):
    RECORDING = "recording"
    STOPPED = "stopped"  # stopped before the lesson ended (disk nearly full); kept so far
    FINALIZING = "finalizing"
    READY = "ready"
    FAILED = "failed"


UNFINISHED = (RecordingState.RECORDING, RecordingState.STOPPED, RecordingState.FINALIZING)


@dataclass(frozen=True)
class Recording:
    lesson_id: str
    state: RecordingState
    started_at: float
    ended_at: float | None = None  # when the recording was made playable
    duration_s: float | None = None
    size_bytes: int = 0
    public: bool = False
    # the stage file (the classrooms called on stage: pupils' faces and voices) is public
    # only when the teacher also chose this; making the recording private clears it
    public_stage: bool = False
    # what the finaliser produced: files, main, thumbnail, chapters, warnings
    details: dict[str, Any] = field(default_factory=dict, hash=False)
    error: str | None = None  # why it failed or stopped early (a short code)


class RecordingCatalog(Protocol):
    def get(self, lesson_id: str) -> Recording | None: ...

    def list(self) -> list[Recording]: ...

    def put(self, recording: Recording) -> None: ...

    def delete(self, lesson_id: str) -> None: ...
