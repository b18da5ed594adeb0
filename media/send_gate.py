"""What one classroom's consumers may send now, decided from its estimate: audio always, the
video layers that fit, and no video while not even the lowest fits (DESIGN §4.7).

Where a source has layers (simulcast, temporal layers), the gate's layer selector
(media.layer_choice) picks per classroom the best set that fits the estimate, going down
fast and up slowly; while below the best, padding probes (below) show whether the link has
room for the next step, since a receiver's estimate grows only a little above what it gets.

The *floor* is what the lowest video layer needs (a source with one layer: its measured
bitrate), plus the sound. When the classroom is congested (estimate.congested) and its
estimate is below the floor, or the estimate is far below it with a queue or loss seen, the
classroom's video consumers pause (audio goes on); they resume, at a keyframe, once the
estimate has stayed above the floor with room to spare for ``RESUME_HOLD_S``, and not before
the pause has lasted its hold time (``PAUSE_HOLD_S``, doubled each time a resume does not
last, so a link on the edge does not oscillate). While video pauses, the video consumers send
padding (a *probe*, on their RTX stream) at a share of the classroom's REMB, in windows, so
that its REMB measures its link and can grow back; a classroom that never sent a REMB, or
whose REMB went stale while its reports show a clean link again (after an outage), is tried
again (video resumes) once the hold is over.

After a large drop (the estimate far below what the link carried on the best layers), the
gate also probes above the estimate (media.rate_probe): short bursts of padding at twice, then
three times what is sent, up to what the best layers need. A probe the classroom's feedback
shows carried lifts its estimate at once (media.estimate) and the classroom takes, at once,
the best that fits (video resumes on it when it was paused): back from a collapse in seconds,
where its REMB would take ~40 s to grow back.

A classroom whose video reports lose packets gets each video datagram twice while its estimate
has room for it (``VIDEO_REPEAT_ON``): the layers are chosen first, the copies use what they
leave, and go first when the link fills.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .estimate import LIGHT_LOSS, Estimate
from .layer_choice import UP_MARGIN, LayerOption, LayerSelector, allocate, options_of
from .layers import LayerChoice, top_layer
from .rate_probe import RateProbe

if TYPE_CHECKING:
    from .producer import Producer

FLOOR_MARGIN = 1.0  # the video floor: the layer's bitrate with this margin, plus audio
FAR_BELOW = 0.5  # an estimate under this share of the floor pauses video without more proof
WARMUP_S = 3.0  # ... once the classroom's REMB has been heard this long (it starts low)
RESUME_GRACE_S = 5.0  # ... and video has been back this long (its REMB catches up)
RESUME_MARGIN = 1.25  # video resumes once the estimate is this far above the floor ...
RESUME_HOLD_S = 2.0  # ... for this long
# ... or, where the source has layers (the floor is its lowest, a small one), is tried again
# once the classroom's reports have shown neither loss nor a queue for CLEAN_TRIAL_S and the
# floor is within TRIAL_REACH of its REMB, or for twice as long whatever its REMB (a
# receiver's REMB grows only a little above what it gets, and a paused classroom gets little:
# the lowest layer, tried, is how it shows that the link carries it)
CLEAN_TRIAL_S = 4.0
TRIAL_REACH = 1.5
PAUSE_HOLD_S = 4.0  # a pause lasts at least this long at first ...
PAUSE_HOLD_MAX_S = 60.0  # ... doubled up to this when a resume did not last ...
STABLE_S = 30.0  # ... that is, when video paused again within this long
# Padding while paused: this share of the classroom's REMB (which measures its video stream,
# padding included, not its sound), at least
# PROBE_MIN_BPS (so that its estimator is fed and its REMB stays fresh). Its REMB grows at
# most to 1.5 times what it receives, so the padding climbs step by step; when the link is
# full, the REMB falls and the padding with it, before the queue costs the sound much.
PROBE_SHARE = 0.9
PROBE_MIN_BPS = 64_000
PROBE_INTERVAL_S = 0.05
RATE_PROBE_TICK_S = 0.02  # a rate probe's padding goes out in smaller bursts than this ...
# ... for the time since the last one, at most this (a busy event loop ticks late: the padding
# makes up for it, or the probe would prove less than it claims)
RATE_PROBE_CATCH_UP_S = 0.1
# Probes come in windows: one this long, then a rest as long as the pause's hold (doubled each
# time, up to PAUSE_HOLD_MAX_S), so that a link that cannot carry the picture is not kept full
# of padding.
PROBE_WINDOW_S = 8.0
# A step down marks the link's *ceiling* (what it carried: the estimate then, over the share a
# receiver's estimator keeps of what it received when it saw a queue). For CEILING_HOLD_S
# (doubled, up to CEILING_HOLD_MAX_S, each time a step down comes within STABLE_S of a step up)
# nothing is probed for that needs more than the ceiling: padding up to a link's limit queues
# the picture and the sound for as long as the probe lasts.
# Meanwhile probes go up to what the link carried then: a REMB that grows past the ceiling by
# CEILING_LIFT, in clean reports, shows the link came back (after a collapse) and lifts it.
CEILING_SHARE = 0.85
CEILING_HOLD_S = 20.0
CEILING_HOLD_MAX_S = 120.0
CEILING_LIFT = 1.2
# Sound is sent twice (the same SRTP datagram: a copy that arrives after the original is
# dropped by the classroom's replay check) while its receiver reports lose this much of it,
# until they have lost less than AUDIO_REPEAT_OFF for AUDIO_REPEAT_HOLD_S: random loss of a
# few percent then costs one frame in a thousand, on any client, for ~50 kbit/s more.
AUDIO_REPEAT_ON = 0.01
AUDIO_REPEAT_OFF = 0.003
AUDIO_REPEAT_HOLD_S = 30.0
# Video is sent twice as well while its reports lose VIDEO_REPEAT_ON of it (until they have
# lost less than AUDIO_REPEAT_OFF for AUDIO_REPEAT_HOLD_S, as for sound): a lost packet is
# repaired by a retransmission a round trip later, a freeze on a satellite link (600 ms), and
# on a lossy line whose retransmission is lost too. The layers are chosen first; the copies
# come once the reports have shown no queue and no congestion for REPEAT_CALM_S, where the
# estimate has VIDEO_REPEAT_ROOM for them, or a probe showed that room (a receiver's REMB on a
# long or jittery line stays below what the line carries); never above what the best layers
# alone would cost. They follow their originals at COPY_PACE times the video's rate. They go
# first when a queue or congestion shows, and what they queued drains (REPEAT_DRAIN_S) before
# the layers are judged by it; copies that did not last REPEAT_LASTED_S, and probes for them
# that failed, wait twice as long each time before the next (REPEAT_REST_S up to
# REPEAT_REST_MAX_S).
VIDEO_REPEAT_ON = 0.01
VIDEO_REPEAT_ROOM = 1.25
COPY_PACE = 1.5
REPEAT_CALM_S = 4.0
REPEAT_DRAIN_S = 2.0
REPEAT_LASTED_S = 30.0
REPEAT_REST_S = 10.0
REPEAT_REST_MAX_S = 120.0
# A classroom on lower layers gets its video paced (each video stream at PACE_SHARE of its
# share of the estimate, or PACE_FED times its layer's rate, whichever is more): a keyframe
# comes from the teacher in a burst many times what a narrow link carries, and forwarded as it
# came it overflows the link's queue, losing its own tail and the sound beside it. Sound,
# retransmissions and probes are not paced; nor is a classroom on the best layers (its link
# has room, and its packets stay on the fast path).
PACE_SHARE = 2.5
PACE_FED = 3.0
# A classroom whose decoder asks for this many keyframes within this long cannot use the
# layer it is fed, whatever its estimate says (SendGate.on_keyframe_request). A healthy
# classroom asks for one when it joins or after a loss burst; a satellite classroom fed 720p
# it could not take whole asked every three seconds.
BROKEN_REQUESTS = 3
BROKEN_WINDOW_S = 10.0
# ... and only where what it is fed takes this share of its estimate or more: its average fits,
# but its keyframes, many times the average, overflow the line's queue. Well within the
# estimate, broken pictures are the line's random loss, which a smaller picture suffers alike.
BROKEN_TIGHT = 0.7
# The copies hide the loss that called for them: a packet is lost only when both copies are
# (1 % random loss leaves 0.01 %), and the reports come back clean. On a line whose round trip
# is this long, a lost packet's retransmission comes ten frames late or more, a stall the
# classroom sees; there clean reports while the video is sent twice are no sign that the line
# stopped losing, and the copies stay until a queue or congestion shows (a shorter line's
# retransmissions come in time, and the copies end after AUDIO_REPEAT_HOLD_S clean, as before)
REPEAT_KEEP_RTT_MS = 300.0
RATE_WINDOW_S = 1.0  # sent and source bitrates are measured over at least this long
NO_REPORT_S = 10.0  # a classroom that has stopped reporting keeps what it had
REPORT_AGE_MAX_S = 3.0  # a round trip answering an older sender report is not the link's now

FULL = "full"  # the best layers the sources send
REDUCED = "reduced"  # lower layers: what fits the classroom's link
AUDIO_ONLY = "audio_only"
STATES = (FULL, REDUCED, AUDIO_ONLY)

# switches of every gate since the server started, by the state switched to (for /metrics)
SWITCHES: dict[str, int] = dict.fromkeys(STATES, 0)


class GatedConsumer(Protocol):
    """A consumer the gate opens and closes (implemented by Consumer)."""

    kind: str
    source: str
    producer: Producer | None  # the followed source (the group of its layers)
    choose_layer: LayerChoice

    def reselect_layer(self) -> None:
        """Ask ``choose_layer`` again (a new spatial layer is taken at its next keyframe)."""
        ...

    def on_reliable_path(self) -> bool:
        """Whether its path retransmits by itself (ICE over TCP): the loss its receiver
        reports is then what this server dropped from a backlog, not the link's."""
        ...

    def sent_octets(self) -> int:
        """Everything sent so far: media, retransmissions, padding (bytes on the wire)."""
        ...

    def source_octets(self) -> tuple[int, float] | None:
        """Bytes the followed source has received so far, and when (None: no source)."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def send_padding(self, octets: int) -> int:
        """Send about ``octets`` of padding; returns how many were sent (0: cannot)."""
        ...

    def send_report_now(self) -> None:
        """Send a sender report at once (where it can)."""
        ...

    def pace(self, bps: float) -> None:
        """Send its media at most at ``bps`` (0: as it comes)."""
        ...

    def repeat(self, on: bool, pace_bps: float = 0.0) -> None:
        """Send each packet twice, or with the ones before it (sound on a lossy link), or
        once again; ``pace_bps``: the copies paced at this rate (0: each at once)."""
        ...

    @property
    def redundant(self) -> str | None:
        """How the sound is protected now: ``red``, ``repeat`` or None."""
        ...


class _Rate:
    """A bitrate from a growing byte counter, over windows of at least RATE_WINDOW_S."""

    __slots__ = ("bps", "_octets", "_at")

    def __init__(self) -> None:
        self.bps = 0.0
        self._octets: int | None = None
        self._at = 0.0

    def update(self, octets: int, now: float) -> float:
        if self._octets is None or octets < self._octets:
            self._octets, self._at = octets, now
        elif now - self._at >= RATE_WINDOW_S:
            self.bps = (octets - self._octets) * 8 / (now - self._at)
            self._octets, self._at = octets, now
        return self.bps


class SendGate:
    """Owned by one classroom's subscriber, shared by its consumers. ``adaptive`` off: the
    estimate is kept (and shown) but nothing is ever held back."""

    def __init__(
        self,
        adaptive: bool = True,
        now: Callable[[], float] = time.monotonic,
        on_change: Callable[[SendGate], None] | None = None,
    ) -> None:
        self.estimate = Estimate()
        self.adaptive = adaptive
        self.video = True
        # the classroom watches the recording (catch-up): no live video is sent to it,
        # whatever its link carries; the gate's own decisions go on underneath
        self.held = False
        self.state = FULL
        self.reason = ""
        self.switches = 0
        self.floor_bps: float | None = None
        self.sent_bps = 0.0
        self.audio_repeat = False
        self._audio_clean_since: float | None = None
        self.video_repeat = False
        self._video_lossy = False  # video reports lost VIDEO_REPEAT_ON lately
        self._video_clean_since: float | None = None
        self._calm_since: float | None = None  # reports without queue or congestion since
        self._repeat_since = 0.0
        self._repeat_rest = REPEAT_REST_S
        self._repeat_rest_until = 0.0
        self._repeat_drained_at = 0.0  # the copies' queue has drained by then
        self._probing_copies = False  # the probe running is for the copies
        self.time_in: dict[str, float] = dict.fromkeys(STATES, 0.0)
        self._consumers: list[GatedConsumer] = []
        self._video: list[GatedConsumer] = []  # the camera first: it has the budget first
        self.selector = LayerSelector()
        self.choice: list[LayerOption] = []  # the options fed now, per video source
        self._audio_bps = 0.0
        self._source_bps = 0.0  # what the video sources followed receive, every layer
        self._now = now
        self._on_change = on_change
        self._since = now()
        self._state_at = self._since
        self._hold = PAUSE_HOLD_S
        self._resumed_at = -1e9
        self._room_since: float | None = None
        self._sent = _Rate()
        self._source: dict[int, _Rate] = {}
        self._probe: asyncio.TimerHandle | None = None
        self._reported_at = self._since
        self._first_remb_at: float | None = None
        self._probe_from: float | None = None
        self._probe_rest_until = 0.0
        self._probe_rest = PAUSE_HOLD_S
        self._ceiling: float | None = None
        self._ceiling_until = 0.0
        self._ceiling_hold = CEILING_HOLD_S
        self._stepped_up_at = -1e9
        self._clean_since: float | None = None  # reports without loss or queue since
        self.rate_probe = RateProbe()
        self._keyframes_asked: deque[float] = deque()  # the classroom's own, lately
        self._rate_probe_at: float | None = None  # the latest padding of a rate probe
        self.paced_bps = 0.0  # what the video is paced at (all its streams; 0: not paced)

    def add(self, consumer: GatedConsumer) -> None:
        self._consumers.append(consumer)
        if consumer.kind == "video":
            self._video.append(consumer)
            if self.held:
                consumer.pause()
            self._video.sort(key=lambda c: c.source != "camera")

            def choose(group: Producer) -> tuple[Producer | None, int]:
                return self._choose_for(consumer, group)

            consumer.choose_layer = choose

    # feedback, from the consumers

    def on_remb(self, bps: int) -> None:
        now = self._now()
        if self._first_remb_at is None:
            self._first_remb_at = now
        before = self.estimate.remb(now)
        self.estimate.on_remb(bps, now)
        self.rate_probe.on_remb(bps, before, now)
        self._reported_at = now
        self._protect_video(now)
        self._decide(now)
        self._pace_video()

    def on_report(
        self,
        fraction_lost: float,
        rtt_ms: float | None,
        kind: str = "video",
        packets: int | None = None,
        rtt_new: bool = True,
        report_age_s: float | None = None,
    ) -> None:
        """One receiver report of one stream: its loss over the ``packets`` it covers;
        ``rtt_new``: ``rtt_ms`` was measured by this report (not an earlier one), answering
        the sender report sent ``report_age_s`` ago (None: unknown)."""
        now = self._now()
        if kind == "audio":
            self._audio_loss(fraction_lost, now)
        else:
            self._video_loss(fraction_lost, now)
        self._measure(now)
        # a stream's round trip is measured only by the reports that answer its latest sender
        # reports: a paused video stream sends none, and its receiver goes on answering the
        # last one, sent into the queue of a collapse, with the round trip the link had then
        fresh = rtt_new and (report_age_s is None or report_age_s <= REPORT_AGE_MAX_S)
        rtt_ms = rtt_ms if fresh else None
        self.estimate.on_report(fraction_lost, rtt_ms, self.sent_bps, now, packets)
        if self.estimate.loss < LIGHT_LOSS and not self.estimate.queueing:
            if self._clean_since is None:
                self._clean_since = now
        else:
            self._clean_since = None
        estimate = self.estimate
        clean = estimate.loss < LIGHT_LOSS and not estimate.queueing and not estimate.congested
        if self.adaptive and self.video and self.state == FULL:
            # the link carries what it is sent when its reports are clean and its own
            # estimator says as much (a satellite link's REMB stays below it)
            carries = estimate.bps is not None and estimate.bps >= self.sent_bps
            self.rate_probe.on_full(self.sent_bps, clean and carries, now)
        else:
            self.rate_probe.not_full()
        self.rate_probe.on_report(
            estimate.loss,
            rtt_ms,
            estimate.congested,
            now,
            None if report_age_s is None or rtt_ms is None else now - report_age_s,
        )

        self._reported_at = now
        self._protect_video(now)
        self._decide(now)
        self._pace_video()

    def on_nacks(self, count: int) -> None:
        self.estimate.on_nacks(count, self._now())

    def on_keyframe_request(self, consumer: GatedConsumer) -> None:
        """The classroom's decoder asked ``consumer`` for a keyframe: it lost a picture that
        retransmission did not repair. BROKEN_REQUESTS of them within BROKEN_WINDOW_S, on a
        layer that just fits the estimate (BROKEN_TIGHT), say what the estimate cannot: the
        pictures of this layer do not get through whole (on a long line each lost keyframe
        costs a round trip and another keyframe, and the picture stops more than it plays).
        It is fed a smaller picture, whose keyframes are smaller, and not the bigger one again
        for a while."""
        if not self.adaptive or not self.video or self.estimate.bps is None:
            return  # a classroom that tells nothing of its link keeps what it has
        if consumer not in self._video:
            return
        now = self._now()
        asked = self._keyframes_asked
        asked.append(now)
        while now - asked[0] > BROKEN_WINDOW_S:
            asked.popleft()
        if len(asked) < BROKEN_REQUESTS:
            return
        asked.clear()
        # the layers once: copies are sent only where the estimate has room for them, and
        # each keyframe sent twice gets through whole more often, not less
        if self._video_bps() < BROKEN_TIGHT * (self.estimate.bps - self._audio_bps):
            return  # room to spare: a smaller picture would lose as much (random loss)
        options = self._options()
        target = self.selector.step_down(options, self._video.index(consumer), now)
        if target is not None:
            self._switch(options, target, False, "keyframes", now)

    def on_nack_loss(self, share: float) -> None:
        """A video stream's NACKs show it losing ``share`` of what it is sent (heavy loss,
        seen a round trip after it began): acted on as a receiver report would be, seconds
        sooner."""
        now = self._now()
        self._measure(now)
        self.estimate.on_heavy_loss(share, self.sent_bps, now)
        self._protect_video(now)
        self._decide(now)
        self._pace_video()

    def _audio_loss(self, fraction_lost: float, now: float) -> None:
        if not self.adaptive:
            return
        repeat = self.audio_repeat
        if fraction_lost >= AUDIO_REPEAT_ON:
            repeat = True
            self._audio_clean_since = None
        elif fraction_lost < AUDIO_REPEAT_OFF:
            if self._audio_clean_since is None:
                self._audio_clean_since = now
            elif now - self._audio_clean_since >= AUDIO_REPEAT_HOLD_S:
                repeat = False
        if repeat != self.audio_repeat:
            self.audio_repeat = repeat
            for consumer in self._consumers:
                if consumer.kind == "audio":
                    consumer.repeat(repeat)

    def _video_loss(self, fraction_lost: float, now: float) -> None:
        if fraction_lost >= VIDEO_REPEAT_ON:
            self._video_lossy = True
            self._video_clean_since = None
        elif self.video_repeat and (self.estimate.base_rtt or 0.0) >= REPEAT_KEEP_RTT_MS:
            self._video_clean_since = None  # clean because of the copies (REPEAT_KEEP_RTT_MS)
        elif fraction_lost < AUDIO_REPEAT_OFF:
            if self._video_clean_since is None:
                self._video_clean_since = now
            elif now - self._video_clean_since >= AUDIO_REPEAT_HOLD_S:
                self._video_lossy = False

    def _video_bps(self, best: bool = False) -> float:
        """What the video consumers are fed now, or would be on the best layers (bit/s, each
        packet once; a source without layers: what it receives)."""
        options = self._options()
        if not any(options):
            return self._source_bps
        if self.choice and not best:
            return sum(o.bps for o in self.choice)
        return sum(opts[0].bps for opts in options if opts)

    def _fed_bps(self) -> float:
        """What the chosen layers put on the wire (their copies too)."""
        return sum(o.bps for o in self.choice) * (2 if self.video_repeat else 1)

    def _protect_video(self, now: float) -> None:
        """Send video twice, or once again (see VIDEO_REPEAT_ON)."""
        estimate = self.estimate
        calm = not estimate.queueing and not estimate.congested
        if calm:
            if self._calm_since is None:
                self._calm_since = now
        else:
            self._calm_since = None
        wanted = self.adaptive and self.video and self._video_lossy
        if self.video_repeat:
            if calm and wanted:
                return
            self._repeat_video(False)
            if not calm:
                # the link filled: the copies go first, and what they queued drains before
                # the layers are judged by it; copies that did not last wait longer next time
                self._repeat_drained_at = now + REPEAT_DRAIN_S
                lasted = now - self._repeat_since >= REPEAT_LASTED_S
                rest = REPEAT_REST_S if lasted else min(self._repeat_rest * 2, REPEAT_REST_MAX_S)
                self._repeat_rest = rest
                self._repeat_rest_until = now + rest
            return
        if not wanted or self._calm_since is None or now < self._repeat_rest_until:
            return
        if now - self._calm_since < REPEAT_CALM_S:
            return
        bps = estimate.bps
        if bps is not None and bps >= self._copies_need() * VIDEO_REPEAT_ROOM:
            self._repeat_video(True)
            self._repeat_since = now

    def _pace_video(self) -> None:
        """Pace the video streams of a classroom on lower layers (PACE_SHARE); let go of the
        pace on the best layers and while paused."""
        estimate = self.estimate.bps
        paced = self.adaptive and self.video and self.state == REDUCED and estimate is not None
        fed = iter(self.choice)  # one option per consumer that has layers, in their order
        total = sum(o.bps for o in self.choice)
        paces: list[float] = []
        for opts in self._options():
            option = next(fed, None) if opts else None
            if not paced or estimate is None or option is None or total <= 0:
                paces.append(0.0)
                continue
            share = max(estimate - self._audio_bps, 0.0) * option.bps / total
            paces.append(max(PACE_SHARE * share, PACE_FED * option.bps))
        for consumer, bps in zip(self._video, paces, strict=True):
            consumer.pace(bps)
        self.paced_bps = sum(paces)

    def _copies_need(self) -> float:
        """What the video with its copies and the sound need (bit/s)."""
        return 2 * self._video_bps() + self._audio_bps

    def _copies_probe(self, now: float) -> float | None:
        """The rate at which to probe for room for the copies of the video (None: not now).
        A receiver's REMB on a long or jittery line stays below what the line carries, so
        the room is proven as after a drop (media.rate_probe); the copies never put more on
        the wire than the best layers would."""
        if self.video_repeat or not self.video or not self._video_lossy:
            return None
        if self._calm_since is None or now - self._calm_since < REPEAT_CALM_S:
            return None
        if now < self._repeat_rest_until:
            return None
        bps = self.estimate.bps
        need = self._copies_need()
        best = self._video_bps(best=True) + self._audio_bps
        if bps is None or bps >= need * VIDEO_REPEAT_ROOM or need > best:
            return None
        return need * VIDEO_REPEAT_ROOM

    def _repeat_video(self, on: bool) -> None:
        self.video_repeat = on
        # the copies follow at 1.5 times the video's rate: a keyframe's copies sent with it
        # would double its burst, and a narrow link's queue drops the tail of both
        fed = iter(self.choice)  # one option per consumer that has layers, in their order
        for consumer, opts in zip(self._video, self._options(), strict=True):
            option = next(fed, None) if opts else None
            bps = option.bps if option is not None else self._source_bps / len(self._video)
            consumer.repeat(on, COPY_PACE * bps)

    @property
    def link_full(self) -> bool:
        """The estimate says the link carries no more than is sent: retransmissions and
        keyframes would feed the congestion."""
        estimate = self.estimate
        bps = estimate.bps
        # an estimate under what is sent is proof only with queueing seen: a receiver's REMB
        # dips on every jitter burst, and random loss that retransmission repairs is no reason
        # to stop repairing it
        return (
            self.adaptive
            and bps is not None
            and (estimate.congested or (bps < self.sent_bps and estimate.queueing))
        )

    # the decision

    def _measure(self, now: float) -> None:
        self.sent_bps = self._sent.update(sum(c.sent_octets() for c in self._consumers), now)
        floor = audio = video = 0.0
        known = False
        for consumer in self._consumers:
            source = consumer.source_octets()
            if source is None:
                continue
            rate = self._source.setdefault(id(consumer), _Rate())
            bps = rate.update(source[0], now)
            if consumer.kind == "video":
                known = known or bps > 0
                video += bps
                options = self._options_of(consumer)
                floor += (options[-1].bps if options else bps) * FLOOR_MARGIN
            else:
                audio += bps
        self._audio_bps = audio
        self._source_bps = video
        self.floor_bps = floor + audio if known else None

    # layers

    def _options_of(self, consumer: GatedConsumer) -> list[LayerOption]:
        group = consumer.producer
        return [] if group is None or group.closed else options_of(group)

    def _options(self) -> list[list[LayerOption]]:
        return [self._options_of(consumer) for consumer in self._video]

    def _choose_for(self, consumer: GatedConsumer, group: Producer) -> tuple[Producer | None, int]:
        """What ``consumer`` is fed from ``group``: the selector's choice, once it has made
        one (until then, and without adaptation, the best)."""
        if not self.adaptive or self.selector.keys is None or consumer not in self._video:
            return top_layer(group)
        options = self._options()
        index = self._video.index(consumer)
        opts = options[index]
        if not opts:
            return top_layer(group)
        option = opts[self.selector.current(options)[index]]
        return option.layer, option.max_tid

    def _select(self, estimate: float, warm: bool, now: float, at_once: bool = False) -> None:
        options = self._options()
        before = self.selector.current(options)
        target = self.selector.decide(
            options, estimate - self._audio_bps, self.estimate.congested, warm, now, at_once
        )
        if target is None:
            return
        up = sum(target) < sum(before)
        reason = "probe" if up else (self.estimate.reason or "estimate")
        self._switch(options, target, up, reason, now)

    def _switch(
        self, options: list[list[LayerOption]], target: list[int], up: bool, reason: str, now: float
    ) -> None:
        """Feed the options the selector has just taken, and keep what a step says."""
        if up:
            self._stepped_up_at = now
        else:
            held = now - self._stepped_up_at < STABLE_S
            self._ceiling_hold = (
                min(self._ceiling_hold * 2, CEILING_HOLD_MAX_S) if held else CEILING_HOLD_S
            )
            estimate = self.estimate.bps
            self._ceiling = None if estimate is None else estimate / CEILING_SHARE
            self._ceiling_until = now + self._ceiling_hold
            self.rate_probe.stepped_down(now)
        self._feed(options, target)
        state = REDUCED if any(target) else FULL
        self._set_state(state, reason, now)
        # a step up probes again at once for the next; the top needs no probe
        self._probe_from = None
        self._probe_rest_until = 0.0
        self._probe_rest = PAUSE_HOLD_S
        if state == REDUCED:
            self._schedule_probe()
        else:
            self._stop_probe()
        if self._on_change is not None:
            self._on_change(self)

    def _feed(self, options: list[list[LayerOption]], indexes: list[int]) -> None:
        """Feed the video consumers these options (a new spatial layer from its next keyframe)."""
        before = self.selector.current(options)
        self.selector.choose(options, indexes)
        self.choice = [opts[i] for opts, i in zip(options, indexes, strict=True) if opts]
        if self.video_repeat:
            # a step up takes the room the copies had (they come back where there is room
            # for them on the new layers); a step down keeps them, at the new layers' pace
            self._repeat_video(sum(indexes) >= sum(before))
        for consumer in self._video:
            consumer.reselect_layer()

    def _decide(self, now: float, proven: bool = False) -> None:
        """``proven``: a probe just showed the link carries the estimate (take what fits now)."""
        estimate = self.estimate.bps
        floor = self.floor_bps
        if not self.adaptive or floor is None:
            return
        if proven and estimate is not None:
            if self.video:
                self._select(estimate, False, now, at_once=True)
            elif estimate >= floor:
                self._set(True, "probe", now, budget=estimate)
            return
        if self.video:
            if now < self._repeat_drained_at:
                return  # the queue the copies of the video built is not the layers' doing
            # a REMB below what is sent is acted on without congestion only once it has been
            # heard a while, and only beside loss: a receiver's REMB and round trip also
            # grow worse when this server, or the receiver, was held up a moment by its own
            # machine (a burst of late packets looks like a queue), which drops nothing
            # ... and not in the first RESUME_GRACE_S after video resumed: the REMB lags what
            # the classroom receives again (it had sound and padding), only congestion proves
            # that the resume was wrong
            warm = (
                self._first_remb_at is not None
                and now - self._first_remb_at >= WARMUP_S
                and now - self._resumed_at >= RESUME_GRACE_S
                and self.estimate.loss >= LIGHT_LOSS
            )
            if estimate is not None:
                self._select(estimate, warm, now)
                if self.state == REDUCED:
                    self._schedule_probe()
            # congestion (loss with queueing, or heavy loss) and an estimate below the floor;
            # or an estimate so far below it that waiting for the loss would cost the sound
            # (on a path that retransmits by itself, the loss reported is this server's own
            # backlog dropped during a stall, which a pause would only prolong)
            congested = self.estimate.congested and not any(
                c.on_reliable_path() for c in self._consumers
            )
            if estimate is not None and (
                (warm and estimate < floor * FAR_BELOW) or (estimate < floor and congested)
            ):
                held = now - self._resumed_at < STABLE_S
                self._hold = min(self._hold * 2, PAUSE_HOLD_MAX_S) if held else PAUSE_HOLD_S
                self._set(False, self.estimate.reason or "estimate", now)
            return
        # a classroom that never sent a REMB can only be tried, and so can one whose REMB
        # went stale while its reports have shown neither a queue nor congestion for a while
        # (its link is back after an outage; or a browser that, its video paused, sends no
        # REMB any more, on a line whose random loss is no congestion and never stops)
        calm = self._calm_since is not None and now - self._calm_since >= RESUME_HOLD_S
        trial = estimate is None and (self._first_remb_at is None or calm)
        clean_for = -1.0 if self._clean_since is None else now - self._clean_since
        if (
            estimate is not None
            and clean_for >= CLEAN_TRIAL_S
            and (
                floor <= (self.estimate.remb(now) or estimate) * TRIAL_REACH
                # a REMB that cannot grow (little video reaches the classroom, and probes
                # rest) is no reason to wait for ever on a link that loses nothing
                or clean_for >= 2 * CLEAN_TRIAL_S
            )
            and any(len(options) > 1 for options in self._options())
        ):
            trial = True
        if trial or (estimate is not None and estimate >= floor * RESUME_MARGIN):
            if self._room_since is None:
                self._room_since = now
            waited = now - self._state_at >= self._hold
            if waited and (trial or now - self._room_since >= RESUME_HOLD_S):
                self._set(True, "probe" if estimate is not None else "no_estimate", now)
        else:
            self._room_since = None

    def _set_state(self, state: str, reason: str, now: float) -> None:
        self.time_in[self.state] += now - self._state_at
        self._state_at = now
        self.state = state
        self.reason = reason
        self.switches += 1
        SWITCHES[state] += 1
        self._pace_video()

    def _set(self, video: bool, reason: str, now: float, budget: float | None = None) -> None:
        """Pause or resume video; ``budget``: what a probe showed the link carries (resume on
        the best that fits it, rather than the lowest)."""
        self.video = video
        self._room_since = None
        state = AUDIO_ONLY
        if video:
            # back on the lowest layers; up from there as the estimate shows room
            options = self._options()
            lowest = [max(len(opts) - 1, 0) for opts in options]
            if budget is not None:
                lowest = allocate(options, (budget - self._audio_bps) / UP_MARGIN)
            if any(options):
                self._feed(options, lowest)
            state = REDUCED if any(lowest) else FULL
        self._set_state(state, reason, now)
        if not video and self.video_repeat:
            self._repeat_video(False)
        for consumer in self._video:
            if video and not self.held:
                consumer.resume()
            else:
                consumer.pause()
        if video:
            self._resumed_at = now
            self._stop_probe()
            if state == REDUCED:
                self._probe_from = None
                self._probe_rest_until = 0.0
                self._probe_rest = PAUSE_HOLD_S
                self._schedule_probe()
        else:
            self._probe_from = now
            self._probe_rest_until = 0.0
            self._probe_rest = self._hold
            self.rate_probe.stepped_down(now)
            self._schedule_probe()
        if self._on_change is not None:
            self._on_change(self)

    def times(self) -> dict[str, float]:
        """Seconds spent in each state so far."""
        times = dict(self.time_in)
        times[self.state] += self._now() - self._state_at
        return times

    # probes

    def _schedule_probe(self, delay: float = PROBE_INTERVAL_S) -> None:
        if self._probe is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._probe = loop.call_later(delay, self._send_probe)

    def _stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _send_probe(self) -> None:
        self._probe = None
        if self.video and self.state != REDUCED:
            return
        now = self._now()
        if not self.video and now - self._reported_at > NO_REPORT_S:
            self.estimate.refresh(now)
            self._decide(now)
            if self.video:
                return
        if self._rate_probe(now):
            return
        if now < self._probe_rest_until:
            self._schedule_probe()
            return
        if self._probe_from is None:
            self._probe_from = now
        elif now - self._probe_from > PROBE_WINDOW_S:
            self._probe_from = None
            self._probe_rest_until = now + self._probe_rest
            self._probe_rest = min(self._probe_rest * 2, PAUSE_HOLD_MAX_S)
            self._schedule_probe()
            return
        octets = 0
        if self.video:
            # on lower layers: padding on top of the video, up to what the best layers need
            # but never above the share of the classroom's REMB (which grows at most to 1.5
            # times what the classroom receives: the probe climbs with it, step by step, and
            # the selector takes the best that fits, several steps at once when the link came
            # back); a classroom without a REMB is not probed blind, its estimate grows by
            # itself
            options = self._options()
            remb = self.estimate.remb(now)
            if self.selector.next_need(options, now) is None or remb is None:
                return  # nothing to probe for, or nothing to measure it: _decide restarts it
            if self.video_repeat:
                # the copies use the room: padding on top would leave none for a keyframe's
                # burst (the copies go when the classroom's video stops losing, and probing
                # for the next layers resumes)
                self._schedule_probe()
                return
            need = sum(opts[0].bps for opts in options if opts)
            want = min(need * UP_MARGIN, PROBE_SHARE * remb)
            # a link that queues, or loses heavily, is full: nothing more is sent into it (the
            # random loss of a rural line, which retransmission repairs, is no such sign)
            full = self.estimate.queueing or self.estimate.congested
            ceiling = self._ceiling
            if ceiling is not None and now < self._ceiling_until and want > ceiling:
                if not full and remb >= ceiling * CEILING_LIFT:
                    self._ceiling = None  # the link carries more than it did: it came back
                else:
                    # the link showed it cannot carry more a moment ago: probe up to what it
                    # carried then, no further, so that its REMB shows whether it came back
                    want = ceiling * CEILING_SHARE
            sending = self._fed_bps()
            target = 0.0 if full else want - sending
            octets = int(max(target, 0.0) * PROBE_INTERVAL_S / 8)
        elif self.floor_bps is not None:
            # padding up to a share of the REMB, never above what resuming needs
            remb = self.estimate.remb(now) or 0.0
            target = min(PROBE_SHARE * remb, self.floor_bps * RESUME_MARGIN)
            if self.estimate.queueing or self.estimate.congested:
                target = 0.0  # the link is full already: the sound comes first
            octets = int(max(target, PROBE_MIN_BPS) * PROBE_INTERVAL_S / 8)
        for consumer in self._video:
            if octets > 0:
                octets -= consumer.send_padding(octets)
        self._schedule_probe()

    def _rate_probe(self, now: float) -> bool:
        """Run the probe above the estimate after a large drop, if one is due or running;
        False: none is, the ordinary padding goes on."""
        probe = self.rate_probe
        if not self.adaptive:
            return False
        rate = probe.rate
        verdict = probe.verdict(now)
        if verdict is not None and rate is not None:
            if verdict:
                self.estimate.on_probe(rate, now)
                self._decide(now, proven=True)
                self._protect_video(now)
            elif self._probing_copies:
                self._repeat_rest_until = now + self._repeat_rest
                self._repeat_rest = min(self._repeat_rest * 2, REPEAT_REST_MAX_S)
            self._probing_copies = False
            if self.video and self.state == FULL:
                return True
        if not probe.running:
            options = self._options()
            if not any(options) or self.floor_bps is None:
                return False
            audio = self._audio_bps
            if self.video:
                need = self.selector.next_need(options, now)
                if need is None:
                    return False
                next_need = need + audio
            else:
                next_need = self.floor_bps
            top_need = sum(opts[0].bps for opts in options if opts) + audio
            media = audio + (self._fed_bps() if self.video else 0.0)
            clean_for = 0.0 if self._clean_since is None else now - self._clean_since
            want = probe.want(self.estimate.bps, media, next_need, top_need, clean_for, now)
            if want is None and probe.idle(now):
                want = self._copies_probe(now)
                self._probing_copies = want is not None
            if want is None:
                return False
            probe.start(want, self.estimate.base_rtt, self.estimate.loss, now)
            self._rate_probe_at = now - RATE_PROBE_TICK_S
        if probe.sending(now) and probe.rate is not None:
            media = self._audio_bps + (self._fed_bps() if self.video else 0.0)
            last = now - RATE_PROBE_TICK_S if self._rate_probe_at is None else self._rate_probe_at
            elapsed = min(max(now - last, 0.0), RATE_PROBE_CATCH_UP_S)
            self._rate_probe_at = now
            octets = int(max(probe.rate - media, 0.0) * elapsed / 8)
            for consumer in self._video:
                if octets > 0:
                    octets -= consumer.send_padding(octets)
            if not probe.sending(now + RATE_PROBE_TICK_S):
                # its end: the round trip of a report sent now shows the queue it built
                for consumer in self._consumers:
                    consumer.send_report_now()
            self._schedule_probe(RATE_PROBE_TICK_S)
        else:
            self._schedule_probe()  # waiting for the verdict
        return True

    def hold(self, held: bool) -> None:
        """Send the classroom no video while ``held`` (it plays the lesson's recording, with
        its own sound: the live picture would only load its link twice); let go, video
        resumes at a keyframe, on what the gate chose meanwhile (or stays paused if its link
        carries none). Audio is not held: the page mutes it while it rewinds."""
        if held == self.held:
            return
        self.held = held
        for consumer in self._video:
            if held:
                consumer.pause()
            elif self.video:
                consumer.resume()

    def close(self) -> None:
        self._stop_probe()
        self._consumers.clear()
        self._video.clear()

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "why": self.reason,
            "held": self.held,
            "adaptive": self.adaptive,
            "floor_kbps": None if self.floor_bps is None else round(self.floor_bps / 1000, 1),
            "sent_kbps": round(self.sent_bps / 1000, 1),
            "switches": self.switches,
            "audio_repeat": self.audio_repeat,
            "video_repeat": self.video_repeat,
            "paced_kbps": round(self.paced_bps / 1000) if self.paced_bps else None,
            # RED where the classroom negotiated it, the same datagram twice otherwise
            "audio_redundancy": next(
                (c.redundant for c in self._consumers if c.kind == "audio" and c.redundant),
                None,
            ),
            # what the camera (then courseware) is fed now, when the gate has chosen
            "layers": [
                {"height": o.height, "fps": round(o.fps, 1), "kbps": round(o.bps / 1000)}
                for o in self.choice
            ],
            **self.estimate.as_json(),
            **self.rate_probe.as_json(),
        }
