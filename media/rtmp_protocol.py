"""RTMP on the wire, for a server that takes a publisher's stream: the simple handshake, the
chunk stream (both ways), and AMF0 values (Adobe's RTMP 1.0 and AMF0 specifications)."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3
DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 65536
MAX_MESSAGE_SIZE = 4 * 1024 * 1024  # a 1080p keyframe is far smaller; more is an attack

# message types
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
COMMAND_AMF3 = 17
DATA_AMF0 = 18
COMMAND_AMF0 = 20


class RtmpError(Exception):
    """The peer broke the protocol."""


@dataclass
class Message:
    type: int
    stream_id: int
    timestamp: int  # milliseconds
    payload: bytes


# AMF0


class AmfObject(dict[str, Any]):
    """An AMF0 object (as opposed to an ECMA array, which decodes to a plain dict)."""


def amf_encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0x05)
    elif isinstance(value, bool):
        out += bytes((0x01, int(value)))
    elif isinstance(value, int | float):
        out.append(0x00)
        out += struct.pack("!d", float(value))
    elif isinstance(value, str):
        data = value.encode("utf-8")
        if len(data) > 0xFFFF:
            out.append(0x0C)
            out += struct.pack("!I", len(data))
        else:
            out.append(0x02)
            out += struct.pack("!H", len(data))
        out += data
    elif isinstance(value, dict):
        out.append(0x03)
        for key, item in value.items():
            name = str(key).encode("utf-8")
            out += struct.pack("!H", len(name)) + name
            _encode(item, out)
        out += b"\x00\x00\x09"
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def amf_decode(data: bytes) -> list[Any]:
    """Every AMF0 value in ``data`` (an AMF3 switch ends the list: not needed here)."""
    values: list[Any] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0x11:
            break
        value, pos = _decode(data, pos, 0)
        values.append(value)
    return values


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > 16:
        raise RtmpError("AMF0 nested too deep")
    try:
        marker = data[pos]
        pos += 1
        if marker == 0x00:
            return struct.unpack_from("!d", data, pos)[0], pos + 8
        if marker == 0x01:
            return bool(data[pos]), pos + 1
        if marker == 0x02:
            (size,) = struct.unpack_from("!H", data, pos)
            return data[pos + 2 : pos + 2 + size].decode("utf-8", "replace"), pos + 2 + size
        if marker == 0x0C:
            (size,) = struct.unpack_from("!I", data, pos)
            return data[pos + 4 : pos + 4 + size].decode("utf-8", "replace"), pos + 4 + size
        if marker in (0x03, 0x08):
            if marker == 0x08:
                pos += 4  # the count, a hint only
            result: dict[str, Any] = AmfObject() if marker == 0x03 else {}
            while True:
                (size,) = struct.unpack_from("!H", data, pos)
                pos += 2
                if size == 0 and data[pos] == 0x09:
                    return result, pos + 1
                key = data[pos : pos + size].decode("utf-8", "replace")
                result[key], pos = _decode(data, pos + size, depth + 1)
        if marker == 0x0A:
            (count,) = struct.unpack_from("!I", data, pos)
            pos += 4
            items = []
            for _ in range(min(count, 4096)):
                item, pos = _decode(data, pos, depth + 1)
                items.append(item)
            return items, pos
        if marker == 0x0B:
            return struct.unpack_from("!d", data, pos)[0], pos + 10
        if marker in (0x05, 0x06):
            return None, pos
    except (IndexError, struct.error) as exc:
        raise RtmpError(f"truncated AMF0 value: {exc}") from None
    raise RtmpError(f"unsupported AMF0 type 0x{marker:02x}")


# the handshake


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server's side of the simple handshake (no digest: FFmpeg, OBS and hardware
    encoders publish after it)."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
    if c0c1[0] != RTMP_VERSION:
        raise RtmpError(f"RTMP version {c0c1[0]}, not {RTMP_VERSION}")
    c1 = c0c1[1:]
    s1 = struct.pack("!II", int(time.monotonic() * 1000) & 0xFFFFFFFF, 0) + os.urandom(
        HANDSHAKE_SIZE - 8
    )
    # S2 echoes C1 whole: librtmp (OBS) compares them byte for byte
    writer.write(bytes((RTMP_VERSION,)) + s1 + c1)
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)  # C2: the echo of S1, nothing to check


# chunks


@dataclass
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False
    buffer: bytearray = field(default_factory=bytearray)


class ChunkReader:
    """Reassembles the messages of an RTMP chunk stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _ChunkStream] = {}
        self.received = 0  # bytes, for acknowledgements

    async def _read(self, size: int) -> bytes:
        data = await self._reader.readexactly(size)
        self.received += size
        return data

    async def message(self) -> Message:
        """The next whole message (protocol control messages included)."""
        while True:
            first = (await self._read(1))[0]
            fmt, csid = first >> 6, first & 0x3F
            if csid == 0:
                csid = 64 + (await self._read(1))[0]
            elif csid == 1:
                low, high = await self._read(2)
                csid = 64 + low + high * 256
            stream = self._streams.get(csid)
            if stream is None:
                if fmt != 0:
                    raise RtmpError(f"chunk stream {csid} starts without a full header")
                stream = self._streams[csid] = _ChunkStream()
            new_message = not stream.buffer
            if fmt <= 2:
                header = await self._read((11, 7, 3)[fmt])
                stamp = int.from_bytes(header[0:3], "big")
                if fmt <= 1:
                    stream.length = int.from_bytes(header[3:6], "big")
                    stream.type = header[6]
                    if stream.length > MAX_MESSAGE_SIZE:
                        raise RtmpError(f"a message of {stream.length} bytes")
                if fmt == 0:
                    stream.stream_id = int.from_bytes(header[7:11], "little")
                stream.extended = stamp == 0xFFFFFF
                if stream.extended:
                    stamp = int.from_bytes(await self._read(4), "big")
                if fmt == 0:
                    stream.timestamp = stamp
                    stream.delta = 0
                else:
                    stream.delta = stamp
                    stream.timestamp = (stream.timestamp + stamp) & 0xFFFFFFFF
            else:
                if stream.extended:
                    await self._read(4)  # repeated on every chunk of such a message
                if new_message:
                    stream.timestamp = (stream.timestamp + stream.delta) & 0xFFFFFFFF
            want = min(self.chunk_size, stream.length - len(stream.buffer))
            stream.buffer += await self._read(want)
            if len(stream.buffer) < stream.length:
                continue
            message = Message(stream.type, stream.stream_id, stream.timestamp, bytes(stream.buffer))
            stream.buffer.clear()
            if message.type == SET_CHUNK_SIZE:
                size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
                if not 1 <= size <= MAX_CHUNK_SIZE:
                    raise RtmpError(f"chunk size {size}")
                self.chunk_size = size
            elif message.type == ABORT:
                aborted = int.from_bytes(message.payload[:4], "big")
                if aborted in self._streams:
                    self._streams[aborted].buffer.clear()
            return message


class ChunkWriter:
    """Writes messages as chunks (one chunk stream per kind: control 2, commands 3)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.chunk_size = DEFAULT_CHUNK_SIZE

    def send(self, kind: int, payload: bytes, stream_id: int = 0, csid: int | None = None) -> None:
        if csid is None:
            csid = 2 if kind <= SET_PEER_BANDWIDTH else 3
        out = bytearray()
        out.append(csid)  # fmt 0
        out += (0).to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes((kind,))
        out += stream_id.to_bytes(4, "little")
        for start in range(0, len(payload), self.chunk_size):
            if start:
                out.append(0xC0 | csid)  # fmt 3: the rest of the same message
            out += payload[start : start + self.chunk_size]
        self._writer.write(bytes(out))

    def set_chunk_size(self, size: int) -> None:
        self.send(SET_CHUNK_SIZE, size.to_bytes(4, "big"))
        self.chunk_size = size

    def command(self, name: str, transaction: float, *args: Any, stream_id: int = 0) -> None:
        self.send(COMMAND_AMF0, amf_encode(name, transaction, *args), stream_id)
