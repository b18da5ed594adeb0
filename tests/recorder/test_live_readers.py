"""Readers of a recording while it is written take nothing from it: the same lesson recorded
with and without readers gives the same file, byte for byte; and what the readers got as it
grew is that file's own fragments."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from recorder import packet_log
from recorder.live_index import LiveIndex
from recorder.live_source import LiveSource
from recorder.remux_process import Follower
from recorder.webm_fragments import WebmScanner
from tests.support.media import encode_opus_clip, encode_vp8_clip

from .synthetic import TrackLog

SECONDS = 10.0
STEP_S = 0.5  # of lesson time appended at each step
STEP_WAIT_S = 0.15  # between steps: the lesson goes by faster than real time
READERS = 10


class _Lesson:
    """The camera's two packet logs, appended step by step as a recording would."""

    def __init__(self, directory: Path, start: float) -> None:
        directory.mkdir()
        self.directory = directory
        self.tracks = []
        for kind, frames, mime, rate in (
            ("video", encode_vp8_clip(SECONDS, fps=30, gop=60), "video/VP8", 90000),
            ("audio", encode_opus_clip(SECONDS), "audio/opus", 48000),
        ):
            log = TrackLog(directory, "camera", kind)
            log.log.write([packet_log.epoch_record({"mime_type": mime, "clock_rate": rate})])
            self.tracks.append((log, log.records(frames, start)))

    def append_until(self, until: float) -> None:
        for log, records in self.tracks:
            due = [record for arrival, record in records if arrival < until]
            del records[: len(due)]
            if due:
                log.log.write(due)

    def close(self) -> None:
        for log, _ in self.tracks:
            log.close()


async def _read(source: LiveSource) -> bytes:
    return b"".join([chunk async for chunk in source.chunks(0, None)])


async def _readers(directory: Path, stop: asyncio.Event) -> list[bytes]:
    index = None
    for _ in range(200):  # until the finaliser has opened the file (the logs are not polled)
        index = LiveIndex.open(directory, "camera")
        if index is not None:
            break
        await asyncio.sleep(0.05)
    assert index is not None, "the finaliser never said which file it writes"
    source = LiveSource("synthetic", "camera", index)
    while source.index.header is None or not source.index.fragments:
        await source.update()
        await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(_read(source)) for _ in range(READERS)]
    await stop.wait()
    await asyncio.sleep(0.5)  # a last look at the file
    return list(await asyncio.gather(*tasks))


async def _record_both(root: Path) -> tuple[Path, Path, list[bytes]]:
    start = time.time()
    read, alone = _Lesson(root / "read", start), _Lesson(root / "alone", start)
    followers = [await Follower.start(read.directory), await Follower.start(alone.directory)]
    done = asyncio.Event()
    readers = asyncio.create_task(_readers(read.directory, done))
    at = start
    while at < start + SECONDS + 1:
        at += STEP_S
        for lesson in (read, alone):
            lesson.append_until(at)
        await asyncio.sleep(STEP_WAIT_S)
    for lesson in (read, alone):
        lesson.close()
    await asyncio.sleep(1.0)  # the followers catch up
    results = await asyncio.gather(*(f.finish() for f in followers))
    done.set()
    got = await asyncio.wait_for(readers, 10)
    assert all(r["main"] == "camera.webm" for r in results), results
    return read.directory / "camera.webm", alone.directory / "camera.webm", got


def test_readers_leave_the_recording_byte_identical(tmp_path: Path) -> None:
    with_readers, without, got = asyncio.run(_record_both(tmp_path))
    final = with_readers.read_bytes()
    assert final == without.read_bytes()

    # each reader got the file's own header (a live one: size unknown) and all its clusters
    scanner = WebmScanner()
    with open(with_readers, "rb") as f:
        fragments = scanner.scan(f.fileno(), len(final))
    assert scanner.complete and len(fragments) >= SECONDS - 1
    clusters = final[fragments[0].offset : fragments[-1].end]
    for body in got:
        header = scanner.header
        assert header is not None
        assert body[len(header) :] == clusters
