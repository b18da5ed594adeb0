"""How many lesson event sockets may be open: per lesson, per client address, and waiting for
their first-message token. Checked before the upgrade, so a refusal is a plain 4xx and costs
the server no socket it has to keep.

- A lesson takes at most 2 × its classroom cap of classroom sockets (a page reconnecting may
  briefly hold two), and apart from them ``TEACHER_SOCKETS`` of the teacher's: classrooms can
  never take the teacher's places.
- One client address holds at most ``per_address`` classroom sockets over all lessons (a school
  behind one NAT is one address), and at most ``PENDING_PER_ADDRESS`` sockets that have not yet
  said their token; the server holds at most ``MAX_PENDING`` of those in all.
- The teacher's sockets (an origin token or a key) count only against the lesson's teacher
  places, never against an address: a device at the school's address cannot lock them out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from .errors import http_error

TEACHER_SOCKETS = 8  # a teacher's tabs and devices on one lesson
CLASSROOM_SOCKETS_PER_SEAT = 2
PER_ADDRESS = 64  # default; a school's several lessons and classroom PCs behind one NAT
PENDING_PER_ADDRESS = 8  # the pages send their token with the request, never in a message
MAX_PENDING = 256
RETRY_AFTER_S = 10


@dataclass
class Place:
    """One admitted socket's place; give it back with `EventSocketLimits.release`."""

    lesson_id: str
    address: str
    kind: str  # "teacher", "classroom" or "pending"
    released: bool = field(default=False)


class EventSocketLimits:
    def __init__(self, per_address: int = PER_ADDRESS) -> None:
        self.per_address = per_address
        self._lessons: Counter[tuple[str, str]] = Counter()  # (lesson, kind) -> sockets
        self._addresses: Counter[tuple[str, str]] = Counter()  # (address, kind) -> sockets
        self._pending = 0

    def admit(self, lesson_id: str, address: str, kind: str, max_classrooms: int) -> Place:
        """A place for a socket of ``kind``, or the HTTP error that refuses it (429 for an
        address over its limit, 503 for a lesson or server that is full)."""
        self._refusal(lesson_id, address, kind, max_classrooms)
        place = Place(lesson_id, address, kind)
        self._count(place, 1)
        return place

    def settle(self, place: Place, kind: str, max_classrooms: int) -> None:
        """A pending socket said who it is: move it to ``kind``'s places, or raise the HTTP
        error that refuses it (its place is then given back)."""
        self.release(place)
        self._refusal(place.lesson_id, place.address, kind, max_classrooms)
        place.kind, place.released = kind, False
        self._count(place, 1)

    def release(self, place: Place) -> None:
        if not place.released:
            place.released = True
            self._count(place, -1)

    def _count(self, place: Place, step: int) -> None:
        for counter, key in (
            (self._lessons, (place.lesson_id, place.kind)),
            (self._addresses, (place.address, place.kind)),
        ):
            counter[key] += step
            if counter[key] <= 0:
                del counter[key]
        if place.kind == "pending":
            self._pending += step

    def _refusal(self, lesson_id: str, address: str, kind: str, max_classrooms: int) -> None:
        if kind == "teacher":
            if self._lessons[(lesson_id, kind)] >= TEACHER_SOCKETS:
                raise _full(f"the teacher already has {TEACHER_SOCKETS} event sockets open")
            return
        if kind == "pending":
            if self._addresses[(address, kind)] >= PENDING_PER_ADDRESS:
                raise _too_many(
                    f"too many event sockets from this address waiting for a token (at most "
                    f"{PENDING_PER_ADDRESS}); send the token with the request"
                )
            if self._pending >= MAX_PENDING:
                raise _full("too many event sockets are waiting for a token")
            return
        if self._addresses[(address, kind)] >= self.per_address:
            raise _too_many(
                f"too many event sockets from this address (at most {self.per_address})"
            )
        cap = CLASSROOM_SOCKETS_PER_SEAT * max_classrooms
        if self._lessons[(lesson_id, kind)] >= cap:
            raise _full(f"this lesson has all the classroom event sockets it takes ({cap})")


def _too_many(message: str) -> web.HTTPException:
    return http_error(429, "too_many_sockets", message, {"Retry-After": str(RETRY_AFTER_S)})


def _full(message: str) -> web.HTTPException:
    return http_error(503, "sockets_full", message, {"Retry-After": str(RETRY_AFTER_S)})


EVENT_SOCKET_LIMITS = web.AppKey("event_socket_limits", EventSocketLimits)
