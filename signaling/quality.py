"""How well each classroom receives the lesson, graded good / fair / poor every 2 s.

Two views are combined, and the worse one counts: the server's (the classroom's RTCP receiver
reports: loss, jitter, round-trip time; and how much it had to retransmit) and the classroom
page's own (``getStats()``: loss after retransmission, freezes). The teacher is sent the grades;
every ``SAMPLE_EVERY`` ticks a sample goes into the journal for the lesson report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from media.consumer import Consumer
from media.layers import source_layers

from .classrooms import Classroom, Quality
from .keys import JOURNAL, LESSONS

logger = logging.getLogger(__name__)

TICK_S = 2.0
SAMPLE_EVERY = 5  # ticks: one journal sample per classroom every 10 s
CLIENT_STATS_FRESH_S = 6.0
SMOOTHING = 0.5  # weight of the newest loss figure: a single bad window is not a bad link

# (fair from, poor from)
LOSS = (0.02, 0.10)
RTT_MS = (400.0, 1000.0)
JITTER_MS = (50.0, 150.0)
FREEZES = (1, 3)  # new freezes within a tick


def grade(loss: float, rtt_ms: float | None, jitter_ms: float, new_freezes: int) -> str:
    def level(value: float, bounds: tuple[float, float]) -> int:
        return 2 if value >= bounds[1] else 1 if value >= bounds[0] else 0

    worst = max(
        level(loss, LOSS),
        level(rtt_ms or 0.0, RTT_MS),
        level(jitter_ms, JITTER_MS),
        level(new_freezes, FREEZES),
    )
    return ("good", "fair", "poor")[worst]


@dataclass
class _Counters:
    packets: int = 0
    octets: int = 0
    retransmitted: int = 0
    at: float = 0.0


class QualityMonitor:
    """Owns the grading task of the server; ``start`` and ``stop`` with the application."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._task: asyncio.Task[None] | None = None
        self._counters: dict[tuple[str, str], _Counters] = {}
        self._loss: dict[tuple[str, str], float] = {}
        self._freezes: dict[tuple[str, str], float] = {}
        self._ticks = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick(time.time())
            except Exception:
                logger.exception("grading classroom quality failed")

    def tick(self, now: float) -> None:
        self._ticks += 1
        sample = self._ticks % SAMPLE_EVERY == 0
        lessons = self._app[LESSONS]
        seen: set[tuple[str, str]] = set()
        for live in lessons.all():
            router = live.router
            if router is not None and router.producers:
                # the teacher sees what arrives of each source: its layers and their rates
                # the teacher sees what arrives of each source (its layers and their rates) and
                # what its own browser said of its uplink
                layers = source_layers(router.producers)
                lessons.tell(
                    live.id,
                    {"type": "layers", "sources": layers, "uplinks": live.fresh_uplinks(now)},
                    lambda p: p.is_teacher,
                )
            present = live.room.present()
            if not present:
                continue
            # one pass over the sessions per lesson, not one per classroom
            watching = live.receivers()
            for classroom in present:
                key = (live.id, classroom.name)
                seen.add(key)
                consumers = watching.get(classroom.name, [])
                before = classroom.quality.link_state if classroom.quality else None
                classroom.quality = self._measure(key, classroom, consumers, now)
                link_state = classroom.quality.link_state
                if (
                    link_state is not None
                    and link_state != before
                    and (before or link_state != "full")
                ):
                    # the classroom page says so: 仅声音 — 网络较差, or the picture is back
                    name = classroom.name
                    lessons.tell(
                        live.id,
                        {"type": "link", "state": link_state, "why": classroom.quality.link_why},
                        lambda p, name=name: not p.is_teacher and p.name == name,  # type: ignore[misc]
                    )
            grades = [{"name": c.name, **c.quality.as_json()} for c in present if c.quality]
            lessons.tell(live.id, {"type": "quality", "classrooms": grades}, lambda p: p.is_teacher)
            if sample:
                self._app[JOURNAL].quality(
                    live.id,
                    now,
                    {c.name: c.quality.as_json() for c in present if c.quality},
                )
        for state in (self._counters, self._loss, self._freezes):
            for key in list(state):
                if key not in seen:
                    del state[key]

    def _measure(
        self, key: tuple[str, str], classroom: Classroom, consumers: list[Consumer], now: float
    ) -> Quality:
        now_counters = _Counters(
            sum(c.stats.packets for c in consumers),
            sum(c.stats.octets for c in consumers),
            sum(c.stats.retransmitted for c in consumers),
            now,
        )
        before = self._counters.get(key)
        self._counters[key] = now_counters
        loss = 0.0
        bitrate_kbps = 0.0
        if before is not None and now_counters.packets >= before.packets:
            sent = now_counters.packets - before.packets
            resent = now_counters.retransmitted - before.retransmitted
            loss = resent / sent if sent else 0.0
            elapsed = max(now - before.at, 1e-3)
            bitrate_kbps = (now_counters.octets - before.octets) * 8 / elapsed / 1000
        reported = [c.quality for c in consumers if c.quality.reports]
        loss = max([loss, *(q.fraction_lost for q in reported)])
        jitter_ms = max((q.jitter_ms for q in reported if q is not None), default=0.0)
        rtts = [q.rtt_ms for q in reported if q.rtt_ms is not None]
        rtt_ms = max(rtts) if rtts else None
        freezes = 0
        new_freezes = 0
        stats = classroom.client_stats
        if stats is not None and now - classroom.client_stats_at <= CLIENT_STATS_FRESH_S:
            loss = max(loss, stats.get("loss", 0.0))
            jitter_ms = max(jitter_ms, stats.get("jitter_ms", 0.0))
            if "rtt_ms" in stats:
                rtt_ms = max(rtt_ms or 0.0, stats["rtt_ms"])
            freezes = int(stats.get("freezes", 0))
            new_freezes = max(0, freezes - int(self._freezes.get(key, freezes)))
            self._freezes[key] = freezes
        smoothed = self._loss.get(key)
        loss = loss if smoothed is None else SMOOTHING * loss + (1 - SMOOTHING) * smoothed
        self._loss[key] = loss
        gate = next((c.gate for c in consumers if c.gate is not None), None)
        estimate = None if gate is None else gate.estimate.bps
        height = gate.choice[0].height if gate and gate.video and gate.choice else None
        return Quality(
            grade(loss, rtt_ms, jitter_ms, new_freezes),
            loss,
            jitter_ms,
            rtt_ms,
            bitrate_kbps,
            freezes,
            None if gate is None else gate.state,
            "" if gate is None else gate.reason,
            None if estimate is None else round(estimate / 1000, 1),
            height or None,
            classroom.path,
        )
