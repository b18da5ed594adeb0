"""The recorder wired into the application: the lesson hooks and replay library signaling
asks for, the recordings table, retention and disk limits from the configuration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from media.router import Router
from recorder.catalog import Recording, RecordingState
from recorder.live_source import LiveSource
from recorder.recorder import Recorder, RecordingBusy
from signaling import recordings_api
from signaling.contracts import Lesson, LessonState, LessonStore
from signaling.keys import LESSONS, STORE
from signaling.recording_port import LIBRARY, LIVE_RECORDINGS, RecordingBusyError

from .config import Config
from .disk_reserve import DISK_RESERVE
from .store import SqliteLessonStore, SqliteRecordingCatalog

logger = logging.getLogger(__name__)

RECORDER = web.AppKey("recorder", Recorder)


def recording_json(recording: Recording) -> dict[str, Any]:
    """A recording as the API shows it; URLs are relative to the server."""
    base = f"/recordings/{recording.lesson_id}"
    details = recording.details
    files = {f.get("name"): f for f in details.get("files") or []}
    main = details.get("main")
    courseware = next((f for f in files.values() if f.get("source") == "courseware"), None)
    if courseware is not None and courseware.get("name") == main:
        courseware = None  # a lesson with courseware only: it is the main file
    stage = next((f for f in files.values() if f.get("source") == "stage"), None)
    if stage is not None and stage.get("name") == main:
        stage = None
    thumbnail = details.get("thumbnail")
    return {
        "state": recording.state.value,
        "url": f"{base}/{main}" if main else None,
        "duration_s": recording.duration_s,
        "size_bytes": recording.size_bytes,
        "public": recording.public,
        "public_stage": recording.public_stage,
        "thumbnail_url": f"{base}/{thumbnail}" if thumbnail else None,
        "courseware": (
            {"url": f"{base}/{courseware['name']}", "offset_s": courseware.get("offset_s", 0.0)}
            if courseware
            else None
        ),
        "stage": (
            {"url": f"{base}/{stage['name']}", "offset_s": stage.get("offset_s", 0.0)}
            if stage
            else None
        ),
        "chapters": details.get("chapters") or [],
        "started_at": recording.started_at,
        "ready_at": recording.ended_at if recording.state is RecordingState.READY else None,
        "error": recording.error,
    }


class RecordingService:
    """`signaling.recording_port.RecordingHooks` and `RecordingLibrary` on top of the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_live(self, lesson: Lesson, router: Router) -> None:
        if lesson.record:
            self.recorder.lesson_live(lesson.id, router)

    def on_ended(self, lesson: Lesson) -> None:
        self.recorder.lesson_ended(lesson.id)

    def recording_info(self, lesson_id: str) -> dict[str, Any] | None:
        recording = self.recorder.get(lesson_id)
        return None if recording is None else recording_json(recording)

    def set_public(
        self, lesson_id: str, public: bool | None, public_stage: bool | None
    ) -> dict[str, Any] | None:
        recording = self.recorder.set_public(lesson_id, public, public_stage)
        return None if recording is None else recording_json(recording)

    async def delete(self, lesson_id: str) -> bool:
        try:
            return await self.recorder.delete(lesson_id)
        except RecordingBusy as exc:
            raise RecordingBusyError(str(exc)) from exc

    def file(self, lesson_id: str, name: str) -> Path | None:
        return self.recorder.file(lesson_id, name)

    async def live_source(self, lesson_id: str, source: str) -> LiveSource | None:
        return await self.recorder.live_source(lesson_id, source)


def _lesson_over(store: LessonStore, lesson_id: str) -> bool:
    lesson = store.get(lesson_id)
    return lesson is None or lesson.state is LessonState.ENDED


def setup_recording(app: web.Application, config: Config, data_dir: Path) -> None:
    """Add the recorder, its hooks and the replay routes to ``app``."""
    store = app[STORE]
    assert isinstance(store, SqliteLessonStore)

    def notify(recording: Recording) -> None:
        # the teacher's page listens to the lesson's events: it learns e.g. that the
        # recording stopped because the disk is nearly full
        if recording.state is RecordingState.STOPPED:
            logger.warning(
                "lesson %s: the teacher is told the recording stopped (%s)",
                recording.lesson_id,
                recording.error,
            )
        app[LESSONS].tell(
            recording.lesson_id, {"type": "recording", "recording": recording_json(recording)}
        )

    recorder = Recorder(
        config.recordings_dir or data_dir / "recordings",
        SqliteRecordingCatalog(store),
        lambda lesson_id: _lesson_over(store, lesson_id),
        min_free_bytes=config.record_min_free_mb * 1_000_000,
        retain_days=config.retain_days,
        notify=notify,
        on_disk_full=app[DISK_RESERVE].release,
    )
    service = RecordingService(recorder)
    app[RECORDER] = recorder
    app[LESSONS].recording = service
    app[LIBRARY] = service
    app[LIVE_RECORDINGS] = service
    recordings_api.add_routes(app)
    app.on_startup.append(_start)
    app.on_shutdown.append(_close)


async def _start(app: web.Application) -> None:
    await app[RECORDER].start()


async def _close(app: web.Application) -> None:
    await app[RECORDER].close()
