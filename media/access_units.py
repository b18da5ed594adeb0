"""Joins the pieces of H.264 that FFmpeg's RTSP demuxer hands out unparsed (NAL units, STAP-A
contents, FU-A fragments, each with its RTP timestamp) back into whole access units: one
picture, every slice of it, under one timestamp.

FFmpeg's own H.264 parser must not do this: it ends an access unit at any SPS, PPS, SEI or
access unit delimiter that follows a slice (H.264 section 7.4.1.2.3), so a picture of several
slices that each come after their parameter sets, as recording-and-broadcast boxes send them,
leaves it as several "frames" of one timestamp, each of which would end with the RTP marker
bit. Here a new access unit begins where the camera's RTP timestamp changes, at an access unit
delimiter, or at a slice that starts a picture (``first_mb_in_slice`` 0) once the current one
has a slice."""

from __future__ import annotations

from typing import Generic, TypeVar

NAL_SLICE = 1
NAL_IDR = 5
NAL_AUD = 9
_START = b"\x00\x00\x01"

Time = TypeVar("Time")


def _starts(piece: bytes) -> int:
    """Where the first NAL unit's header is when ``piece`` begins with a start code, else -1
    (an FU-A continuation)."""
    if piece.startswith(_START):
        return 3
    if piece.startswith(b"\x00" + _START):
        return 4
    return -1


def _units(piece: bytes, first: int) -> list[tuple[int, int]]:
    """(NAL type, first byte after the header) of each NAL unit that begins in ``piece``."""
    found = []
    pos = first
    while 0 <= pos < len(piece):
        found.append((piece[pos] & 0x1F, piece[pos + 1] if pos + 1 < len(piece) else 0))
        next_code = piece.find(_START, pos + 1)
        pos = next_code + 3 if next_code >= 0 else -1
    return found


class AccessUnits(Generic[Time]):
    """Pieces of one stream in, in the order the demuxer gives them; whole access units out,
    each with the time of its first piece. An access unit comes out once the next one begins
    (or at ``flush()``), as it did from FFmpeg's parser."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._time: Time | None = None
        self._has_slice = False

    def push(self, piece: bytes, time: Time) -> list[tuple[bytes, Time]]:
        done: list[tuple[bytes, Time]] = []
        first = _starts(piece)
        units = _units(piece, first) if first >= 0 else []
        if self._pieces:
            new_picture = time != self._time
            if not new_picture and units:
                nal_type, after = units[0]
                new_picture = nal_type == NAL_AUD or (
                    self._has_slice and nal_type in (NAL_SLICE, NAL_IDR) and after & 0x80 != 0
                )
            if new_picture:
                done = self.flush()
        if not self._pieces:
            if first < 0:
                return done  # the rest of a unit whose start was never seen
            self._time = time
        self._pieces.append(piece)
        self._has_slice = self._has_slice or any(t in (NAL_SLICE, NAL_IDR) for t, _ in units)
        return done

    def flush(self) -> list[tuple[bytes, Time]]:
        """The access unit under way, as it is (the stream ended)."""
        if not self._pieces or self._time is None:
            return []
        unit = b"".join(self._pieces)
        time = self._time
        self._pieces = []
        self._time = None
        self._has_slice = False
        return [(unit, time)]
