"""Where a recording's files live and which names may be served from there."""

from __future__ import annotations

import re
from pathlib import Path

# The tracks a lesson recording takes: the camera's picture and sound, the courseware, and
# the classroom on stage (the first stage slot: whoever the teacher called, one after another).
TRACKS: tuple[tuple[str, str], ...] = (
    ("camera", "video"),
    ("camera", "audio"),
    ("courseware", "video"),
    ("stage", "video"),
    ("stage", "audio"),
)
SIDECAR = "recording.json"
RESULT = "result.json"
THUMBNAIL = "thumbnail.jpg"
LOG_SUFFIX = ".rtplog"
LIVE_SUFFIX = ".live.json"  # the file of a source being written while the lesson goes on
LOCK = ".remux.lock"  # held by whichever finaliser is writing the files

_LESSON_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Names the finaliser produces: camera.webm, courseware.mp4, stage.webm, thumbnail.jpg.
_SERVABLE = re.compile(r"^(camera|courseware|stage)\.(webm|mp4)$|^thumbnail\.jpg$")


def valid_lesson_id(lesson_id: str) -> bool:
    return bool(_LESSON_ID.match(lesson_id))


def log_name(source: str, kind: str) -> str:
    return f"{source}.{kind}{LOG_SUFFIX}"


def live_name(source: str) -> str:
    return f"{source}{LIVE_SUFFIX}"


def parse_log_name(name: str) -> tuple[str, str] | None:
    if not name.endswith(LOG_SUFFIX):
        return None
    source, _, kind = name.removesuffix(LOG_SUFFIX).partition(".")
    if (source, kind) not in TRACKS:
        return None
    return source, kind


class RecordingsRoot:
    """The directory holding one sub-directory per recorded lesson."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def directory(self, lesson_id: str) -> Path:
        if not valid_lesson_id(lesson_id):
            raise ValueError(f"not a lesson id: {lesson_id!r}")
        return self.path / lesson_id

    def servable(self, lesson_id: str, name: str) -> Path | None:
        """The file ``name`` of a lesson's recording if it may be served, else None.

        Only the finaliser's output names are accepted, and the resolved path must still lie
        inside the recordings directory (no symlink or ``..`` leads out of it)."""
        if not valid_lesson_id(lesson_id) or not _SERVABLE.match(name):
            return None
        path = self.path / lesson_id / name
        try:
            resolved = path.resolve(strict=True)
            root = self.path.resolve(strict=True)
        except OSError:
            return None
        if path.is_symlink() or not resolved.is_relative_to(root) or not resolved.is_file():
            return None
        return resolved

    def logs(self, lesson_id: str) -> list[Path]:
        directory = self.directory(lesson_id)
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if parse_log_name(p.name) is not None)
