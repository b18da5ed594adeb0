"""Turn a lesson's packet logs into playable files: ``python -m recorder.finalize DIR``.

Runs in a child process of the server, so that remuxing never holds the server's event loop
and a failure in FFmpeg cannot take the server down. Two ways:

- ``--follow`` from the start of a lesson: the files are written as the logs grow, and on
  ``finish`` (a line on stdin, sent when the lesson ends) only the last seconds remain to be
  written, however long the lesson was. End of stdin without ``finish`` means the server
  went away: the partial files are dropped, the logs stay for recovery.
- in one go, for a recording a crash left unfinished (or when following failed).

Prints the result as JSON on stdout and keeps it in ``result.json`` next to the files.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from media.depacketizer import Framer, opus_frames

from .layout import LOCK, RESULT, THUMBNAIL, TRACKS, live_name, log_name
from .packet_log import LogTail
from .remux import SourceWriter, TimedFrame
from .thumbnail import write_thumbnail
from .timeline import Segment, TrackTimeline

logger = logging.getLogger(__name__)

SOURCES = ("camera", "courseware", "stage")
VIDEO_CODECS = ("VP8", "H264")
FOLLOW_POLL_S = 0.5
CHUNK_BYTES = 1 << 20
STEP_BYTES = 64 << 20  # between two looks at stdin while catching up
_OUTPUTS = tuple(f"{source}.{ext}" for source in SOURCES for ext in ("webm", "mp4"))

Track = tuple[str, str]


class FinalizeError(Exception):
    """The logs hold nothing that can be made into a recording."""


def _has_packets(path: Path) -> bool:
    tail = LogTail(path)
    try:
        for _ in range(4):  # the first packet is near the start of a log, if there is one
            records = tail.read(4 << 20)
            if any(type(r) is tuple for r in records):
                return True
            if not records:
                return False
        return True
    finally:
        tail.close()


class Remuxer:
    """Reads the track logs of a lesson directory and writes its files."""

    def __init__(self, directory: Path, follow: bool) -> None:
        self.directory = directory
        self.follow = follow
        self.warnings: list[str] = []
        self._lock = open(directory / LOCK, "w")  # noqa: SIM115 - closed by close()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._tails = {track: LogTail(directory / log_name(*track)) for track in TRACKS}
        self._timelines = {track: TrackTimeline(*track) for track in TRACKS}
        self._framers: dict[tuple[Track, int], Framer] = {}
        self._ended: set[tuple[Track, int]] = set()
        self._writers: dict[str, SourceWriter] = {}
        self._announced: set[str] = set()
        for source in SOURCES:
            kinds = {kind for s, kind in TRACKS if s == source}
            expected = None
            if not follow:
                expected = {k for k in kinds if _has_packets(directory / log_name(source, k))}
            self._writers[source] = SourceWriter(
                directory, source, kinds, expected, self._heard_until(source)
            )

    def close(self) -> None:
        self._withdraw()  # the files are complete (or gone): nobody reads them as growing
        for tail in self._tails.values():
            tail.close()
        self._lock.close()

    # reading

    def step(self, budget: int = STEP_BYTES) -> bool:
        """Read up to ``budget`` bytes of what the logs gained and write what is ready;
        whether anything was read. The log furthest behind in time is read first, so that
        the tracks of a file advance together (a catching-up reader must not run ahead with
        the small audio log) and memory stays bounded."""
        read = False
        while budget > 0:
            unread = [t for t in TRACKS if self._tails[t].unread() > 0]
            if not unread:
                break
            track = min(unread, key=lambda t: self._timelines[t].latest_arrival)
            records = self._tails[track].read(CHUNK_BYTES)
            budget -= CHUNK_BYTES
            if records:
                self._timelines[track].add(records)
                read = True
            # a gap is only given up once every log still being read has passed it
            behind = [self._timelines[t].latest_arrival for t in TRACKS if self._tails[t].unread()]
            self._release(min(behind) if behind else self._latest())
        return read

    def _heard_until(self, source: str) -> Callable[[str], float]:
        def heard_until(kind: str) -> float:
            track = (source, kind)
            if self._tails[track].unread():
                return self._timelines[track].latest_arrival
            return self._latest()  # read to its end: as far as anything has been heard

        return heard_until

    def _latest(self) -> float:
        return max(t.latest_arrival for t in self._timelines.values())

    def _release(self, now: float | None) -> None:
        for track, timeline in self._timelines.items():
            source, kind = track
            writer = self._writers[source]
            released = {segment.index: items for segment, items in timeline.release(now)}
            # segment by segment, so that the last frame of one goes before the next one's
            for segment in timeline.segments:
                key = (track, segment.index)
                if key in self._ended:
                    continue
                items = released.get(segment.index)
                if items:
                    writer.add(kind, *self._frames(track, segment, items))
                # an ended segment gets no more packets: its last frame is complete
                if segment.ended_at is not None and segment.drained:
                    self._ended.add(key)
                    framer = self._framers.pop(key, None)
                    if framer is not None:
                        writer.add(kind, segment.codec, self._timed(segment, framer.end()))
                elif not segment.drained:
                    break  # later segments are not released before this one
        for writer in self._writers.values():  # once every track had its say
            writer.pump(final=False)
        if self.follow:
            self._announce()

    def _announce(self) -> None:
        """Say which file each source is being written to, once it is open: the server reads
        it while it grows, for classrooms catching up (recorder.live_index)."""
        for source, writer in self._writers.items():
            growing = writer.growing
            if source in self._announced or growing is None:
                continue
            _write_atomically(self.directory / live_name(source), json.dumps(growing))
            self._announced.add(source)

    def _withdraw(self) -> None:
        for source in SOURCES:
            (self.directory / live_name(source)).unlink(missing_ok=True)

    def _frames(
        self, track: Track, segment: Segment, items: list[Any]
    ) -> tuple[str, list[TimedFrame]]:
        codec = segment.codec
        if track[1] == "audio":
            if codec != "OPUS":
                self._warn(f"{track[0]} audio in {codec} cannot be recorded")
                return codec, []
            return codec, self._timed(segment, opus_frames(items))
        if codec not in VIDEO_CODECS:
            self._warn(f"{track[0]} video in {codec} cannot be recorded")
            return codec, []
        key = (track, segment.index)
        framer = self._framers.get(key)
        if framer is None:
            framer = self._framers[key] = Framer(codec, segment.parameters)
        return codec, self._timed(segment, framer.push(items))

    @staticmethod
    def _timed(segment: Segment, frames: list[Any]) -> list[TimedFrame]:
        offset = segment.offset
        assert offset is not None
        rate = segment.clock_rate
        return [TimedFrame(offset + f.timestamp / rate, f.keyframe, f.data) for f in frames]

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # the end

    def finish(self) -> dict[str, Any]:
        """Read the logs to their end, complete the files and describe them."""
        while self.step():
            pass
        self._release(None)
        for key, framer in list(self._framers.items()):
            track, index = key
            segment = self._timelines[track].segments[index]
            self._writers[track[0]].add(track[1], segment.codec, self._timed(segment, framer.end()))
        self._framers.clear()
        for track, tail in self._tails.items():
            size = tail.size()
            if tail.valid_bytes < size:
                self._warn(
                    f"{log_name(*track)}: the last {size - tail.valid_bytes} bytes were an "
                    "interrupted write and are left out"
                )
        chapters = self._chapters()
        files = []
        late = sorted(
            f"{source}.{kind}" for source in SOURCES for kind in self._writers[source].late
        )
        for source in SOURCES:
            writer = self._writers[source]
            described = writer.close(
                [(start, end, "Courseware") for start, end in chapters]
                if source == "camera"
                else None
            )
            for reason in writer.incomplete:
                self._warn(reason)
            if described is not None:
                files.append(described)
        if not files:
            raise FinalizeError("the recording holds no media")
        result = self._describe(files, chapters)
        result["late_tracks"] = late
        return result

    def _chapters(self) -> list[tuple[float, float]]:
        chapters = []
        for segment in self._timelines[("courseware", "video")].segments:
            if segment.offset is None or segment.first_timestamp is None:
                continue
            start = segment.wall_time(segment.first_timestamp)
            chapters.append((start, segment.ended_at or segment.last_arrival))
        return chapters

    def _describe(
        self, files: list[dict[str, Any]], chapters: list[tuple[float, float]]
    ) -> dict[str, Any]:
        directory = self.directory
        main_origin = files[0]["started_at"]
        for described in files:
            described["offset_s"] = round(described["started_at"] - main_origin, 3)
        produced = {f["name"] for f in files}
        for stale in _OUTPUTS:
            if stale not in produced:
                (directory / stale).unlink(missing_ok=True)
        thumbnail = None
        for source in SOURCES:
            writer = self._writers[source]
            if writer.thumbnail_keyframe is not None and writer.video_codec is not None:
                if write_thumbnail(
                    writer.video_codec, writer.thumbnail_keyframe, directory / THUMBNAIL
                ):
                    thumbnail = THUMBNAIL
                break
        if thumbnail is None:
            (directory / THUMBNAIL).unlink(missing_ok=True)
        size = sum(f["size_bytes"] for f in files)
        if thumbnail is not None:
            size += (directory / THUMBNAIL).stat().st_size
        return {
            "format": 1,
            "main": files[0]["name"],
            "files": files,
            "started_at": main_origin,
            "duration_s": round(max(f["offset_s"] + f["duration_s"] for f in files), 3),
            "size_bytes": size,
            "thumbnail": thumbnail,
            "chapters": [
                {"start_s": round(start - main_origin, 3), "end_s": round(end - main_origin, 3)}
                for start, end in chapters
            ],
            "warnings": self.warnings,
        }

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def _keep(directory: Path, result: dict[str, Any]) -> None:
    _write_atomically(directory / RESULT, json.dumps(result, indent=1))


def finalize(directory: Path) -> dict[str, Any]:
    """Remux the whole of a lesson's logs in one go."""
    started = time.monotonic()
    remuxer = Remuxer(directory, follow=False)
    try:
        result = remuxer.finish()
    except BaseException:
        remuxer.abort()
        raise
    finally:
        remuxer.close()
    result["finalize_s"] = round(time.monotonic() - started, 3)
    _keep(directory, result)
    return result


def follow(directory: Path) -> dict[str, Any] | None:
    """Remux while the lesson is recorded; complete on ``finish``, give up on end of stdin."""
    command: list[str] = []
    done = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "finish":
                command.append("finish")
                break
        done.set()

    threading.Thread(target=listen, name="follow-stdin", daemon=True).start()
    remuxer = Remuxer(directory, follow=True)
    try:
        while not done.is_set():
            if not remuxer.step():
                done.wait(FOLLOW_POLL_S)
        if not command:
            remuxer.abort()
            return None
        started = time.monotonic()
        result = remuxer.finish()
    except BaseException:
        remuxer.abort()
        raise
    finally:
        remuxer.close()
    result["finalize_s"] = round(time.monotonic() - started, 3)
    _keep(directory, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recorder.finalize", description="Finalise a lesson recording."
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--follow", action="store_true", help="write while the logs grow, until 'finish' on stdin"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = follow(args.directory) if args.follow else finalize(args.directory)
    except FinalizeError as exc:
        print(f"finalize: {exc}", file=sys.stderr)
        return 2  # remux_process.NO_MEDIA_EXIT
    if result is None:
        return 3
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
