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
import os
import struct
import zlib
from collections.abc import Sequence
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


def packet_chunks(
    arrival: float,
    timestamp: int,
    ssrc: int,
    sequence_number: int,
    flags: int,
    payload_type: int,
    payload: bytes | memoryview,
) -> tuple[bytes, bytes, bytes | memoryview]:
    """A packet record in three pieces, so that the payload is copied once, into the file."""
    fields = _PACKET.pack(arrival, timestamp, ssrc, sequence_number, flags, payload_type)
    crc = zlib.crc32(payload, zlib.crc32(fields))
    header = _HEADER.pack(SYNC, PACKET, len(fields) + len(payload), crc)
    return header, fields, payload


def packet_record(
    arrival: float,
    timestamp: int,
    ssrc: int,
    sequence_number: int,
    flags: int,
    payload_type: int,
    payload: bytes | memoryview,
) -> bytes:
    return b"".join(
        packet_chunks(arrival, timestamp, ssrc, sequence_number, flags, payload_type, payload)
    )


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

    def write(self, chunks: Sequence[bytes | memoryview]) -> int:
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


# A packet as read back: (arrival, timestamp, ssrc, sequence number, flags, payload type,
# payload). A plain tuple: a 45-minute lesson has half a million of them to go through.
Packet = tuple[float, int, int, int, int, int, memoryview]


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


class LogTail:
    """Reads a log from where it stopped last time: the whole of it after a crash, or what
    the writer appended since, while a lesson is still being recorded.

    Records are parsed from chunks of the file; a payload is a view into its chunk."""

    CHUNK = 8 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self.valid_bytes = 0  # whole, well-formed records read so far (with the magic)
        self.broken = False  # a record failed its check: nothing after it is trusted
        self._file: BinaryIO | None = None
        self._rest = b""  # the start of a record whose end was not written yet

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def unread(self) -> int:
        """Bytes written to the log that have not been read yet (0 once it is broken)."""
        if self.broken:
            return 0
        size = self.size()
        return size if self._file is None else size - self._file.tell()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, max_bytes: int = CHUNK) -> list[Record]:
        """The records appended since the last call (at most about ``max_bytes`` of them)."""
        if self.broken:
            return []
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            except FileNotFoundError:
                return []
        chunk = self._file.read(max_bytes)
        if not chunk:
            return []
        data = self._rest + chunk if self._rest else chunk
        pos = 0
        if self.valid_bytes == 0:
            if len(data) < len(MAGIC):
                self._rest = data
                return []
            if data[: len(MAGIC)] != MAGIC:
                self.broken = True
                return []
            pos = self.valid_bytes = len(MAGIC)
        records, used = self._parse(data, pos)
        self.valid_bytes += used - pos
        self._rest = data[used:]
        if self._rest and len(self._rest) > MAX_BODY + _HEADER.size:
            self.broken = True  # no record is that long: this is not a torn tail
        return records

    def _parse(self, data: bytes, pos: int) -> tuple[list[Record], int]:
        records: list[Record] = []
        append = records.append
        view = memoryview(data)
        end = len(data)
        header = _HEADER.unpack_from
        header_size = _HEADER.size
        unpack_packet = _PACKET.unpack_from
        packet_size = _PACKET.size
        crc32 = zlib.crc32
        while pos + header_size <= end:
            sync, kind, length, crc = header(data, pos)
            start = pos + header_size
            stop = start + length
            if sync != SYNC or length > MAX_BODY:
                self.broken = True
                break
            if stop > end:
                break  # not all written yet
            body = view[start:stop]
            if crc32(body) != crc:
                self.broken = True
                break
            if kind == PACKET:
                if length < packet_size:
                    self.broken = True
                    break
                append((*unpack_packet(data, start), body[packet_size:]))
            elif kind == EPOCH:
                try:
                    info = json.loads(bytes(body))
                except ValueError:
                    self.broken = True
                    break
                append(Epoch(info if isinstance(info, dict) else {}))
            elif kind == SENDER_REPORT:
                append(SenderReport(*_REPORT.unpack_from(data, start)))
            elif kind == END:
                append(End(*_END.unpack_from(data, start)))
            else:
                self.broken = True
                break
            pos = stop
        return records, pos
