"""What the server believes one classroom's link can carry now (its *estimate*), from what the
classroom tells it: REMB, the loss and round trip of its receiver reports, its NACKs.

Two bounds, the lower one counts:

- **REMB**, the classroom's own measure of its link (its receive-side estimator watches the
  delay of the packets it gets, stamped with abs-send-time as they leave this server). It is
  followed down at once and up at most ``REMB_RISE_PER_S`` per second. A REMB alone is no proof
  of congestion: a receiver's estimator dips below what it is sent at every burst of jitter,
  and grows back.
- **Loss with queueing.** A classroom that loses packets while its round trip grows above
  the shortest one seen (by more than the round trip's usual jitter) is congested: its bound
  drops by half the loss from the estimate (or from what it was sent, if more), as GCC's
  loss-based controller does; under heavy loss, to what it was sent less half the loss, and
  when it loses a quarter or more, to what arrived. Loss without queueing (random loss of
  1–3 % on a rural line, which retransmission repairs) is not congestion and moves nothing;
  only heavy loss (``HEAVY_LOSS``) is taken as congestion whatever the round trip. Loss is
  pooled over the reports of the last ``LOSS_POOL_S`` (every stream of the classroom, by the
  packets each covers) and counts as heavy only with ``HEAVY_MIN_LOST`` packets lost: one
  report on a low-rate stream that loses two of its fifteen packets to 3 % random loss is
  chance, not congestion, and must not move the classroom down a layer. Without congestion the
  bound grows by ``RISE_PER_S`` per second and is dropped once it no longer bounds anything,
  or at once when a report is clean (no loss to speak of, no queue) while a REMB is fresh.

A **probe** the link carried (media.rate_probe: padding well above the estimate, without loss,
queue or an overuse step of the classroom's REMB) lifts the REMB bound to the probed rate at
once: after a collapse the receiver's estimator would take ~40 s to grow back by itself. The
proof holds until the REMB has grown past it, and gives way to what shows congestion: an
overuse step of the REMB (the REMB rules again), a queue (down to what was sent, less the share
a receiver's estimator takes off), loss with a queue or heavy loss (the loss bound).

A classroom that tells nothing (no REMB, no receiver report) has no estimate (``bps`` None):
nothing is held back from it.
"""

from __future__ import annotations

import math
from collections import deque

RISE_PER_S = 0.08  # the most the loss bound may grow per second (up slowly)
# ... and the most the estimate follows a growing REMB per second: the receiver's own estimator
# already grows its REMB slowly (at most 1.5 times what it receives), and the layer selector
# holds each step up; a classroom back from a collapse must not wait on both
REMB_RISE_PER_S = 0.25
HEAVY_LOSS = 0.10  # a report losing this much is congestion, whatever the round trip
LIGHT_LOSS = 0.02  # from here on, loss with a growing round trip is congestion
# loss is pooled over the reports of this many seconds, by the packets each report covers ...
LOSS_POOL_S = 2.0
# ... and heavy loss is heavy only with this many packets lost in the pool: 3 % random loss
# loses as many of 130 packets less than once in a thousand pools, while a link that carries
# half of what it is sent loses them in its first report
HEAVY_MIN_LOST = 8
QUEUEING_MS = 40.0  # a round trip this much above the shortest one seen is a queue ...
QUEUEING_SHARE = 0.3  # ... or this share of the shortest one ...
# ... or this many times the round trip's usual jitter (the mean change from one report to
# the next, while no queue shows), whichever is most: a poor rural line's round trip swings
# by ±40 ms report to report, without any queue
QUEUEING_JITTER = 4.5
JITTER_GAIN = 0.125
# ... in each of the latest reports (the shortest of them counts): a queue stays, while a
# burst of jitter lifts one report's round trip and is gone by the next
QUEUEING_REPORTS = 3
BASE_RTT_MEMORY_S = 30.0  # the shortest round trip is forgotten slowly (routes change)
REMB_FRESH_S = 5.0  # a REMB older than this bounds nothing any more
# A receive-side estimator that sees its link overused answers with 0.85 of what it received
# (GCC's AIMD decrease), so the link carried up to the REMB over 0.85; but a growing REMB runs
# up to 1.5 times what it received. The REMB is taken as it is (over this share): probes
# that overrate the link cost the sound when the picture resumes.
REMB_DECREASE = 1.0
LOSS_BOUND_SLACK = 1.5  # the loss bound is dropped once this far above what is sent
# A receiver's AIMD moves its REMB by at most +8 % an update, unless its overuse detector fired
# (then to 0.85 of what it received): a REMB step outside this band is that detector's.
REMB_STEP_DOWN = 0.97
REMB_STEP_UP = 1.12
# Above this pooled loss the link carries far less than it is sent (a link that fell from
# 2 Mbit/s to 300 kbit/s loses 85 %): the bound is then what arrived, not GCC's half-the-loss
# step, which would take three reports to come down while the sound is lost with the rest.
DELIVERED_LOSS = 0.25
QUEUED_SHARE = 0.85  # a queue under a proven rate: down to this share of what is sent
NACK_WINDOW_S = 2.0


class Estimate:
    """One classroom's estimate. Fed from its consumers' RTCP; ``now`` is monotonic seconds.

    ``bps`` is the estimate (None: unknown, nothing bounds the link); ``reason`` says what set
    it last: ``remb``, ``loss`` (heavy loss), ``queueing`` (loss with a growing round trip).
    """

    __slots__ = (
        "bps",
        "reason",
        "congested",
        "queueing",
        "rtt_ms",
        "loss",
        "nack_rate",
        "_remb",
        "_remb_at",
        "_loss_bound",
        "_base_rtt",
        "_base_rtt_at",
        "_recent_rtts",
        "_rtt_jitter",
        "_last_rtt",
        "_updated_at",
        "_nacks",
        "_nacks_at",
        "_pool",
        "_proven",
    )

    def __init__(self) -> None:
        self.bps: float | None = None
        self.reason = ""
        self.congested = False
        self.queueing = False  # the latest round trip is well above the shortest one seen
        self.rtt_ms: float | None = None
        self.loss = 0.0  # the latest reported loss, 0..1
        self.nack_rate = 0.0  # sequence numbers asked for again, per second
        self._remb: float | None = None
        self._remb_at = -math.inf
        self._loss_bound: float | None = None
        self._base_rtt: float | None = None
        self._base_rtt_at = -math.inf
        self._recent_rtts: deque[float] = deque(maxlen=QUEUEING_REPORTS)
        self._rtt_jitter = 0.0  # ms
        self._last_rtt: float | None = None
        self._updated_at: float | None = None
        self._nacks = 0
        self._nacks_at: float | None = None
        # (when, packets lost, packets covered) of the latest reports, for the pooled loss
        self._pool: deque[tuple[float, float, int]] = deque()
        self._proven: float | None = None  # what a probe showed the link carries

    # what the classroom says

    def on_remb(self, bps: float, now: float) -> None:
        before = self.remb(now)
        if before is not None and not REMB_STEP_DOWN * before <= bps <= REMB_STEP_UP * before:
            self._proven = None  # the classroom saw its link full: its REMB rules again
        self._remb = bps / REMB_DECREASE
        self._remb_at = now
        if self._proven is not None and bps >= self._proven:
            self._proven = None  # the REMB has grown past what was proven
        self._update(now, "remb")

    def on_probe(self, bps: float, now: float) -> None:
        """A probe showed that the link carries ``bps``: the estimate is lifted to it at once
        (it never comes down for it)."""
        if self.bps is not None and bps <= self.bps:
            return
        self._proven = bps
        if self._loss_bound is not None and self._loss_bound < bps:
            self._loss_bound = None
        self._update(now, "probe")
        if self.bps is not None and self.bps < bps and self._bounds(now) >= bps:
            self.bps = bps  # no slow rise: the probe is the proof
            self.reason = "probe"

    @property
    def proven(self) -> float | None:
        return self._proven

    @property
    def base_rtt(self) -> float | None:
        """The shortest round trip seen lately (ms)."""
        return self._base_rtt

    def remb(self, now: float) -> float | None:
        """The classroom's latest REMB as it said it, if fresh."""
        if self._remb is None or now - self._remb_at > REMB_FRESH_S:
            return None
        return self._remb * REMB_DECREASE

    def on_report(
        self,
        fraction_lost: float,
        rtt_ms: float | None,
        sent_bps: float,
        now: float,
        packets: int | None = None,
    ) -> None:
        """A receiver report: ``fraction_lost`` (0..1) of the stream it covers, the round trip
        if known, what the server sent the classroom lately (all its streams, bit/s), and how
        many packets the report covers (None: unknown, the report is taken on its own)."""
        fraction_lost = self._pooled(fraction_lost, packets, now)
        self.loss = fraction_lost
        queueing = False
        if rtt_ms is not None:
            self.rtt_ms = rtt_ms
            base = self._base_rtt
            if base is None or rtt_ms < base or now - self._base_rtt_at > BASE_RTT_MEMORY_S:
                self._base_rtt, self._base_rtt_at = rtt_ms, now
                base = rtt_ms
            margin = max(QUEUEING_MS, QUEUEING_SHARE * base, QUEUEING_JITTER * self._rtt_jitter)
            last = self._last_rtt
            if last is not None and max(rtt_ms, last) - base <= 2 * margin:
                self._rtt_jitter += JITTER_GAIN * (abs(rtt_ms - last) - self._rtt_jitter)
            self._last_rtt = rtt_ms
            self._recent_rtts.append(rtt_ms)
            queueing = min(self._recent_rtts) - base > margin
        self.queueing = queueing
        if queueing and self._proven is not None and sent_bps > 0:
            self._proven = min(self._proven, QUEUED_SHARE * sent_bps)
            if self.bps is not None and self._proven < self.bps:
                self.bps = max(self._proven, self.remb(now) or 0.0)
        heavy = fraction_lost >= HEAVY_LOSS and self._pooled_lost() >= HEAVY_MIN_LOST
        self.congested = heavy or (fraction_lost >= LIGHT_LOSS and queueing)
        if heavy:
            self._pool.clear()  # the loss is acted on once: what follows is measured afresh
        if self.congested and sent_bps > 0:
            # heavy loss: the link carries less than is sent now. Light loss with a queue: the
            # estimate comes down by half the loss from where it was (GCC's loss-based step),
            # not from what is sent, which is less once the classroom was moved down a layer:
            # random loss and a burst of jitter on a rural line must not spiral it to nothing
            base = sent_bps if heavy or self.bps is None else max(sent_bps, self.bps)
            bound = base * (1 - 0.5 * fraction_lost)
            if fraction_lost >= DELIVERED_LOSS:
                bound = sent_bps * (1 - fraction_lost)
            if self._loss_bound is None or bound < self._loss_bound:
                self._loss_bound = bound
            self._update(now, "loss" if heavy else "queueing")
            return
        clean = fraction_lost < LIGHT_LOSS and not queueing
        if self._loss_bound is not None and clean and now - self._remb_at <= REMB_FRESH_S:
            # the loss is over and the classroom's REMB measures its link: the bound set
            # while it lost (from what was sent then, little once its video was paused) goes
            self._loss_bound = None
        if self._loss_bound is not None and self._updated_at is not None:
            grown = self._loss_bound * (1 + RISE_PER_S * max(now - self._updated_at, 0.0))
            slack = LOSS_BOUND_SLACK * max(sent_bps, 1.0)
            self._loss_bound = None if grown > slack else grown
        self._update(now, self.reason)

    def _pooled(self, fraction_lost: float, packets: int | None, now: float) -> float:
        """The loss of the reports of the last LOSS_POOL_S, this one included."""
        pool = self._pool
        if packets is None:
            # unknown: the report alone, as if it covered just enough packets to be sure
            covered = math.ceil(HEAVY_MIN_LOST / HEAVY_LOSS)
            pool.clear()
            pool.append((now, fraction_lost * covered, covered))
            return fraction_lost
        pool.append((now, fraction_lost * packets, packets))
        while pool and now - pool[0][0] > LOSS_POOL_S:
            pool.popleft()
        covered = sum(p[2] for p in pool)
        return sum(p[1] for p in pool) / covered if covered else 0.0

    def _pooled_lost(self) -> float:
        return sum(p[1] for p in self._pool)

    def on_heavy_loss(self, share: float, sent_bps: float, now: float) -> None:
        """The classroom's NACKs show it losing ``share`` (at least DELIVERED_LOSS) of what
        it is sent: congestion, and the bound is what arrived (as a report with that loss)."""
        self.loss = max(self.loss, share)
        self.congested = True
        if sent_bps <= 0:
            return
        bound = sent_bps * (1 - share)
        if self._loss_bound is None or bound < self._loss_bound:
            self._loss_bound = bound
        self._update(now, "loss")

    def on_nacks(self, count: int, now: float) -> None:
        """``count`` sequence numbers asked for again (for the record: the loss a NACK tells
        is repaired, so it is no reason to send less)."""
        if self._nacks_at is None:
            self._nacks_at = now
        self._nacks += count
        elapsed = now - self._nacks_at
        if elapsed >= NACK_WINDOW_S:
            self.nack_rate = self._nacks / elapsed
            self._nacks, self._nacks_at = 0, now

    # the estimate

    def _bounds(self, now: float) -> float:
        remb = self._remb if now - self._remb_at <= REMB_FRESH_S else None
        if self._proven is not None:
            remb = max(remb or 0.0, self._proven)
        bounds = [b for b in (remb, self._loss_bound) if b is not None]
        return min(bounds) if bounds else math.inf

    def _update(self, now: float, reason: str) -> None:
        remb = self._remb if now - self._remb_at <= REMB_FRESH_S else None
        if self._proven is not None:
            remb = max(remb or 0.0, self._proven)
        bounds = [b for b in (remb, self._loss_bound) if b is not None]
        target = min(bounds) if bounds else None
        current = self.bps
        last = self._updated_at
        self._updated_at = now
        if target is None:
            self.bps = None
            return
        if current is not None and target > current and last is not None:
            # up slowly: at most RISE_PER_S per second since the last update (REMB_RISE_PER_S
            # where the REMB is what bounds it)
            rise = REMB_RISE_PER_S if remb is not None and target >= remb - 1 else RISE_PER_S
            target = min(target, current * (1 + rise * max(now - last, 0.0)))
        if current is None or target < current:
            self.reason = "remb" if remb is not None and target >= remb - 1 else reason
        self.bps = target

    def refresh(self, now: float) -> None:
        """Let a stale REMB go (no feedback at all for a while)."""
        self._update(now, self.reason)

    def as_json(self) -> dict[str, object]:
        return {
            "estimate_kbps": None if self.bps is None else round(self.bps / 1000, 1),
            "reason": self.reason,
            "congested": self.congested,
            "remb_kbps": None
            if self._remb is None
            else round(self._remb * REMB_DECREASE / 1000, 1),
            "loss": round(self.loss, 4),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 1),
            "rtt_jitter_ms": round(self._rtt_jitter, 1),
            "nacks_per_s": round(self.nack_rate, 1),
            "proven_kbps": None if self._proven is None else round(self._proven / 1000, 1),
        }
