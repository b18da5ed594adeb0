"""The time index of one source of a lesson being recorded: wall-clock time to the fragments
of the file the finaliser is writing (``recorder.finalize --follow``), and where a player can
start.

The file is only ever read (its own descriptor, opened read-only): the writer neither waits
for nor notices a reader. Its name, container and time 0 come from the finaliser's
``<source>.live.json``. Blocking calls: run them in a thread.
"""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path

from .fragments import BadFile, Fragment, FragmentScanner
from .layout import live_name
from .mp4_fragments import Mp4Scanner
from .webm_fragments import WebmScanner

CONTENT_TYPES = {"webm": "video/webm", "mp4": "video/mp4"}


class LiveIndex:
    def __init__(self, path: Path, container: str, origin: float, codecs: str) -> None:
        self.path = path
        self.container = container
        self.origin = origin  # wall-clock time of the file's time 0
        self.codecs = codecs  # for a player's MediaSource: 'vp8,opus', 'avc1,opus', ...
        self.fragments: list[Fragment] = []
        self._starts: list[float] = []  # wall-clock times of the fragments that are keyframes
        self._keyframes: list[int] = []  # their positions in ``fragments``
        self._scanner = scanner_for(container)
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    @classmethod
    def open(cls, directory: Path, source: str) -> LiveIndex | None:
        """The index of ``source``'s growing file, or None while there is none."""
        try:
            info = json.loads((directory / live_name(source)).read_text())
            name = str(info["file"])
            if "/" in name or not name.startswith("."):
                return None  # only the finaliser's own temporary names, in this directory
            container = str(info["container"])
            codecs = ",".join(
                c for c in (_codec(info.get("video")), _codec(info.get("audio"))) if c
            )
            index = cls(directory / name, container, float(info["origin"]), codecs)
        except (OSError, ValueError, KeyError, TypeError, BadFile):
            return None
        return index

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.container]

    @property
    def header(self) -> bytes | None:
        return self._scanner.header

    @property
    def complete(self) -> bool:
        return self._scanner.complete

    @property
    def recorded_until(self) -> float | None:
        """Wall-clock time of the newest complete fragment's start, if any."""
        return self.origin + self.fragments[-1].time if self.fragments else None

    @property
    def starts_at(self) -> float | None:
        """Wall-clock time of the first place a player can start, if any."""
        return self._starts[0] if self._starts else None

    def refresh(self) -> list[Fragment]:
        """Take the fragments the writer completed since the last call."""
        if self._fd is None:
            return []
        size = os.fstat(self._fd).st_size
        found = self._scanner.scan(self._fd, size)
        for fragment in found:
            if fragment.keyframe:
                self._starts.append(self.origin + fragment.time)
                self._keyframes.append(len(self.fragments))
            self.fragments.append(fragment)
        return found

    def start_for(self, wall_time: float) -> int | None:
        """The fragment to start at to show ``wall_time``: the last keyframe at or before it
        (the first one, for a time before it); None while there is no keyframe yet."""
        if not self._keyframes:
            return None
        at = bisect.bisect_right(self._starts, wall_time) - 1
        return self._keyframes[max(at, 0)]

    def keyframe_times(self) -> list[float]:
        return list(self._starts)

    def read(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise OSError("the index is closed")
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def scanner_for(container: str) -> FragmentScanner:
    if container == "webm":
        return WebmScanner()
    if container == "mp4":
        return Mp4Scanner()
    raise BadFile(f"not a container the recorder writes: {container!r}")


def _codec(codec: object) -> str | None:
    # RFC 6381 names as MediaSource.isTypeSupported takes them
    return {"VP8": "vp8", "H264": "avc1.42E01F", "OPUS": "opus"}.get(str(codec))
