"""When to probe one classroom's link above its estimate after a large drop, at what rate, and
whether its feedback shows that the link carried the probe (DESIGN §4.7: up after a probe).

A classroom's REMB comes from its own receive-side estimator, which grows at most ~8 % a
second (GCC's multiplicative increase, and additive once it has seen its link full): a
classroom back from a collapse at ~100 kbit/s would wait ~40 s for a REMB that carries 720p
again. As libwebrtc's ProbeController does after a large drop, the server then sends short
probes (padding on top of what it sends) well above the estimate, and takes the probed rate as
proof once the classroom's feedback shows no cost: no REMB step of its receiver's
overuse detector, no round trip grown above the one before the probe, no loss added. A probe
that costs something is stopped at once and tried again later; a probe that passes is followed
by a higher one, so the climb is exponential (×2, then ×3) up to what the best layers need.

Probing starts only where the link has carried much more before (``CARRIED_HOLD_S`` of clean
reports on the best layers, with an estimate no lower than what was sent): a steady weak link
(rural, poor, satellite) is not pushed above what it has shown it carries, and a classroom
that tells nothing is never probed.

Pure logic, fed with the classroom's feedback and the clock; the send gate sends the padding.
"""

from __future__ import annotations

import math

from .estimate import REMB_STEP_DOWN, REMB_STEP_UP

CARRIED_HOLD_S = 5.0  # clean reports on the best layers this long: the link carries what is sent
CARRIED_MEMORY_S = 300.0  # ... remembered this long
LARGE_DROP = 0.66  # probing starts when the estimate falls below this share of what it carried
CHAIN_S = 10.0  # ... and goes on this long after a probe that passed, while a better layer waits
# A probe sends at its rate this long: at 1.5 times a link's rate it builds a queue of 150 ms,
# which the round trip of the sender report sent as it ends shows, before a drop-tail buffer
# of 150 ms overflows (and the sound with it)
PROBE_S = 0.3
CLEAN_BEFORE_S = 2.0  # ... once the classroom's reports have shown no loss or queue this long,
SETTLE_S = 4.0  # ... and this long after a step down (the link's queue drains first)
FIRST_GAIN = 2.0  # the first probe of a climb: this many times what is sent (or estimated)
NEXT_GAIN = 3.0  # ... and after one that passed
MARGIN = 1.5  # a probe shows what a layer needs with this to spare (keyframes, repairs)
EVIDENCE_AFTER_S = 0.1  # a receiver report this long after the probe ends tells its round trip
VERDICT_WAIT_S = 2.0  # no such report this long after the probe: not proven
# The next probe after one that failed: RETRY_S, then 1.5 times longer after each failure in a
# row up to RETRY_SOON_MAX_S (a collapse of a few tens of seconds is probed a few times, and its
# end found within that), and after RETRY_LONG_AFTER failures doubled up to RETRY_MAX_S.
RETRY_S = 4.0
RETRY_SOON_MAX_S = 8.0
RETRY_LONG_AFTER = 8
RETRY_MAX_S = 60.0
RTT_RISE_MS = 30.0  # a round trip this much above the one before the probe: a queue built ...
RTT_RISE_SHARE = 0.2  # ... or this share of it, whichever is more
LOSS_ADDED = 0.02  # loss this much above the loss before the probe (at least) is its cost


class RateProbe:
    """One classroom's probes. ``rate`` is what to send while a probe runs (None: none runs)."""

    __slots__ = (
        "rate",
        "carried",
        "passed",
        "failures",
        "_carried_at",
        "_clean_full_since",
        "_started_at",
        "_ends_at",
        "_rtt_ref",
        "_loss_ref",
        "_failed",
        "_evidence",
        "_next_at",
        "_passed_at",
        "failed_by",
    )

    def __init__(self) -> None:
        self.rate: float | None = None
        self.carried: float | None = None  # what the link carried on the best layers
        self.passed = 0
        self.failures = 0
        self._carried_at = -math.inf
        self._clean_full_since: float | None = None
        self._started_at = -math.inf
        self._ends_at = -math.inf
        self._rtt_ref: float | None = None
        self._loss_ref = 0.0
        self._failed = False
        self._evidence = False
        self._next_at = -math.inf
        self._passed_at = -math.inf
        self.failed_by = ""  # what stopped the latest probe that failed

    @property
    def running(self) -> bool:
        return self.rate is not None

    def idle(self, now: float) -> bool:
        """Whether a probe may start now (none runs, none failed lately)."""
        return self.rate is None and now >= self._next_at

    def sending(self, now: float) -> bool:
        """Whether the probe's padding is to be sent now (it runs and has not ended)."""
        return self.rate is not None and now < self._ends_at and not self._failed

    # what the link carried before

    def on_full(self, sent_bps: float, clean: bool, now: float) -> None:
        """The classroom is on the best layers; ``clean``: its latest report showed no loss to
        speak of and no queue, and its estimate is no lower than ``sent_bps``."""
        if not clean:
            self._clean_full_since = None
            return
        if self._clean_full_since is None:
            self._clean_full_since = now
        if now - self._clean_full_since >= CARRIED_HOLD_S and sent_bps > 0:
            self.carried = max(sent_bps, self.carried or 0.0)
            self._carried_at = now

    def not_full(self) -> None:
        self._clean_full_since = None

    # when and how high

    def stepped_down(self, now: float) -> None:
        """The classroom was just moved down (or its video paused)."""
        self._next_at = max(self._next_at, now + SETTLE_S)
        self._passed_at = -math.inf

    def want(
        self,
        estimate: float | None,
        media_bps: float,
        next_need: float,
        top_need: float,
        clean_for: float,
        now: float,
    ) -> float | None:
        """The rate to probe now (None: not now). ``media_bps``: what the classroom is fed
        now; ``next_need``: what the next better layers need, sound included; ``top_need``:
        what the best need; ``clean_for``: how long its reports have shown no loss or queue."""
        if self.rate is not None or now < self._next_at or estimate is None:
            return None
        if clean_for < CLEAN_BEFORE_S:
            return None
        carried = self.carried
        if carried is None or now - self._carried_at > CARRIED_MEMORY_S:
            return None
        chain = now - self._passed_at <= CHAIN_S
        if not chain and estimate >= LARGE_DROP * carried:
            return None
        base = max(estimate, media_bps)
        rate = (NEXT_GAIN if chain else FIRST_GAIN) * base
        rate = max(rate, next_need * MARGIN)
        return min(rate, max(top_need * MARGIN, next_need * MARGIN))

    def start(self, rate: float, rtt_ms: float | None, loss: float, now: float) -> None:
        self.rate = rate
        self._started_at = now
        self._ends_at = now + PROBE_S
        self._rtt_ref = rtt_ms
        self._loss_ref = loss
        self._failed = False
        self._evidence = False

    # what the classroom says meanwhile

    def on_remb(self, bps: float, before: float | None, now: float) -> None:
        if self.rate is None or before is None or before <= 0:
            return
        if not REMB_STEP_DOWN * before <= bps <= REMB_STEP_UP * before:
            self._fail("remb")  # its overuse detector fired: the probe built a queue

    def on_report(
        self,
        loss: float,
        rtt_ms: float | None,
        congested: bool,
        now: float,
        measured_at: float | None = None,
    ) -> None:
        """A receiver report; ``measured_at``: when the sender report whose round trip it
        tells was sent (None: unknown, taken as now)."""
        if self.rate is None:
            return
        if congested or loss >= max(LOSS_ADDED, self._loss_ref + LOSS_ADDED):
            self._fail("loss")
        ref = self._rtt_ref
        # only a round trip measured during the probe's second half, or after, tells its queue
        at = now if measured_at is None else measured_at
        if rtt_ms is not None and at >= self._started_at + PROBE_S / 2:
            if ref is not None and rtt_ms > ref + max(RTT_RISE_MS, RTT_RISE_SHARE * ref):
                self._fail("rtt")
            if now >= self._ends_at + EVIDENCE_AFTER_S:
                self._evidence = True

    def _fail(self, why: str) -> None:
        if not self._failed:
            self._failed = True
            self.failed_by = why

    def verdict(self, now: float) -> bool | None:
        """True: the link carried ``rate`` (ends the probe); False: it did not (ends it); None:
        not known yet."""
        if self.rate is None:
            return None
        if self._failed:
            return self._end(False, now)
        if self._evidence:
            return self._end(True, now)
        if now >= self._ends_at + VERDICT_WAIT_S:
            self.failed_by = "no proof"
            return self._end(False, now, proof_missing=True)
        return None

    def _end(self, passed: bool, now: float, proof_missing: bool = False) -> bool:
        self.rate = None
        if passed:
            self.passed += 1
            self.failures = 0
            self._passed_at = now
            self._next_at = now
            return True
        self._passed_at = -math.inf
        if not proof_missing:
            self.failures += 1
        failures = max(self.failures, 1)
        wait = min(RETRY_S * 1.5 ** (failures - 1), RETRY_SOON_MAX_S)
        wait *= 2 ** max(failures - RETRY_LONG_AFTER, 0)
        self._next_at = now + min(wait, RETRY_MAX_S)
        return False

    def as_json(self) -> dict[str, object]:
        return {
            "probe_kbps": None if self.rate is None else round(self.rate / 1000),
            "carried_kbps": None if self.carried is None else round(self.carried / 1000),
            "probes_passed": self.passed,
            "probe_failures": self.failures,
            "probe_failed_by": self.failed_by,
        }
