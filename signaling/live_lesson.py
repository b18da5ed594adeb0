"""One lesson while it is held: its media router, its WHIP/WHEP sessions, its room (the
classrooms present, their hands, the stage), and what its recording is told. ``close`` ends
all of it, whoever asks: the lesson's end, the server's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from media.consumer import Consumer
from media.origin_pull import OriginPull
from media.peer import Peer
from media.producer import Sink
from media.pulled_source import PulledSource, PullState, PullStatus
from media.pushed_source import PushedSource
from media.router import Router
from media.sfu import Sfu
from media.subscriber import Subscriber

from .classrooms import Room
from .contracts import LessonJournal, LessonState, LessonStore, Role
from .errors import http_error
from .events_hub import EventsHub
from .recording_port import RecordingHooks
from .sessions import Session, Sessions
from .source_url import SourceUrl
from .stage import stage_source

logger = logging.getLogger(__name__)

PULLED_SOURCE = "camera"  # what a camera's stream (source_url) is published as
RETRY_FULL_S = 5  # how soon a classroom turned away from a full lesson should ask again


UPLINK_FRESH_S = 10.0  # a teacher's uplink report older than this tells nothing


class LiveLesson:
    """Made by ``LiveLessons`` (which hands it ``closed``, to forget it once it closes)."""

    def __init__(
        self,
        lesson_id: str,
        sfu: Sfu,
        store: LessonStore,
        journal: LessonJournal,
        events: EventsHub,
        recording: RecordingHooks,
        closed: Callable[[LiveLesson], None],
        connect_timeout_s: float = 15.0,
    ) -> None:
        self.id = lesson_id
        self.sessions = Sessions()
        self.room = Room(lesson_id, journal)
        self.closed = False
        self._sfu = sfu
        self._store = store
        self._events = events
        self._recording = recording
        self._closed = closed
        self._router: Router | None = None  # made with the first peer
        self._connect_timeout_s = connect_timeout_s
        # classrooms (name, client) that watch over HTTP for want of a WebRTC path
        self._over_http: Counter[tuple[str, str | None]] = Counter()
        self._removed: set[str] = set()  # classroom names the teacher removed, until rotate
        # classrooms watching the recording (catch-up): their live video is held back
        self._rewinding: set[str] = set()
        # what the teacher's browser last said of its uplink, per source (signaling.interaction)
        self.uplinks: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pulled: PulledSource | None = None  # the camera pulled from source_url
        self._relayed: OriginPull | None = None  # or the lesson relayed from its origin
        self._pulled_from = ""  # its URL, masked
        self._pushed: PushedSource | None = None  # the camera an encoder pushes (RTMP)

    # media

    def fresh_uplinks(self, now: float) -> dict[str, dict[str, Any]]:
        """The teacher's uplink per source, as its browser estimated it lately."""
        return {
            source: {k: v for k, v in report.items() if k != "at"}
            for source, report in self.uplinks.items()
            if now - report["at"] <= UPLINK_FRESH_S
        }

    @property
    def router(self) -> Router | None:
        return self._router

    def _media(self) -> Router:
        if self.closed:
            raise http_error(410, "lesson_ended", "this lesson has ended")
        if self._router is None:
            self._router = self._sfu.router(self.id, self._stage_source)
        return self._router

    def _stage_source(self, sink: Sink) -> str | None:
        return stage_source(sink, self.room.on_stage)

    def new_publisher(self, source: str, label: str) -> Peer:
        return self._media().new_publisher(Sessions.new_id(), source, label)

    def new_subscriber(
        self, label: str, slots: dict[str, tuple[str, ...]], excluded_source: str | None = None
    ) -> Peer:
        return self._media().new_subscriber(
            Sessions.new_id(), label, slots, excluded_source=excluded_source
        )

    async def pull(self, source: SourceUrl | None) -> None:
        """Pull the lesson's camera from ``source`` from now on (None: stop pulling); the
        stream's producers replace nobody's: a teacher publishing the camera is refused while
        a source is set."""
        feed: PulledSource | OriginPull | None = self._pulled or self._relayed
        if feed is not None:
            self._pulled = self._relayed = None
            await feed.close()
            logger.info("lesson %s: stopped pulling %s", self.id, self._pulled_from)
        if source is not None and not self.closed:
            self._pulled_from = source.masked
            if source.kind == "whep":
                # an edge of the origin's lesson: every source it sends, not only its camera
                logger.info("lesson %s: relaying the lesson at %s", self.id, source.masked)
                endpoint, name, token = source.whep()
                self._relayed = self._media().relay(
                    endpoint, name, token, self._pull_changed, self.changed
                )
            else:
                logger.info(
                    "lesson %s: pulling its %s from %s", self.id, PULLED_SOURCE, source.masked
                )
                self._pulled = self._media().pull(
                    PULLED_SOURCE, source.reveal(), self._pull_changed
                )
        self.changed()

    @property
    def relayed(self) -> bool:
        """Whether this lesson is an edge of a lesson on another server (its origin)."""
        return self._relayed is not None

    async def push(self) -> PushedSource:
        """An encoder starts pushing the camera over RTMP: it replaces an earlier push."""
        if self._pushed is not None:
            pushed, self._pushed = self._pushed, None
            await pushed.close()
        self._pushed = self._media().push(PULLED_SOURCE, self._pull_changed)
        self.changed()
        return self._pushed

    def pushing(self) -> bool:
        """Whether an encoder pushes the camera now (or is about to: connected, no picture)."""
        pushed = self._pushed
        return pushed is not None and pushed.status.state in (PullState.CONNECTING, PullState.LIVE)

    def pulled(self) -> dict[str, Any] | None:
        """The camera the server pulls (RTSP) or is pushed (RTMP), as the API and the events
        show it (a URL with its password masked), or None."""
        feed: PulledSource | PushedSource | OriginPull
        if self._relayed is not None:
            feed, via, url = self._relayed, "whep", self._pulled_from
            requests = self._relayed.keyframe_requests
        elif self._pulled is not None:
            feed, via, url = self._pulled, "rtsp", self._pulled_from
            requests = self._pulled.camera.keyframe_requests
        elif self._pushed is not None:
            feed, via, url = self._pushed, "rtmp", None
            requests = self._pushed.camera.keyframe_requests
        else:
            return None
        status = feed.status
        return {
            "source": feed.source,
            "via": via,
            "url": url,
            "state": status.state.value,
            "error": status.error,
            "code": status.code,
            "retry_in_s": status.retry_in_s,
            # keyframes classrooms asked for (after throttling): a camera cannot be asked,
            # they wait for its next one; an origin is asked (PLI)
            "keyframe_requests": requests,
        }

    def _pull_changed(self, status: PullStatus) -> None:
        pulled = self.pulled()
        if pulled is not None:
            self._events.send(self.id, {"type": "source", **pulled})
        if status.state is PullState.LIVE:
            logger.info("lesson %s: the %s is live", self.id, PULLED_SOURCE)
            self.went_live()
        self.changed()

    def sources(self) -> list[str]:
        """What the lesson's origin sends now: the teacher's sources, and a pulled camera
        while its stream comes."""
        sources = set(self.sessions.sources())
        for feed in (self._pulled, self._pushed):
            if feed is not None and feed.status.state is PullState.LIVE:
                sources.add(feed.source)
        if self._relayed is not None:
            sources.update(self._relayed.live_sources())
        return sorted(sources)

    def apply_stage(self) -> None:
        """Make the lesson's media follow who is on stage now."""
        if self._router is not None and not self._router.closed:
            self._router.reselect()

    def receivers(self) -> dict[str, list[Consumer]]:
        """Each classroom watching: the consumers of its WHEP session."""
        return {
            s.name: s.peer.consumers
            for s in self.sessions.of_kind("whep")
            if s.role is Role.CLASSROOM and s.connected and isinstance(s.peer, Subscriber)
        }

    def links(self) -> dict[str, Subscriber]:
        """Each classroom watching: its WHEP session's peer (its consumers and send gate)."""
        return {
            s.name: s.peer
            for s in self.sessions.of_kind("whep")
            if s.role is Role.CLASSROOM and s.connected and isinstance(s.peer, Subscriber)
        }

    # sessions

    def returning(self, name: str, client: str | None) -> Session | None:
        """The session this classroom still has in the lesson when it comes back after its
        network dropped (same name, same client id): it is to be replaced. Another classroom
        already using the name gets 409."""
        session = self.sessions.classroom(name)
        if session is None:
            return None
        if client is not None and session.client == client:
            return session
        raise http_error(409, "name_taken", f"a classroom named {name!r} is already in this lesson")

    def check_removed(self, name: str) -> None:
        """403 for a classroom the teacher removed, until the join link is rotated."""
        if name in self._removed:
            raise http_error(
                403,
                "removed",
                f"the teacher removed {name!r} from this lesson; a new join link is needed",
            )

    def removed(self, name: str) -> bool:
        """Whether the teacher removed ``name`` (and has not rotated the join link since)."""
        return name in self._removed

    def rewinding(self, name: str, watching: bool) -> None:
        """A classroom plays the lesson's recording (回看, 错过的 N 分钟) or goes back to live:
        while it rewinds, its live video is not sent (its link would carry the lesson twice),
        and when it comes back the video resumes at a keyframe. Its sound, return feed and
        events go on. A new session of the classroom (after a reconnect) is held as well."""
        if watching == (name in self._rewinding):
            return
        if watching:
            self._rewinding.add(name)
        else:
            self._rewinding.discard(name)
        link = self.links().get(name)
        if link is not None:
            link.gate.hold(watching)
        logger.info("lesson %s: %s %s", self.id, name, "rewinds" if watching else "is live again")

    def classroom_of(self, client: str) -> str | None:
        """The name of the classroom whose WHEP session this page (its client id) holds."""
        for session in self.sessions.of_kind("whep"):
            if session.role is Role.CLASSROOM and session.client == client:
                return session.name
        return None

    def remove_classroom(self, name: str) -> bool:
        """The teacher removes a classroom: its sessions (watching, its feed) close, and its
        name is refused until the join link is rotated. Whether it had any session."""
        self._removed.add(name)
        self._rewinding.discard(name)
        sessions = self.sessions.named(name)
        for session in sessions:
            self._spawn(session.peer.close())
        logger.info(
            "lesson %s: the teacher removed %s (%d session(s))", self.id, name, len(sessions)
        )
        return bool(sessions)

    def link_revoked(self, course_id: str, classroom: str) -> int:
        """A course link was revoked or replaced: the sessions opened with its tokens close
        now (a classroom of another link is not touched). How many closed."""
        sessions = [
            s
            for s in self.sessions.of_kind()
            if s.course_link is not None
            and (s.course_link.course_id, s.course_link.classroom) == (course_id, classroom)
        ]
        for session in sessions:
            self._spawn(session.peer.close())
        return len(sessions)

    def link_rotated(self) -> None:
        """A new join link: the classrooms removed so far may join with it."""
        self._removed.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def check_room(self, replaced: Session | None, max_classrooms: int) -> None:
        """409 with Retry-After when the lesson is full (a classroom coming back takes its own
        place)."""
        if self.sessions.classrooms() - (replaced is not None) >= max_classrooms:
            raise http_error(
                409,
                "lesson_full",
                f"this lesson already has {max_classrooms} classrooms",
                {"Retry-After": str(RETRY_FULL_S)},
            )

    async def admit(
        self,
        peer: Peer,
        role: Role,
        kind: str,
        max_classrooms: int | None = None,
        client: str | None = None,
    ) -> Session:
        """A peer has negotiated: it becomes a session of the lesson until it closes, and is
        closed if it has not connected within the connect timeout. A classroom watching
        arrives in the room once it connects (and is closed then if its place or name was
        taken by another that connected first). 410 if the lesson ended meanwhile, 409 if a
        classroom's place was taken meanwhile, 403 if the teacher removed it meanwhile."""
        if peer.closed:  # the lesson ended while we were negotiating
            raise http_error(410, "lesson_ended", "this lesson has ended")
        attends = role is Role.CLASSROOM and kind == "whep"
        replaced = None
        if attends:
            try:  # again: others may have joined while this one negotiated
                self.check_removed(peer.label)
                replaced = self.returning(peer.label, client)
                if max_classrooms is not None:
                    self.check_room(replaced, max_classrooms)
            except Exception:
                await peer.close()
                raise
        session = Session(peer.id, self.id, role, kind, peer.label, peer, client)
        self.sessions.add(session)
        lapse = asyncio.get_running_loop().call_later(
            self._connect_timeout_s, self._connect_lapsed, session
        )
        peer.on_connected(lambda _: self._connected(session, attends, max_classrooms))
        if replaced is not None:
            # the same classroom back after its network dropped: its old connection goes
            logger.info(
                "lesson %s: %s is back, replacing session %s", self.id, peer.label, replaced
            )
            await replaced.peer.close()

        def forget(_: Peer) -> None:
            lapse.cancel()
            if self.sessions.remove(session.id) is not None:
                logger.info(
                    "lesson %s: %s %s left (%s, session %s)",
                    self.id,
                    session.role.value,
                    session.name,
                    session.kind,
                    session.id,
                )
            if attends and session.connected and self.room.departed(session.name):
                self.apply_stage()
            if session.connected:
                self.changed()

        peer.on_close(forget)
        logger.info(
            "lesson %s: %s %s joined (%s, session %s)",
            self.id,
            role.value,
            peer.label,
            kind,
            peer.id,
        )
        return session

    def _connected(self, session: Session, attends: bool, max_classrooms: int | None) -> None:
        """ICE and DTLS connected: the session counts from now on; a classroom arrives in
        the room, unless another took its place or its name while it connected."""
        if session.peer.closed or self.sessions.get(session.id) is not session:
            return
        if attends:
            other = self.sessions.classroom(session.name)
            returning = (
                other is not None and session.client is not None and other.client == session.client
            )
            refusal = None
            if session.name in self._removed:
                refusal = "was removed by the teacher"
            elif other is not None and not returning:
                refusal = "has a name another classroom took meanwhile"
            elif (
                other is None
                and max_classrooms is not None
                and self.sessions.classrooms() >= max_classrooms
            ):
                refusal = "connected after the lesson filled up"
            if refusal is not None:
                logger.info("lesson %s: %s %s: closed", self.id, session.name, refusal)
                self._spawn(session.peer.close())
                return
            if returning and other is not None:
                self._spawn(other.peer.close())
        session.connected = True
        logger.info(
            "lesson %s: %s %s connected after %.2f s (%s, session %s)",
            self.id,
            session.role.value,
            session.name,
            time.time() - session.created_at,
            session.kind,
            session.id,
        )
        if attends:
            self.room.arrived(session.name)
            if session.name in self._rewinding and isinstance(session.peer, Subscriber):
                session.peer.gate.hold(True)
        self.changed()

    def watching_over_http(self, name: str, client: str | None) -> None:
        """A classroom that no WebRTC path reaches watches the lesson's recording over HTTP
        (a few seconds behind): it is present while it does, so its hand counts and the
        attendance keeps it. 409 if another classroom watches under that name."""
        self.check_removed(name)
        other = self.sessions.classroom(name)
        if other is not None and (client is None or other.client != client):
            raise http_error(409, "name_taken", f"another classroom is called {name!r}")
        self._over_http[(name, client)] += 1
        self.room.arrived(name)
        self.changed()

    def stopped_watching_over_http(self, name: str, client: str | None) -> None:
        self._over_http[(name, client)] -= 1
        if self._over_http[(name, client)] <= 0:
            del self._over_http[(name, client)]
        if self.room.departed(name):
            self.apply_stage()
        self.changed()

    def watches(self, name: str, client: str | None) -> bool:
        """Whether ``client`` is the classroom called ``name``, watching over WebRTC or, for
        want of a path, over HTTP."""
        if self.sessions.is_classroom(name, client):
            return True
        return client is not None and self._over_http[(name, client)] > 0

    def _connect_lapsed(self, session: Session) -> None:
        if session.connected or session.peer.closed:
            return
        logger.info(
            "lesson %s: %s %s did not connect within %g s (%s, session %s): closed",
            self.id,
            session.role.value,
            session.name,
            self._connect_timeout_s,
            session.kind,
            session.id,
        )
        self._spawn(session.peer.close())

    # what others are told

    def changed(self) -> None:
        """Something about the lesson changed: its event sockets get a fresh snapshot."""
        self._events.publish(self.id)

    def went_live(self) -> None:
        """The origin published a source: a scheduled lesson is live now, and a lesson to be
        recorded is recorded from now on (every publication, so after a restart too)."""
        lesson = self._store.get(self.id)
        if lesson is not None and lesson.state is LessonState.SCHEDULED:
            lesson = self._store.set_state(self.id, LessonState.LIVE)
            self.changed()
            logger.info("lesson %s is live", self.id)
        if (
            lesson is not None
            and lesson.state is LessonState.LIVE
            and self._router is not None
            and self._relayed is None  # an edge: the lesson is recorded once, at its origin
        ):
            try:
                self._recording.on_live(lesson, self._router)
            except Exception:  # nor from being taught
                logger.exception("lesson %s: it cannot be recorded", self.id)

    async def close(self) -> None:
        """Close the lesson's media: every peer (their sessions go as they close). If the
        lesson has ended, the classrooms still present leave, the recording is finalised and
        the event sockets are told "ended" and closed; on a server shutdown the lesson stays
        live in the store, and its recording is recovered at the next start."""
        if self.closed:
            return
        self.closed = True
        self._closed(self)
        self._pulled = None  # stopped with the router
        self._relayed = None
        self._pushed = None
        if self._router is not None:
            await self._router.close()
        lesson = self._store.get(self.id)
        if lesson is None or lesson.state is not LessonState.ENDED:
            return
        self.room.end()
        try:
            self._recording.on_ended(lesson)
        except Exception:  # a recording's trouble never keeps a lesson from ending
            logger.exception("lesson %s: its recording could not be finalised", self.id)
        await self._events.end(self.id)
