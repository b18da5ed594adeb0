"""Prometheus metrics at ``/metrics``: lessons, classrooms, traffic, recordings.

Values are read when Prometheus scrapes, straight from the SFU, the sessions and the lesson
store, so nothing on the media path pays for them.

``/metrics`` is open to whoever reaches the port, and a lesson's id opens its pages to anyone
holding a token, so by default it names no lesson: totals only. With ``--metrics-lesson-ids``
per-lesson series are added, labelled by lesson id; they exist only for live lessons, at most
``MAX_LESSON_SERIES`` of them, so the label set stays bounded however many lessons the server
has held.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from media.layers import source_layers
from media.send_gate import STATES, SWITCHES
from signaling.contracts import Lesson, LessonState
from signaling.keys import LESSONS, STORE
from signaling.live_lesson import LiveLesson

MAX_LESSON_SERIES = 200
_GRADES = ("good", "fair", "poor")
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)

# (metric name, help, TrafficTotals attribute)
_TRAFFIC = (
    ("rtp_packets_received", "RTP packets received from publishers", "packets_in"),
    ("rtp_bytes_received", "RTP bytes received from publishers", "bytes_in"),
    ("rtp_packets_forwarded", "RTP packets forwarded to receivers", "packets_out"),
    ("rtp_payload_bytes_forwarded", "RTP payload bytes forwarded to receivers", "bytes_out"),
    ("nacks_received", "NACK messages received from receivers", "nacks_received"),
    ("nacks_answered", "packets retransmitted in answer to NACKs", "retransmitted"),
    ("nacks_unanswered", "NACKed packets no longer in the cache", "unanswered_nacks"),
    (
        "nacks_suppressed",
        "NACKed packets not resent: again within a round trip, over budget, or over TCP",
        "suppressed_nacks",
    ),
    (
        "keyframe_requests_received",
        "keyframe requests (PLI/FIR) received from receivers",
        "keyframe_requests_received",
    ),
    (
        "keyframe_requests_sent",
        "keyframe requests sent to publishers, after throttling",
        "keyframe_requests_upstream",
    ),
    ("nacks_sent", "packets asked again from publishers", "nacks_upstream"),
    ("rtp_malformed", "malformed RTP packets dropped", "malformed"),
)


class _Collector:
    def __init__(self, app: web.Application, lesson_ids: bool) -> None:
        self._app = app
        self._lesson_ids = lesson_ids

    def collect(self) -> Iterator[Metric]:
        app = self._app
        lessons = app[LESSONS]
        live = [lesson for lesson in app[STORE].list() if lesson.state is LessonState.LIVE]
        held = {lesson.id: lessons.get(lesson.id) for lesson in live}

        yield _gauge("syncclass_lessons_live", "lessons being taught now", len(live))
        yield _gauge(
            "syncclass_classrooms_connected",
            "receiving classrooms connected, over all lessons",
            sum(_classrooms(held[lesson.id]) for lesson in live),
        )
        feeds = sum(len(h.sessions.feeds()) for h in held.values() if h)
        yield _gauge("syncclass_return_feeds", "classrooms sending their camera", feeds)
        yield _gauge(
            "syncclass_peers",
            "WebRTC peer connections",
            sum(len(r.peers) for r in lessons.routers()),
        )
        yield _gauge(
            "syncclass_event_sockets",
            "open lesson event WebSockets",
            sum(lessons.events.listeners(lesson.id) for lesson in live),
        )

        traffic = lessons.traffic()
        for name, help_text, attribute in _TRAFFIC:
            counter = CounterMetricFamily(f"syncclass_{name}", help_text)
            counter.add_metric([], getattr(traffic, attribute))
            yield counter

        recordings = Counter(
            (lessons.recording_info(lesson.id) or {}).get("state", "none") for lesson in live
        )
        states = GaugeMetricFamily(
            "syncclass_live_recordings", "live lessons by recording state", labels=["state"]
        )
        for state, count in sorted(recordings.items()):
            states.add_metric([state], count)
        yield states

        grades = Counter(
            c.quality.grade
            for here in held.values()
            if here
            for c in here.room.present()
            if c.quality
        )
        by_quality = GaugeMetricFamily(
            "syncclass_classrooms_by_quality",
            "classrooms of live lessons by how well they receive",
            labels=["grade"],
        )
        for grade in _GRADES:
            by_quality.add_metric([grade], grades.get(grade, 0))
        yield by_quality

        layers = [
            (lesson.id, source, layer)
            for lesson in live
            if (here := held[lesson.id]) and here.router is not None
            for source, described in source_layers(here.router.producers).items()
            for layer in described
            if layer["active"]
        ]
        yield _gauge(
            "syncclass_video_layers",
            "video layers arriving from publishers now",
            sum(1 for _, _, layer in layers if not layer["made"]),
        )
        yield _gauge(
            "syncclass_made_layers",
            "lighter layers the server makes now of single-layer cameras (decode and encode "
            "once per lesson) for classrooms whose link cannot carry the camera",
            sum(len(r.made_layers.layers) for r in lessons.routers() if r.made_layers),
        )
        now = time.time()
        uplinks = [
            (lesson.id, source, report)
            for lesson in live
            if (here := held[lesson.id])
            for source, report in here.fresh_uplinks(now).items()
        ]
        yield _gauge(
            "syncclass_teacher_uplinks_limited",
            "teachers' sources whose picture their browser holds back for the uplink now",
            sum(1 for _, _, report in uplinks if report.get("limited")),
        )
        links = Counter(
            peer.gate.state for here in held.values() if here for peer in here.links().values()
        )
        by_link = GaugeMetricFamily(
            "syncclass_classrooms_by_link",
            "classrooms of live lessons by what their link is sent (full, reduced, audio_only)",
            labels=["state"],
        )
        for state in STATES:
            by_link.add_metric([state], links.get(state, 0))
        yield by_link
        switches = CounterMetricFamily(
            "syncclass_link_switches",
            "classrooms switched to a link state (video paused or resumed), since start",
            labels=["state"],
        )
        for state in STATES:
            switches.add_metric([state], SWITCHES[state])
        yield switches

        if self._lesson_ids:
            yield from self._per_lesson(live, held)
            yield from _per_layer(layers)
            yield from _per_uplink(uplinks[:MAX_LESSON_SERIES])

    def _per_lesson(
        self, live: list[Lesson], held: dict[str, LiveLesson | None]
    ) -> Iterator[Metric]:
        per_lesson = live[:MAX_LESSON_SERIES]
        rooms = GaugeMetricFamily(
            "syncclass_lesson_classrooms",
            "classrooms connected to a live lesson",
            labels=["lesson"],
        )
        caps = GaugeMetricFamily(
            "syncclass_lesson_max_classrooms", "classroom cap of a live lesson", labels=["lesson"]
        )
        quality = GaugeMetricFamily(
            "syncclass_lesson_classrooms_by_quality",
            "classrooms of a live lesson by how well they receive",
            labels=["lesson", "grade"],
        )
        for lesson in per_lesson:
            rooms.add_metric([lesson.id], _classrooms(held[lesson.id]))
            caps.add_metric([lesson.id], lesson.max_classrooms)
            here = held[lesson.id]
            present = here.room.present() if here else []
            grades = Counter(c.quality.grade for c in present if c.quality)
            for grade in _GRADES:
                quality.add_metric([lesson.id, grade], grades.get(grade, 0))
        yield rooms
        yield caps
        yield quality


def _per_layer(layers: list[tuple[str, str, dict[str, object]]]) -> Iterator[Metric]:
    """What arrives of the teacher's sources, per lesson and layer (a return feed's name is
    a classroom's: not exported)."""
    labels = ["lesson", "source", "layer"]
    families = {
        "bitrate": GaugeMetricFamily(
            "syncclass_lesson_layer_bitrate_bps", "bitrate of a video layer", labels=labels
        ),
        "fps": GaugeMetricFamily(
            "syncclass_lesson_layer_fps", "frame rate of a video layer", labels=labels
        ),
        "height": GaugeMetricFamily(
            "syncclass_lesson_layer_height", "picture height of a video layer", labels=labels
        ),
    }
    for lesson_id, source, layer in layers:
        if source not in ("camera", "courseware"):
            continue
        name = "made" if layer["made"] else str(layer["rid"] or "single")
        for key, family in families.items():
            value = layer[key]
            family.add_metric([lesson_id, source, name], float(value) if value else 0.0)  # type: ignore[arg-type]
    yield from families.values()


def _per_uplink(uplinks: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Metric]:
    """The teacher's uplink per lesson and source, as the teacher's browser estimates it."""
    family = GaugeMetricFamily(
        "syncclass_lesson_teacher_uplink_bps",
        "what the teacher's browser estimates its uplink carries (availableOutgoingBitrate)",
        labels=["lesson", "source"],
    )
    for lesson_id, source, report in uplinks:
        if "available_kbps" in report:
            family.add_metric([lesson_id, source], report["available_kbps"] * 1000)
    yield family


def _classrooms(live: LiveLesson | None) -> int:
    return live.sessions.classrooms() if live else 0


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, lesson_ids: bool = False) -> None:
    """``/metrics``; ``lesson_ids`` adds the per-lesson series, labelled with lesson ids."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(app, lesson_ids))  # type: ignore[arg-type]
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
