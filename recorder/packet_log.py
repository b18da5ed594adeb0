"""The on-disk packet log of one recorded track: append-only records, readable after a crash.

A log starts with ``MAGIC`` and holds records, each a 10-byte header (sync byte, type, body
length, CRC-32 of the body) and a body:

- ``EPOCH``: JSON; a producer started feeding the track (codec, clock rate, fmtp parameters);
- ``PACKET``: arrival time on the server's wall clock, RTP timestamp, SSRC, sequence number,
  flags (marker, keyframe start), payload type, then the RTP payload (header and padding
  removed);
- ``SENDER_REPORT``: the publisher's latest sender report mapped to the server's wall clock
  (server time, RTP timestamp), which keeps the tracks of one publisher in sync;
- ``END``: the producer went away (server wall time).

Records are only ever appended. A process killed mid-write leaves at most one torn record at
the end; a machine that loses power may leave garbage after the last block the disk kept. A
reader stops at the first record whose header or checksum does not hold, so everything before
it is used and nothing after it is trusted.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"SCRTPLOG\x01\n"
SYNC = 0xA5
MAX_BODY = 1 << 20

EPOCH = 1
PACKET = 2
SENDER_REPORT = 3
END = 4

FLAG_MARKER = 0x01
FLAG_KEYFRAME = 0x02

_HEADER = struct.Struct("<BBII")  # sync, type, body length, crc32 of the body
_PACKET = struct.Struct("<dIIHBB")  # arrival, timestamp, ssrc, sequence, flags, payload type
_REPORT = struct.Struct("<dI")  # server wall time, rtp timestamp
_END = struct.Struct("<d")


def _record(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(SYNC, kind, len(body), zlib.crc32(body)) + body


def epoch_record(info: dict[str, Any]) -> bytes:
    return _record(EPOCH, json.dumps(info, separators=(",", ":")).encode())


def packet_record(
    arrival: float,
    timestamp: int,
    ssrc: int,
    sequence_number: int,
    flags: int,
    payload_type: int,
    payload: bytes | memoryview,
) -> bytes:
    body = _PACKET.pack(arrival, timestamp, ssrc, sequence_number, flags, payload_type)
    body += payload
    return _record(PACKET, body)


def sender_report_record(wall_time: float, rtp_timestamp: int) -> bytes:
    return _record(SENDER_REPORT, _REPORT.pack(wall_time, rtp_timestamp))


def end_record(wall_time: float) -> bytes:
    return _record(END, _END.pack(wall_time))


class LogFile:
    """One track's log opened for appending; used from a single writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        if fresh:
            self._file.write(MAGIC)
        self.size = self._file.tell()

    def write(self, chunks: list[bytes]) -> int:
        """Append whole records and hand them to the kernel (a kill -9 no longer loses them)."""
        data = b"".join(chunks)
        self._file.write(data)
        self._file.flush()
        self.size += len(data)
        return len(data)

    def sync(self) -> None:
        """Make what was written survive a power loss too."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


@dataclass(frozen=True, slots=True)
class Packet:
    arrival: float
    timestamp: int
    ssrc: int
    sequence_number: int
    marker: bool
    keyframe: bool
    payload_type: int
    payload: memoryview


@dataclass(frozen=True, slots=True)
class Epoch:
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SenderReport:
    wall_time: float
    rtp_timestamp: int


@dataclass(frozen=True, slots=True)
class End:
    wall_time: float


Record = Packet | Epoch | SenderReport | End


class LogReader:
    """Reads a log through a memory map; payloads are views into it, valid until close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.valid_bytes = 0  # how much of the file held whole, well-formed records
        self.size = path.stat().st_size
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._map: mmap.mmap | None = None
        if self.size > 0:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                # payload views are still alive somewhere; the map goes with them
                pass
            self._map = None
        self._file.close()

    def records(self) -> Iterator[Record]:
        data = self._map
        if data is None or data[: len(MAGIC)] != MAGIC:
            return
        view = memoryview(data)
        pos = len(MAGIC)
        end = len(data)
        header = _HEADER
        header_size = header.size
        unpack_packet = _PACKET.unpack_from
        packet_size = _PACKET.size
        self.valid_bytes = pos
        try:
            while pos + header_size <= end:
                sync, kind, length, crc = header.unpack_from(data, pos)
                start = pos + header_size
                stop = start + length
                if sync != SYNC or length > MAX_BODY or stop > end:
                    return
                body = view[start:stop]
                if zlib.crc32(body) != crc:
                    return
                pos = stop
                if kind == PACKET:
                    if length < packet_size:
                        return
                    arrival, timestamp, ssrc, seq, flags, pt = unpack_packet(data, start)
                    yield Packet(
                        arrival,
                        timestamp,
                        ssrc,
                        seq,
                        bool(flags & FLAG_MARKER),
                        bool(flags & FLAG_KEYFRAME),
                        pt,
                        body[packet_size:],
                    )
                elif kind == EPOCH:
                    try:
                        info = json.loads(bytes(body))
                    except ValueError:
                        return
                    yield Epoch(info if isinstance(info, dict) else {})
                elif kind == SENDER_REPORT:
                    yield SenderReport(*_REPORT.unpack_from(data, start))
                elif kind == END:
                    yield End(*_END.unpack_from(data, start))
                else:
                    return
                self.valid_bytes = pos
        finally:
            view.release()
