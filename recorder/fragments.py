"""The fragments of a recording file that is still being written: where each complete one
lies in the file, its time, and whether a player can start there.

The writer appends whole fragments (recorder.remux), so a scanner reads the file from where
it stopped and takes a fragment once all its bytes are there; what follows the fragments
means the file is complete. Only headers are read: a few bytes per fragment, however large
the fragment is. One scanner per container: recorder.webm_fragments, recorder.mp4_fragments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# the header of a file is small; one that is not is not a file of ours
MAX_HEADER_BYTES = 1 << 20


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
