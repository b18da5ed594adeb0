"""Turn a lesson's packet logs into playable files: ``python -m recorder.finalize DIR``.

Run in a child process by the recorder (after the lesson, and at start-up for recordings a
crash left unfinished), so that remuxing a long lesson never holds the server's event loop
and a failure in FFmpeg cannot take the server down. Prints the result as JSON on stdout
and keeps it in ``result.json`` next to the files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .depacketizer import Frame, h264_frames, opus_frames, vp8_frame_size, vp8_frames
from .layout import RESULT, THUMBNAIL, parse_log_name
from .packet_log import LogReader
from .remux import TimedFrame, TrackInput, container_for, peek, remux
from .thumbnail import keyframe_size, write_thumbnail
from .timeline import Segment, read_segments

logger = logging.getLogger(__name__)

VIDEO_CODECS = ("VP8", "H264")
THUMBNAIL_AT_S = 3.0  # a picture from just after the start, past a camera's first adjustments
SOURCES = ("camera", "courseware")


class FinalizeError(Exception):
    """The logs hold nothing that can be made into a recording."""


def _frames_of(segment: Segment) -> Iterator[Frame]:
    items = segment.ordered()
    if segment.codec == "VP8":
        return vp8_frames(items)
    if segment.codec == "H264":
        return h264_frames(items, segment.parameters)
    return opus_frames(items)


def _timed(segments: Iterable[Segment]) -> Iterator[TimedFrame]:
    for segment in segments:
        offset = segment.offset()
        rate = segment.clock_rate
        for frame in _frames_of(segment):
            yield TimedFrame(offset + frame.timestamp / rate, frame.keyframe, frame.data)


class _KeyframePicker:
    """Passes frames through and keeps one keyframe for the thumbnail."""

    def __init__(self, frames: Iterator[TimedFrame], after: float) -> None:
        self._frames = frames
        self._after = after
        self.keyframe: bytes | None = None
        self._settled = False

    def __iter__(self) -> Iterator[TimedFrame]:
        for frame in self._frames:
            if frame.keyframe and not self._settled:
                self.keyframe = frame.data
                self._settled = frame.time >= self._after
            yield frame


def _video_size(codec: str, keyframe: bytes) -> tuple[int, int]:
    size = vp8_frame_size(keyframe) if codec == "VP8" else None
    return size or keyframe_size(codec, keyframe) or (0, 0)


def finalize(directory: Path) -> dict[str, Any]:
    started = time.monotonic()
    tracks: dict[str, dict[str, list[Segment]]] = {}
    readers: list[LogReader] = []
    warnings: list[str] = []
    try:
        for path in sorted(directory.iterdir()):
            track = parse_log_name(path.name)
            if track is None:
                continue
            segments, reader = read_segments(path)
            readers.append(reader)
            if reader.valid_bytes < reader.size:
                warnings.append(
                    f"{path.name}: {reader.size - reader.valid_bytes} bytes at the end were "
                    "incomplete (interrupted write) and are left out"
                )
            source, kind = track
            tracks.setdefault(source, {})[kind] = [s for s in segments if s.items]
        result = _write_files(directory, tracks, warnings)
    finally:
        for reader in readers:
            reader.close()
    result["finalize_s"] = round(time.monotonic() - started, 3)
    tmp = directory / f".{RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(directory / RESULT)
    return result


def _write_files(
    directory: Path, tracks: dict[str, dict[str, list[Segment]]], warnings: list[str]
) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    thumbnail: tuple[str, bytes] | None = None
    main_origin: float | None = None
    chapters: list[tuple[float, float]] = []
    for segment in tracks.get("courseware", {}).get("video", []):
        start = segment.offset() + segment.items[0].timestamp / segment.clock_rate
        chapters.append((start, segment.ended_at or segment.last_arrival))

    for source in SOURCES:
        video_segments = tracks.get(source, {}).get("video", [])
        audio_segments = [s for s in tracks.get(source, {}).get("audio", []) if s.codec == "OPUS"]
        codecs = [s.codec for s in video_segments if s.codec in VIDEO_CODECS]
        video_codec = codecs[0] if codecs else None
        if video_codec is not None and any(s.codec != video_codec for s in video_segments):
            warnings.append(f"{source}: video in another codec than {video_codec} is left out")
        first_video, video_frames = peek(
            _timed(s for s in video_segments if s.codec == video_codec)
        )
        first_audio, audio_frames = peek(_timed(audio_segments))
        if first_video is None and first_audio is None:
            continue
        origin = min(f.time for f in (first_video, first_audio) if f is not None)
        if main_origin is None:
            main_origin = origin
        _, extension = container_for(video_codec if first_video is not None else None)
        video = audio = None
        picker = None
        if first_video is not None and video_codec is not None:
            picker = _KeyframePicker(video_frames, origin + THUMBNAIL_AT_S)
            width, height = _video_size(video_codec, first_video.data)
            video = TrackInput(video_codec, picker, width, height)
        if first_audio is not None:
            audio = TrackInput("OPUS", audio_frames)
        name = f"{source}.{extension}"
        marks = [
            (max(start - origin, 0.0), max(end - origin, 0.0), "Courseware")
            for start, end in chapters
        ]
        muxed = remux(directory / name, video, audio, origin, marks if source == "camera" else None)
        if picker is not None and picker.keyframe is not None and thumbnail is None:
            assert video_codec is not None
            thumbnail = (video_codec, picker.keyframe)
        files.append(
            {
                "name": name,
                "source": source,
                "container": muxed.container,
                "video": video_codec if video is not None else None,
                "audio": "OPUS" if audio is not None else None,
                "offset_s": round(origin - main_origin, 3),
                "duration_s": round(muxed.duration_s, 3),
                "size_bytes": (directory / name).stat().st_size,
                "video_frames": muxed.video_frames,
                "audio_packets": muxed.audio_packets,
                "width": video.width if video else None,
                "height": video.height if video else None,
                "started_at": origin,
            }
        )
    if not files or main_origin is None:
        raise FinalizeError("the recording holds no media")
    produced = {f["name"] for f in files}
    for stale in ("camera.webm", "camera.mp4", "courseware.webm", "courseware.mp4"):
        if stale not in produced:
            (directory / stale).unlink(missing_ok=True)
    thumbnail_name = None
    if thumbnail is not None and write_thumbnail(thumbnail[0], thumbnail[1], directory / THUMBNAIL):
        thumbnail_name = THUMBNAIL
    main = files[0]
    end = max(f["offset_s"] + f["duration_s"] for f in files)
    size = sum(f["size_bytes"] for f in files)
    if thumbnail_name is not None:
        size += (directory / THUMBNAIL).stat().st_size
    return {
        "format": 1,
        "main": main["name"],
        "files": files,
        "started_at": main_origin,
        "duration_s": round(end, 3),
        "size_bytes": size,
        "thumbnail": thumbnail_name,
        "chapters": [
            {"start_s": round(start - main_origin, 3), "end_s": round(stop - main_origin, 3)}
            for start, stop in chapters
        ],
        "warnings": warnings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recorder.finalize", description="Finalise a lesson recording."
    )
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = finalize(args.directory)
    except FinalizeError as exc:
        print(f"finalize: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
