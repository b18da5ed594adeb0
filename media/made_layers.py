"""When a lesson's single-layer sources get a made layer (media.made_layer), and when it stops.

A source that sends one spatial layer (an RTSP camera, an RTMP encoder, FFmpeg or OBS over
WHIP) gives a classroom on a weak link nothing to choose from: its send gate pauses the
picture. That pause is the trigger: when a classroom's gate has paused video for such a source,
the router's ``MadeLayers`` makes one lower layer of it, shared by every classroom whose link
needs it, and the gate resumes the classroom on it once its estimate has room for it. The
layer stops once no classroom has been fed it, nor paused for want of it, for ``idle_s``.
At most one per source; never for a source that has layers of its own (simulcast)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from .made_layer import CODECS, MadeLayer
from .producer import Producer, Sink

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5
IDLE_S = 30.0  # a made layer nobody has needed for this long stops
MADE_SOURCES = ("camera",)  # the sources worth the cost (a screen's text does not scale down)


def single_layer(group: Producer) -> bool:
    """Whether ``group`` is a source with one spatial layer of its own (not simulcast)."""
    return (
        group.kind == "video"
        and group.rid is None
        and sum(1 for layer in group.layers if not layer.made) == 1
        and group.codec.name in CODECS
    )


def needs_less(sink: Sink) -> bool:
    """Whether ``sink`` (a follower of a source) is a classroom's video whose link cannot
    carry what the source sends: its send gate has paused the picture."""
    gate = getattr(sink, "gate", None)
    return sink.kind == "video" and gate is not None and gate.adaptive and not gate.video


class MadeLayers:
    """One router's made layers. ``producers`` gives the router's producers (the groups of
    its sources) when asked."""

    def __init__(
        self,
        router_id: str,
        producers: Callable[[], Iterable[Producer]],
        idle_s: float = IDLE_S,
        sources: tuple[str, ...] = MADE_SOURCES,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router_id = router_id
        self.layers: dict[Producer, MadeLayer] = {}  # by source group
        self.made = 0  # layers made since the router opened
        self.idle_s = idle_s
        self._producers = producers
        self._sources = sources
        self._now = now
        self._idle_since: dict[Producer, float] = {}
        # sources not to make a layer of again (too small to scale down, or it failed)
        self._refused: dict[Producer, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def start(self) -> None:
        """Look at the sources every CHECK_INTERVAL_S from now on (from the event loop)."""
        if self._timer is None and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        try:
            self.check()
        except Exception:  # a bug here must not stop the lesson
            logger.exception("lesson %s: made layers", self.router_id)
        self.start()

    def check(self) -> None:
        """Start a made layer where a classroom needs one, stop those nobody needs."""
        now = self._now()
        groups = [
            p
            for p in self._producers()
            if p.kind == "video" and p.source in self._sources and not p.closed
        ]
        for group, running in list(self.layers.items()):
            if group.closed or running.closed or group not in groups or not single_layer(group):
                self._stop(group, "source gone" if group.closed else "source changed")
        for group in list(self._refused):
            if group.closed:
                del self._refused[group]
        for group in groups:
            needed = any(needs_less(sink) for sink in group.followers)
            layer = self.layers.get(group)
            if layer is None:
                if needed and group not in self._refused and single_layer(group):
                    self._start(group)
                continue
            if needed or layer.fed:
                self._idle_since.pop(group, None)
            elif now - self._idle_since.setdefault(group, now) >= self.idle_s:
                self._stop(group, "no classroom needs it")

    def _start(self, group: Producer) -> None:
        try:
            layer = MadeLayer(group, on_end=self._ended)
        except Exception:
            logger.exception("lesson %s: no layer can be made of %s", self.router_id, group.id)
            self._refused[group] = "failed"
            return
        self.layers[group] = layer
        self.made += 1
        logger.info(
            "lesson %s: %s: making a lighter layer for the classrooms whose link needs it",
            self.router_id,
            group.source,
        )

    def _ended(self, layer: MadeLayer, why: str) -> None:
        group = layer.group
        if self.layers.get(group) is layer:
            del self.layers[group]
            self._idle_since.pop(group, None)
        self._refused[group] = why
        logger.info("lesson %s: %s: no lighter layer (%s)", self.router_id, group.source, why)

    def _stop(self, group: Producer, why: str) -> None:
        layer = self.layers.pop(group, None)
        self._idle_since.pop(group, None)
        if layer is not None:
            layer.close()
            logger.info(
                "lesson %s: %s: lighter layer stopped (%s)", self.router_id, group.source, why
            )

    def close(self) -> None:
        """Stop every made layer (the router closes)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for group in list(self.layers):
            self._stop(group, "lesson closed")
        self._refused.clear()
