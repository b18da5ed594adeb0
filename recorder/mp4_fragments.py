"""Fragments of a fragmented MP4 file while FFmpeg's MP4 muxer writes it (``empty_moov``,
``default_base_moof``): ``ftyp`` + ``moov``, then ``moof`` + ``mdat`` pairs; ``mfra`` after
them means the file is complete."""

from __future__ import annotations

import os
import struct

from .fragments import MAX_HEADER_BYTES, BadFile, Fragment

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
