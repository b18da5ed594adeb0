"""The fragments of a recording file that is still being written: where each complete one
lies in the file, its time, and whether a player can start there.

A WebM file is a header then clusters; a fragmented MP4 file is ``ftyp`` + ``moov`` then
``moof`` + ``mdat`` pairs. The writer appends whole fragments, so a scanner reads the file
from where it stopped and takes a fragment once all its bytes are there; what follows the
fragments (WebM cues, MP4 ``mfra``) means the file is complete.

Only headers are read: a few bytes per fragment, however large the fragment is.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Protocol

# the header of a file is small; one that is not is not a file of ours
MAX_HEADER_BYTES = 1 << 20
_PEEK = 256  # bytes read at a fragment's start: its headers and its first block's
# how far into a cluster its first video block is looked for (audio blocks may come first)
_FIRST_VIDEO_WITHIN = 64 << 10


@dataclass(frozen=True, slots=True)
class Fragment:
    offset: int  # in the file
    end: int
    time: float  # of its first frame, seconds from the file's time 0
    keyframe: bool  # a player can start here (its first video frame is a keyframe)


class BadFile(Exception):
    """The file is not what the recorder writes."""


class FragmentScanner(Protocol):
    header: bytes | None  # what a player needs before any fragment, once written
    complete: bool  # the writer finished the file: no fragment follows

    def scan(self, fd: int, size: int) -> list[Fragment]:
        """The fragments completed since the last call, in a file now ``size`` bytes long."""
        ...


def scanner_for(container: str) -> FragmentScanner:
    if container == "webm":
        return WebmScanner()
    if container == "mp4":
        return Mp4Scanner()
    raise BadFile(f"not a container the recorder writes: {container!r}")


# WebM (Matroska)

_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_CLUSTER = 0x1F43B675
_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
# the segment's size as a live stream has it: not known (the writer fills it in at the end)
_UNKNOWN_SIZE_8 = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-size integer at ``pos``; None if cut short."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        length += 1
        mask >>= 1
    if length > 8:
        raise BadFile("invalid EBML number")
    if pos + length > len(data):
        return None
    value = first if keep_marker else first & (mask - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, length


def _element(data: bytes, pos: int) -> tuple[int, int, int | None] | None:
    """(id, header length, body size or None if unknown) at ``pos``; None if cut short."""
    ident = _vint(data, pos, True)
    if ident is None:
        return None
    size = _vint(data, pos + ident[1], False)
    if size is None:
        return None
    unknown = size[0] == (1 << (7 * size[1])) - 1
    return ident[0], ident[1] + size[1], None if unknown else size[0]


class WebmScanner:
    """Clusters of a WebM file as FFmpeg's Matroska muxer writes them (each written whole)."""

    def __init__(self) -> None:
        self.header: bytes | None = None
        self.complete = False
        self._pos = 0  # where the next top-level element of the segment starts
        self._scale = 1e-9  # seconds per timecode tick (TimecodeScale is 1 ms unless told)
        self._video: int | None = None  # the video track's number, if there is one

    def scan(self, fd: int, size: int) -> list[Fragment]:
        if self.header is None and not self._read_header(fd, size):
            return []
        found: list[Fragment] = []
        while not self.complete and self._pos < size:
            head = os.pread(fd, _PEEK, self._pos)
            element = _element(head, 0)
            if element is None:
                break
            ident, header_length, body = element
            if ident != _CLUSTER:
                self.complete = True  # cues, chapters, tags: the writer's trailer
                break
            if body is None:
                raise BadFile("a cluster of unknown size")
            end = self._pos + header_length + body
            if end > size:
                break  # not all written yet
            found.append(self._cluster(fd, head, self._pos, header_length, end))
            self._pos = end
        return found

    def _read_header(self, fd: int, size: int) -> bool:
        data = os.pread(fd, min(size, MAX_HEADER_BYTES), 0)
        ebml = _element(data, 0)
        if ebml is None:
            return False
        if ebml[0] != _EBML or ebml[2] is None:
            raise BadFile("not a WebM file")
        segment_at = ebml[1] + ebml[2]
        segment = _element(data, segment_at)
        if segment is None:
            return False
        if segment[0] != _SEGMENT:
            raise BadFile("no segment in the WebM file")
        pos = segment_at + segment[1]
        while True:
            child = _element(data, pos)
            if child is None:
                if len(data) >= MAX_HEADER_BYTES:
                    raise BadFile("the WebM header does not end")
                return False
            ident, header_length, body = child
            if ident == _CLUSTER:
                break
            if body is None:
                raise BadFile("a header element of unknown size")
            if ident == 0x1549A966:  # Info: TimecodeScale may be in it
                self._read_scale(data[pos + header_length : pos + header_length + body])
            elif ident == 0x1654AE6B:  # Tracks
                self._read_tracks(data[pos + header_length : pos + header_length + body])
            pos += header_length + body
        id_length = 4  # the segment's id, 0x18538067
        body_at = segment_at + segment[1]
        self.header = data[: segment_at + id_length] + _UNKNOWN_SIZE_8 + data[body_at:pos]
        self._pos = pos
        return True

    def _read_scale(self, info: bytes) -> None:
        pos = 0
        while (child := _element(info, pos)) is not None:
            ident, header_length, body = child
            if body is None:
                return
            if ident == 0x2AD7B1:  # TimecodeScale, in nanoseconds
                value = int.from_bytes(info[pos + header_length : pos + header_length + body])
                if value > 0:
                    self._scale = value * 1e-9
            pos += header_length + body

    def _read_tracks(self, tracks: bytes) -> None:
        pos = 0
        while (entry := _element(tracks, pos)) is not None and entry[2] is not None:
            ident, header_length, body = entry[0], entry[1], entry[2]
            if ident == 0xAE:  # TrackEntry
                number = kind = None
                inner = pos + header_length
                while (child := _element(tracks, inner)) is not None and child[2] is not None:
                    start = inner + child[1]
                    value = int.from_bytes(tracks[start : start + child[2]])
                    if child[0] == 0xD7:  # TrackNumber
                        number = value
                    elif child[0] == 0x83:  # TrackType
                        kind = value
                    inner = start + child[2]
                    if inner >= pos + header_length + body:
                        break
                if kind == 1 and number is not None and self._video is None:
                    self._video = number
            pos += header_length + body

    def _cluster(self, fd: int, head: bytes, offset: int, header_length: int, end: int) -> Fragment:
        """A cluster is a place to start if its first video block is a keyframe (FFmpeg
        begins a cluster at each video keyframe; it also begins one every FRAGMENT_MS)."""
        timecode: int | None = None
        keyframe = self._video is None
        limit = min(end - offset, _FIRST_VIDEO_WITHIN)
        pos = header_length
        while True:
            child = _element(head, pos)
            if child is not None and child[0] in (_SIMPLE_BLOCK, _BLOCK_GROUP):
                block = pos + child[1]
                if child[0] == _BLOCK_GROUP:
                    inner = _element(head, block)
                    block = block + inner[1] if inner is not None and inner[0] == _BLOCK else -1
                track = _vint(head, block, False) if block >= 0 else None
                if track is None or block + track[1] + 3 > len(head):
                    child = None  # cut short: read further
                elif track[0] == self._video:
                    # a SimpleBlock says keyframe in its flags; a Block in a group does not
                    flags = head[block + track[1] + 2]
                    keyframe = child[0] == _SIMPLE_BLOCK and bool(flags & 0x80)
                    break
            if child is None or child[2] is None:
                if child is None and len(head) < limit:
                    head = os.pread(fd, limit, offset)
                    continue
                break
            start = pos + child[1]
            stop = start + child[2]
            if child[0] == _TIMECODE and stop <= len(head):
                timecode = int.from_bytes(head[start:stop])
            pos = stop
        if timecode is None:
            raise BadFile(f"a cluster at {offset} has no timecode")
        return Fragment(offset, end, timecode * self._scale, keyframe)


# fragmented MP4

_BOX = struct.Struct(">I4s")
_SYNC_BIT = 0x00010000  # sample_is_non_sync_sample


def _boxes(data: bytes, pos: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, body start, box end) of the boxes in ``data[pos:end]``."""
    found = []
    while pos + 8 <= end:
        size, kind = _BOX.unpack_from(data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        if size < header:
            break
        found.append((kind, pos + header, min(pos + size, end)))
        pos += size
    return found


class Mp4Scanner:
    """``moof`` + ``mdat`` pairs of a fragmented MP4 file (``empty_moov``, ``default_base_moof``),
    timed by the video track's ``tfdt`` (else the first track's)."""

    def __init__(self) -> None:
        self.header: bytes | None = None
        self.complete = False
        self._pos = 0
        self._timescales: dict[int, int] = {}
        self._video: int | None = None  # track id

    def scan(self, fd: int, size: int) -> list[Fragment]:
        if self.header is None and not self._read_header(fd, size):
            return []
        found: list[Fragment] = []
        while not self.complete and self._pos + 8 <= size:
            top = self._box_at(fd, self._pos)
            if top is None:
                break
            kind, box_size = top
            if kind != b"moof":
                if kind == b"mfra":
                    self.complete = True
                    break
                self._pos += box_size  # styp, sidx, free: nothing to time
                continue
            moof_end = self._pos + box_size
            mdat = self._box_at(fd, moof_end)
            if mdat is None or moof_end + mdat[1] > size:
                break  # not all written yet
            if mdat[0] != b"mdat":
                raise BadFile(f"a moof at {self._pos} is not followed by its mdat")
            moof = os.pread(fd, box_size, self._pos)
            end = moof_end + mdat[1]
            time, keyframe = self._timing(moof)
            found.append(Fragment(self._pos, end, time, keyframe))
            self._pos = end
        return found

    @staticmethod
    def _box_at(fd: int, pos: int) -> tuple[bytes, int] | None:
        head = os.pread(fd, 16, pos)
        if len(head) < 8:
            return None
        size, kind = _BOX.unpack_from(head, 0)
        if size == 1:
            if len(head) < 16:
                return None
            size = struct.unpack_from(">Q", head, 8)[0]
        if size < 8:
            raise BadFile(f"a box at {pos} of size {size}")
        return kind, size

    def _read_header(self, fd: int, size: int) -> bool:
        data = os.pread(fd, min(size, MAX_HEADER_BYTES), 0)
        boxes = _boxes(data, 0, len(data))
        moov = next((b for b in boxes if b[0] == b"moov"), None)
        if not boxes or boxes[0][0] != b"ftyp":
            if len(data) >= 8:
                raise BadFile("not an MP4 file")
            return False
        if (
            moov is None
            or moov[2] > len(data)
            or _BOX.unpack_from(data, moov[1] - 8)[0] + (moov[1] - 8) > len(data)
        ):
            if len(data) >= MAX_HEADER_BYTES:
                raise BadFile("the MP4 header does not end")
            return False
        for kind, start, end in _boxes(data, moov[1], moov[2]):
            if kind == b"trak":
                self._track(data, start, end)
        self.header = data[: moov[2]]
        self._pos = moov[2]
        return True

    def _track(self, data: bytes, start: int, end: int) -> None:
        track_id = None
        timescale = None
        handler = None
        for kind, body, stop in _boxes(data, start, end):
            if kind == b"tkhd":
                version = data[body]
                track_id = struct.unpack_from(">I", data, body + (20 if version == 1 else 12))[0]
            elif kind == b"mdia":
                for inner, inner_body, _ in _boxes(data, body, stop):
                    if inner == b"mdhd":
                        version = data[inner_body]
                        timescale = struct.unpack_from(
                            ">I", data, inner_body + (20 if version == 1 else 12)
                        )[0]
                    elif inner == b"hdlr":
                        handler = data[inner_body + 8 : inner_body + 12]
        if track_id is None or not timescale:
            raise BadFile("an MP4 track without id or timescale")
        self._timescales[track_id] = timescale
        if handler == b"vide" and self._video is None:
            self._video = track_id

    def _timing(self, moof: bytes) -> tuple[float, bool]:
        times: dict[int, tuple[float, bool]] = {}
        for kind, body, end in _boxes(moof, 8, len(moof)):
            if kind != b"traf":
                continue
            track_id = 0
            default_flags = 0
            decode_time = 0
            first_flags: int | None = None
            for inner, start, _ in _boxes(moof, body, end):
                flags = int.from_bytes(moof[start + 1 : start + 4])
                if inner == b"tfhd":
                    track_id = struct.unpack_from(">I", moof, start + 4)[0]
                    pos = start + 8
                    pos += 8 if flags & 0x01 else 0  # base data offset
                    pos += 4 if flags & 0x02 else 0  # sample description index
                    pos += 4 if flags & 0x08 else 0  # default duration
                    pos += 4 if flags & 0x10 else 0  # default size
                    if flags & 0x20:
                        default_flags = struct.unpack_from(">I", moof, pos)[0]
                elif inner == b"tfdt":
                    version = moof[start]
                    layout = ">Q" if version == 1 else ">I"
                    decode_time = struct.unpack_from(layout, moof, start + 4)[0]
                elif inner == b"trun" and first_flags is None:
                    pos = start + 8 + (4 if flags & 0x01 else 0)  # count, data offset
                    if flags & 0x04:
                        first_flags = struct.unpack_from(">I", moof, pos)[0]
                    elif flags & 0x400:  # per-sample flags: the first sample's
                        pos += (4 if flags & 0x100 else 0) + (4 if flags & 0x200 else 0)
                        first_flags = struct.unpack_from(">I", moof, pos)[0]
            sample_flags = default_flags if first_flags is None else first_flags
            scale = self._timescales.get(track_id) or 1
            times[track_id] = (decode_time / scale, not sample_flags & _SYNC_BIT)
        if not times:
            raise BadFile("a moof without tracks")
        if self._video is not None and self._video in times:
            return times[self._video]
        if self._video is not None:
            # audio only in this fragment: a player cannot start the picture here
            return min(t for t, _ in times.values()), False
        return min(t for t, _ in times.values()), True
