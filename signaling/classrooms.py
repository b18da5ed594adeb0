"""Who is in a lesson right now, as the teacher sees it: the connected classrooms, their
raised hands, who is on stage, and how well each one receives.

A classroom is a name, unique within its lesson. It is present while it has at least one
WHEP session; a new session under the same name while the old one lingers is the same
classroom coming back, not a second visit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .contracts import LessonJournal
from .errors import http_error

# printable: no C0/C1 control, no bidirectional override or isolate, no line separator
_NAME = re.compile(
    r"^[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]{1,64}$"
)
RESERVED = "teacher"  # how the teacher is named in chat and reports
# the paths a classroom's media may take, as its page reports them: straight to the server's
# UDP or ICE-TCP port, or through the TURN server (直连 UDP / 直连 TCP / 中继)
PATHS = ("udp", "tcp", "relay")
FEED_PREFIX = "feed:"


def feed_source(classroom: str) -> str:
    """The SFU source a classroom's return feed is published as."""
    return FEED_PREFIX + classroom


def valid_name(name: str) -> bool:
    """A classroom's name: 1 to 64 printable characters, and not the teacher's."""
    return bool(_NAME.match(name)) and name.casefold() != RESERVED


_CLIENT = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def valid_client(client: str) -> bool:
    """A client id: the random id a classroom page keeps, to be known again on return."""
    return bool(_CLIENT.match(client))


def classroom_name(raw: object) -> str:
    """``raw`` as a classroom's name, stripped; 400 if it cannot be one."""
    name = raw.strip() if isinstance(raw, str) else ""
    if not valid_name(name):
        raise http_error(
            400, "bad_name", f"name must be 1 to 64 printable characters, not {RESERVED!r}"
        )
    return name


@dataclass
class Quality:
    """How one classroom receives, as last measured (see ``signaling.quality``)."""

    grade: str  # good, fair or poor
    loss: float  # 0..1
    jitter_ms: float
    rtt_ms: float | None
    bitrate_kbps: float
    freezes: int
    # what the server sends it (send_gate: full, reduced, audio_only), why, its link's
    # estimate, and the height of the camera picture it is fed (None: no picture, or unknown)
    link_state: str | None = None
    link_why: str = ""
    estimate_kbps: float | None = None
    video_height: int | None = None
    path: str | None = None  # one of PATHS, as the classroom's page last reported it

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "link_state": self.link_state,
            "link_why": self.link_why,
            "estimate_kbps": self.estimate_kbps,
            "video_height": self.video_height,
            "grade": self.grade,
            "loss": round(self.loss, 4),
            "jitter_ms": round(self.jitter_ms, 1),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 1),
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "freezes": self.freezes,
        }


@dataclass
class Classroom:
    name: str
    joined_at: float  # when the current visit began
    sessions: int = 0
    visits: int = 0
    returns: int = 0  # came back while its old session lingered (network drop)
    hand_raised_at: float | None = None
    client_stats: dict[str, float] | None = None  # the page's getStats() summary
    client_stats_at: float = 0.0
    path: str | None = None  # how its media reaches it (PATHS), from its page's stats
    quality: Quality | None = None

    @property
    def present(self) -> bool:
        return self.sessions > 0

    @property
    def reconnects(self) -> int:
        return self.visits - 1 + self.returns


class Room:
    """The classrooms of one live lesson: who is present, raised hands, who is on stage. The
    journal keeps what lasts (visits, hands, turns on stage)."""

    def __init__(
        self, lesson_id: str, journal: LessonJournal, clock: Callable[[], float] = time.time
    ) -> None:
        self.lesson_id = lesson_id
        self.classrooms: dict[str, Classroom] = {}
        self.on_stage: list[str] = []  # classroom names, in the order called
        self._journal = journal
        self._clock = clock

    def present(self) -> list[Classroom]:
        return [c for c in self.classrooms.values() if c.present]

    def hands(self) -> list[Classroom]:
        """Raised hands, in the order they went up."""
        raised = [c for c in self.present() if c.hand_raised_at is not None]
        return sorted(raised, key=lambda c: c.hand_raised_at or 0.0)

    def get(self, name: str) -> Classroom | None:
        return self.classrooms.get(name)

    def arrived(self, name: str) -> Classroom:
        """A WHEP session of ``name`` was opened."""
        now = self._clock()
        classroom = self.classrooms.get(name)
        if classroom is None:
            classroom = self.classrooms[name] = Classroom(name, now)
        if classroom.sessions == 0:
            classroom.joined_at = now
            classroom.visits += 1
            self._journal.joined(self.lesson_id, name, now)
        else:
            classroom.returns += 1
        classroom.sessions += 1
        return classroom

    def departed(self, name: str) -> bool:
        """A WHEP session of ``name`` closed; True when that was the classroom's last one (it
        has left: its hand goes down, and it leaves the stage)."""
        classroom = self.get(name)
        if classroom is None or classroom.sessions == 0:
            return False
        classroom.sessions -= 1
        if classroom.sessions:
            return False
        now = self._clock()
        self._journal.left(self.lesson_id, name, now)
        if classroom.hand_raised_at is not None:
            self.set_hand(name, False)
        classroom.quality = None
        classroom.client_stats = None
        classroom.path = None
        if name in self.on_stage:
            self.on_stage.remove(name)
            self._journal.event(self.lesson_id, name, "stage_off", now)
        return True

    def set_hand(self, name: str, raised: bool) -> bool:
        """Raise or lower a present classroom's hand; True if that changed anything."""
        classroom = self.get(name)
        if classroom is None or (classroom.hand_raised_at is not None) == raised:
            return False
        now = self._clock()
        classroom.hand_raised_at = now if raised else None
        self._journal.event(self.lesson_id, name, "hand_raised" if raised else "hand_lowered", now)
        return True

    def set_on_stage(self, name: str, on: bool) -> bool:
        if (name in self.on_stage) == on:
            return False
        if on:
            self.on_stage.append(name)
        else:
            self.on_stage.remove(name)
        self._journal.event(self.lesson_id, name, "stage_on" if on else "stage_off", self._clock())
        return True

    def end(self) -> None:
        """The lesson ended: whoever is still in it leaves now."""
        now = self._clock()
        for name in self.on_stage:
            self._journal.event(self.lesson_id, name, "stage_off", now)
        for classroom in self.present():
            self._journal.left(self.lesson_id, classroom.name, now)
        self.on_stage.clear()
        self.classrooms.clear()
