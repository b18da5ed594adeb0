"""Room kept back on the data directory's disk for the moment it fills up.

When a disk really fills (another program's files, a recording on a limit of 0), SQLite can
write nothing more: a lesson could then not even be ended. The server therefore keeps a file
of a few megabytes in the data directory and deletes it the first time a write fails for
lack of space, so that lessons can still end, attendance and the recording's state are still
saved, and what was recorded can be finalised. It is made again at the next start, when
there is room.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from aiohttp import web

logger = logging.getLogger(__name__)

RESERVE_FILE = "disk-reserve"


class DiskReserve:
    """A file of ``size`` bytes at ``path``, given back to the disk by ``release``."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._lock = threading.Lock()  # released from the event loop or a writer thread

    def keep(self) -> bool:
        """Make (or keep) the reserve; False, with a warning, if the disk has no room for it."""
        if self.size <= 0:
            self.path.unlink(missing_ok=True)
            return True
        try:
            if self.path.is_file() and self.path.stat().st_size >= self.size:
                return True
            with open(self.path, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.size)
            return True
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            logger.warning(
                "no room to keep %d MB in reserve on %s (%s): a disk that fills up may stop "
                "lessons from ending",
                self.size // 1_000_000,
                self.path.parent,
                exc.strerror or exc,
            )
            return False

    def release(self) -> bool:
        """Give the reserve back to the disk; True if there was one to give."""
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
        logger.error(
            "the disk of %s is full: released the %d MB kept in reserve so that lessons can "
            "end and their state is saved; free some space",
            self.path.parent,
            self.size // 1_000_000,
        )
        return True


DISK_RESERVE = web.AppKey("disk_reserve", DiskReserve)
