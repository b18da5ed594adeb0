"""One lower layer the server makes from a single-layer source (DESIGN §4.6): a sink on the
source that hands its packets to a ``LayerMaker`` in a child process of its own, and the
producer its packets feed, which joins the source's group as a layer (``made``) so that the
classrooms' send gates offer it like any other.

Nothing of the decoding, scaling and encoding runs in the server's process: a child process
does it (media.layer_process), and a thread of the made layer's own carries batches to it and
back. The event loop only queues the source's payloads (a bounded queue: when the child falls
behind, what is queued is dropped and it starts again at the source's next keyframe) and feeds
the producer the packets that come back, in batches. Made once per source, never per
classroom; ``MadeLayers`` says when."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from .layer_maker import MADE_HEIGHT, MadeOutput, made_bitrate
from .layer_process import LayerProcess, LayerProcessError
from .producer import Producer
from .rtp_packet import ABS_SEND_TIME, RtpError, RtpPacket, parse_rtp
from .sender_clock import SenderClock

logger = logging.getLogger(__name__)

CODECS = ("H264", "VP8")  # what a layer can be made from (and in)
# Source packets waiting for the child: when they span more than MAX_BEHIND_S of the source's
# time (or number more than MAX_QUEUED), the child has fallen behind and what waits is dropped:
# a made layer that lags seconds behind the sound is worse than one that skips to a keyframe.
MAX_BEHIND_S = 1.0
MAX_QUEUED = 800
VIDEO_CLOCK = 90_000
WAKE_S = 0.5  # the thread looks at its stop flag at least this often
FIRST_CHECK_S = 0.5  # once its first packets are out, the layer is measured this long

Item = tuple[int, int, bool, bytes]


class MadeLayer:
    """Made by ``MadeLayers`` for ``source`` (the group of a single-layer source), started at
    once. ``on_end`` is told when it cannot go on (a source too small to scale down, a codec
    it cannot make); ``close`` stops it and takes its layer out of the group."""

    kind = "video"
    excluded_source = None

    def __init__(
        self,
        source: Producer,
        on_end: Callable[[MadeLayer, str], None] | None = None,
        max_height: int | None = None,
    ) -> None:
        codec = source.codec.name
        if codec not in CODECS:
            raise ValueError(f"no layer can be made from {codec}")
        self.source = source.source  # the Sink's source name
        self.group = source
        self.producer: Producer | None = source  # the Sink's: the producer it follows
        extensions = [e for e in source.extensions if e.uri == ABS_SEND_TIME]
        made = Producer(
            f"{source.id}/made",
            source.source,
            [source.codec],
            extensions,
            self,
            SenderClock(),
        )
        made.made = True
        made.timed_by = source  # its packets carry the source's timestamps
        self.layer = made
        self.closed = False
        self.started_at = time.monotonic()
        self.dropped = 0  # source packets dropped because the thread fell behind
        self.batches = 0
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queued: list[Item] = []
        self._resync = False  # the thread must start again at a keyframe
        self._keyframe_asked = False
        self._stopping = False
        self._skip_to_keyframe = True  # the decoder starts at a keyframe
        self._ready = False  # the child process is up: packets are taken from now on
        self._measured: asyncio.TimerHandle | None = None
        self._maker_parameters: dict[str, object] = {
            "codec": codec,
            "payload_type": source.codec.payload_type,
            "bitrate": made_bitrate(source.meter.bitrate),
            "send_time_id": extensions[0].id if extensions else 0,
            "max_height": max_height or MADE_HEIGHT,
        }
        self.process_id: int | None = None  # the child's, once started
        self.thread = threading.Thread(
            target=self._run, name=f"made layer {source.id}", daemon=True
        )
        source.add_layer(made)
        source.add_consumer(self)  # type: ignore[arg-type]  # the part of a Sink it needs
        self.thread.start()
        source.request_keyframe()

    def __repr__(self) -> str:
        return f"<MadeLayer {self.group.id}>"

    # the source's packets, on the loop

    @property
    def ready(self) -> bool:
        """Whether its process has started (the source's packets are taken from then on)."""
        return self._ready

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._skip_to_keyframe and not self.closed

    def forward(self, packet: RtpPacket, keyframe: bool) -> None:
        if self.closed or not self._ready:
            return
        if self._skip_to_keyframe:
            if not keyframe:
                return
            self._skip_to_keyframe = False
        item = (
            packet.sequence_number,
            packet.timestamp,
            bool(packet.marker),
            bytes(packet.data[packet.payload_offset : packet.payload_end]),
        )
        with self._lock:
            queued = self._queued
            behind = (
                bool(queued)
                and MAX_BEHIND_S * VIDEO_CLOCK < (item[1] - queued[0][1]) & 0xFFFFFFFF < 0x80000000
            )
            if behind or len(queued) >= MAX_QUEUED:
                # behind by more than the queue holds: drop it all, start at a keyframe
                self.dropped += len(queued) + 1
                queued.clear()
                self._resync = True
                self._skip_to_keyframe = True
                dropped = True
            else:
                queued.append(item)
                dropped = False
                if len(queued) == 1:
                    self._wake.notify()
        if dropped:
            logger.info("made layer %s: behind the source, starting at its next keyframe", self)
            self.group.request_keyframe()

    def bind(self, producer: Producer) -> None:
        self.close()  # the source changed codec: MadeLayers decides again

    def unbind(self, producer: Producer) -> None:
        self.close()

    def reselect_layer(self) -> None:
        pass

    # the made layer's upstream (what its classrooms ask of it)

    def request_keyframe(self, ssrc: int) -> None:
        with self._lock:
            self._keyframe_asked = True
            self._wake.notify()

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        pass  # made here: nothing is lost before the producer's cache

    # the thread

    def _run(self) -> None:
        try:
            maker = LayerProcess(**self._maker_parameters)
        except OSError as exc:
            logger.warning("made layer %s: no process for it (%s)", self, exc)
            self._tell(self._ended, f"failed ({type(exc).__name__})")
            return
        self.process_id = maker.pid
        try:
            maker.wait_ready()
            with self._lock:
                self._ready = True  # (packets queued before would start it seconds late)
            self._tell(self._asked_source)
            while True:
                with self._lock:
                    while not (self._queued or self._stopping or self._keyframe_asked):
                        self._wake.wait(WAKE_S)
                    if self._stopping:
                        return
                    items, self._queued = self._queued, []
                    resync, self._resync = self._resync, False
                    asked, self._keyframe_asked = self._keyframe_asked, False
                out = maker.push(items, resync, asked)
                if out.packets or out.source_size or out.too_small or out.need_keyframe:
                    # (made_size comes with source_size)
                    if not self._tell(self._made, out):
                        return
                if out.too_small:
                    return
        except LayerProcessError as exc:
            if not self._stopping:  # (not the child ending as asked)
                logger.warning("made layer %s: %s", self, exc)
                self._tell(self._ended, "failed (the layer process ended)")
        except Exception as exc:  # a bug here must not take the server down
            logger.exception("made layer %s: stopped", self)
            self._tell(self._ended, f"failed ({type(exc).__name__})")
        finally:
            maker.close()

    def _asked_source(self) -> None:
        if not self.closed:
            self.group.request_keyframe()

    def _tell(self, callback: Callable[..., None], *args: object) -> bool:
        """Call ``callback`` on the loop; False once the loop has closed (the server is gone)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:
            return False

    # what the thread made, on the loop

    def _made(self, out: MadeOutput) -> None:
        if self.closed:
            return
        group = self.group
        if out.source_size is not None and group.codec.name != "VP8":
            # the source's size, which its packets do not tell (VP8's keyframes do)
            group.meter.width, group.meter.height = out.source_size
        if out.too_small:
            self._ended("too_small")
            return
        if out.made_size is not None:
            # told as a VP8 keyframe tells it (for H.264, only the maker knows)
            self.layer.meter.width, self.layer.meter.height = out.made_size
        if out.need_keyframe:
            group.request_keyframe()
        if not out.packets:
            return
        self.batches += 1
        layer = self.layer
        arrival = time.time()
        first = layer.last_seen is None
        for data in out.packets:
            try:
                layer.on_rtp(parse_rtp(data), arrival)
            except RtpError:
                continue
        if first:
            # the source's sinks choose again once the new layer has been measured
            self._measured = self._loop.call_later(FIRST_CHECK_S, self._tell_layers)

    def _tell_layers(self) -> None:
        self._measured = None
        if not self.closed and not self.group.closed:
            self.group.layers_changed()

    def _ended(self, why: str) -> None:
        if self.closed:
            return
        on_end = self._on_end
        self.close()
        if on_end is not None:
            on_end(self, why)

    # lifetime

    @property
    def fed(self) -> bool:
        """Whether some classroom is fed this layer now (or is switching to it)."""
        for sink in self.layer.consumers:
            gate = getattr(sink, "gate", None)
            if gate is None or gate.video:
                return True
        return False

    def close(self) -> None:
        """Stop the thread, take the layer out of the source's group (its classrooms go back
        to the source's own layer at its next keyframe)."""
        if self.closed:
            return
        self.closed = True
        if self._measured is not None:
            self._measured.cancel()
            self._measured = None
        with self._lock:
            self._stopping = True
            self._queued = []
            self._wake.notify()
        group = self.group
        group.remove_consumer(self)  # type: ignore[arg-type]
        group.remove_layer(self.layer)
        self.layer.close()
        if not group.closed:
            group.layers_changed()
