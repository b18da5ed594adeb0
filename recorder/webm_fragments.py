"""Clusters of a WebM file while FFmpeg's Matroska muxer writes it: a header (EBML, the
segment's info and tracks), then clusters, each written whole; cues or chapters after the
last cluster mean the file is complete."""

from __future__ import annotations

import os

from .fragments import MAX_HEADER_BYTES, BadFile, Fragment

_PEEK = 256  # bytes read at a cluster's start: its headers and its first block's
# how far into a cluster its first video block is looked for (audio blocks may come first)
_FIRST_VIDEO_WITHIN = 64 << 10

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
