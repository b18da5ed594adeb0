"""A userspace link emulator: one peer's UDP path to the server, as a weak rural link.

The emulator is a UDP relay in the test's own process (inside the test's network namespace,
on 127.0.0.1 only). The peer and the server are made to talk to the relay instead of to each
other by rewriting the ICE candidates of the offer and the answer, so no kernel packet filter
(tc/netem, iptables) is needed. Each direction is a :class:`Lane` that applies, in order:

1. loss: a Gilbert–Elliott two-state chain (good/bad, with a loss probability in each),
   plain random loss being the one-state special case;
2. a bottleneck: datagrams are sent on at the link rate, behind the ones already waiting; a
   datagram that would push the backlog over the queue size is dropped (drop-tail), so
   queueing delay grows before loss appears;
3. propagation: half the profile's RTT, plus uniform jitter, without reordering by default
   (a datagram never leaves before the one ahead of it in the same direction).

Every datagram's delivery time is known when it arrives (the bottleneck is FIFO), so a lane
keeps one queue of datagrams in delivery order and one timer (``loop.call_at``) for its head;
a memory cap (``max_datagrams`` per direction) bounds it on a link without a rate limit.

Directions: *downlink* is server → peer (what a classroom receives), *uplink* is
peer → server (what a teacher publishes). All sessions routed through one emulator share its
two lanes, as the sessions of one classroom share its one link.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import re
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from playwright.async_api import Page, Request, Route

Address = tuple[str, int]
T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True)
class Loss:
    """Gilbert–Elliott loss: a good and a bad state, moved between before each datagram.

    ``good_to_bad``/``bad_to_good`` are the per-datagram transition probabilities,
    ``in_good``/``in_bad`` the probability that a datagram is lost in that state.
    """

    good_to_bad: float = 0.0
    bad_to_good: float = 1.0
    in_good: float = 0.0
    in_bad: float = 0.0

    @classmethod
    def random(cls, rate: float) -> Loss:
        """Independent loss of ``rate`` per datagram (the chain never leaves the good state)."""
        return cls(in_good=rate)

    @classmethod
    def bursty(cls, rate: float, mean_burst: float, in_bad: float = 1.0) -> Loss:
        """Loss of ``rate`` on average, in bursts: the bad state lasts ``mean_burst``
        datagrams on average and loses ``in_bad`` of them; the good state loses none."""
        if not 0.0 <= rate < in_bad or mean_burst < 1.0:
            raise ValueError("need 0 <= rate < in_bad and mean_burst >= 1")
        bad_share = rate / in_bad
        bad_to_good = 1.0 / mean_burst
        return cls(bad_share * bad_to_good / (1.0 - bad_share), bad_to_good, 0.0, in_bad)

    @property
    def average(self) -> float:
        """The long-run share of datagrams lost."""
        moves = self.good_to_bad + self.bad_to_good
        bad_share = self.good_to_bad / moves if moves else 0.0
        return (1.0 - bad_share) * self.in_good + bad_share * self.in_bad


@dataclass(frozen=True)
class Profile:
    """An emulated link (DESIGN.md §2, §9). Times in seconds, rates in bit/s.

    ``rate`` limits the downlink (server → peer), ``uplink_rate`` the uplink; by default the
    uplink gets the same rate (a rural line is rarely better upstream), ``None`` means no
    limit. ``queue`` is the bottleneck's buffer as seconds at its rate, or ``queue_bytes`` in
    bytes (drop-tail). ``jitter`` is the half-width of the uniform spread around the one-way
    delay (``rtt / 2``); a datagram never overtakes the one ahead of it unless ``reorder``.
    """

    name: str
    rtt: float = 0.0
    loss: Loss = field(default_factory=Loss)
    rate: float | None = None
    uplink_rate: float | None | Literal["same"] = "same"
    jitter: float = 0.0
    queue: float = 0.15
    queue_bytes: int | None = None
    reorder: bool = False

    def lane(self, downlink: bool) -> tuple[float | None, float]:
        """The rate (bit/s or None) and the queue size in bytes of one direction."""
        rate = self.rate if downlink or self.uplink_rate == "same" else self.uplink_rate
        if rate is None or isinstance(rate, str):
            return None, float("inf")
        if self.queue_bytes is not None:
            return rate, float(self.queue_bytes)
        return rate, max(rate * self.queue / 8, 3000.0)  # at least two full-size datagrams


GOOD = Profile("good", rtt=0.030, loss=Loss.random(0.001), jitter=0.002)
RURAL = Profile("rural", rtt=0.100, loss=Loss.random(0.01), rate=2e6, jitter=0.010)
POOR = Profile("poor", rtt=0.150, loss=Loss.random(0.03), rate=1e6, jitter=0.020)
SATELLITE = Profile("satellite", rtt=0.600, loss=Loss.random(0.01), rate=2e6, jitter=0.010)
COLLAPSE_RATE = 300e3
COLLAPSE_SECONDS = 20.0
PROFILES = {p.name: p for p in (GOOD, RURAL, POOR, SATELLITE)}

Timeline = Sequence[tuple[Profile, float]]


def collapse(
    base: Profile, seconds: float = COLLAPSE_SECONDS, rate: float = COLLAPSE_RATE
) -> Timeline:
    """The "collapse" profile as a timeline: ``base`` squeezed to ``rate`` (both ways) for
    ``seconds``, then ``base`` again. Play it with :meth:`LinkEmulator.play`."""
    squeezed = replace(base, name=f"{base.name}+collapse", rate=rate, uplink_rate="same")
    return [(squeezed, seconds), (base, 0.0)]


# ---------------------------------------------------------------------------------------------
# One direction


@dataclass
class LaneStats:
    """What one direction did with the datagrams it got."""

    datagrams_in: int = 0
    bytes_in: int = 0
    delivered: int = 0
    bytes_delivered: int = 0
    lost: int = 0
    """Dropped by the loss model."""
    overflow: int = 0
    """Dropped because the bottleneck queue was full."""
    cut: int = 0
    """Dropped while the link was cut."""
    queued: int = 0
    queue_delay_max: float = 0.0
    """Longest wait behind the bottleneck (seconds), over datagrams let in."""
    queue_delay_sum: float = 0.0

    @property
    def queue_delay_mean(self) -> float:
        return self.queue_delay_sum / self.queued if self.queued else 0.0

    @property
    def dropped(self) -> int:
        return self.lost + self.overflow + self.cut

    def as_dict(self) -> dict[str, float]:
        return {
            "datagrams_in": self.datagrams_in,
            "bytes_in": self.bytes_in,
            "delivered": self.delivered,
            "bytes_delivered": self.bytes_delivered,
            "lost": self.lost,
            "overflow": self.overflow,
            "cut": self.cut,
            "queue_delay_max_ms": round(self.queue_delay_max * 1000, 1),
            "queue_delay_mean_ms": round(self.queue_delay_mean * 1000, 1),
        }


class Lane:
    """One direction of the link: loss, then the bottleneck queue, then delay and jitter."""

    def __init__(self, link: LinkEmulator, downlink: bool, seed: int, max_datagrams: int):
        self.link = link
        self.downlink = downlink
        self.stats = LaneStats()
        self.max_datagrams = max_datagrams
        self._random = random.Random(seed)
        self._bad = False
        self._free_at = 0.0  # when the bottleneck has sent everything let in so far
        self._last_delivery = 0.0
        # datagrams on their way, by delivery time (then arrival): FIFO unless reordering
        self._queue: list[tuple[float, int, asyncio.DatagramTransport, bytes, Address]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def _lost(self, loss: Loss) -> bool:
        chance = self._random.random
        if self._bad:
            if loss.bad_to_good and chance() < loss.bad_to_good:
                self._bad = False
        elif loss.good_to_bad and chance() < loss.good_to_bad:
            self._bad = True
        p = loss.in_bad if self._bad else loss.in_good
        return p > 0 and chance() < p

    def send(self, data: bytes, transport: asyncio.DatagramTransport, to: Address) -> None:
        """Take one datagram that ``transport`` should send to ``to`` at the link's pace."""
        stats, profile, size = self.stats, self.link.profile, len(data)
        stats.datagrams_in += 1
        stats.bytes_in += size
        if self.link.cut:
            stats.cut += 1
            return
        if self._lost(profile.loss):
            stats.lost += 1
            return
        if len(self._queue) >= self.max_datagrams:  # bounds memory on an unlimited link
            stats.overflow += 1
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._free_at)  # when the bottleneck starts sending this one
        rate, queue_bytes = profile.lane(self.downlink)
        if rate is None:
            sent = start = now
        else:
            if (start - now) * rate / 8 + size > queue_bytes:  # the backlog, in bytes
                stats.overflow += 1
                return
            sent = self._free_at = start + size * 8 / rate
        wait = start - now
        stats.queued += 1
        stats.queue_delay_sum += wait
        stats.queue_delay_max = max(stats.queue_delay_max, wait)
        one_way = profile.rtt / 2
        if profile.jitter:
            one_way = max(0.0, one_way + self._random.uniform(-profile.jitter, profile.jitter))
        at = sent + one_way
        if not profile.reorder:
            at = max(at, self._last_delivery)  # FIFO: never overtake the one ahead
            self._last_delivery = at
        if not self._queue and at <= now:
            self._deliver(transport, data, to)
            return
        heapq.heappush(self._queue, (at, next(self._order), transport, data, to))
        if self._timer is None or at < self._timer_at:  # a new head (only when reordering)
            self._schedule(at)

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._wake)
        self._timer_at = at

    def _deliver(self, transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
        if self.link.cut:
            self.stats.cut += 1
        elif not transport.is_closing():
            transport.sendto(data, to)
            self.stats.delivered += 1
            self.stats.bytes_delivered += len(data)

    def _wake(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        # the loop may wake a little early or late; deliver what is due within 0.5 ms
        while queue and queue[0][0] <= now + 0.0005:
            _, _, transport, data, to = heapq.heappop(queue)
            self._deliver(transport, data, to)
        if queue:
            self._schedule(queue[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


# ---------------------------------------------------------------------------------------------
# Relays and SDP

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ )(\S+)( \d+ )(\S+) (\d+)( typ .*)$", re.IGNORECASE)


def _candidates(sdp: str, replace: Callable[[re.Match[str]], str | None]) -> str:
    """``sdp`` with each candidate line replaced by ``replace(match)``, or left out on None."""
    lines = []
    for line in sdp.split("\r\n"):
        match = _CANDIDATE.match(line)
        if match is None:
            lines.append(line)
        elif (new := replace(match)) is not None:
            lines.append(new)
    return "\r\n".join(lines)


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, from_peer: bool) -> None:
        self.relay = relay
        self.from_peer = from_peer

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.received(data, addr, self.from_peer)


class Relay:
    """Two sockets for one session: one the peer talks to, one the server talks to."""

    def __init__(self, link: LinkEmulator) -> None:
        self.link = link
        self.peer: Address | None = None
        self.server: Address | None = None
        self.to_peer: asyncio.DatagramTransport | None = None
        self.to_server: asyncio.DatagramTransport | None = None

    async def open(self) -> Relay:
        loop = asyncio.get_running_loop()
        self.to_peer, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, True), local_addr=("127.0.0.1", 0)
        )
        self.to_server, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, False), local_addr=("127.0.0.1", 0)
        )
        return self

    @staticmethod
    def _address(transport: asyncio.DatagramTransport | None) -> Address:
        assert transport is not None, "relay not open"
        host, port = transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def address_for_peer(self) -> Address:
        """Where the peer sends (the relay's stand-in for the server)."""
        return self._address(self.to_peer)

    @property
    def address_for_server(self) -> Address:
        """Where the server sends (the relay's stand-in for the peer)."""
        return self._address(self.to_server)

    def received(self, data: bytes, addr: Address, from_peer: bool) -> None:
        if from_peer:
            self.peer = addr  # the peer may send from another port than it announced
            if self.server is not None and self.to_server is not None:
                self.link.uplink.send(data, self.to_server, self.server)
        else:
            if self.server is None:  # an answer without candidates: the server's checks tell
                self.server = addr
            if self.peer is not None and self.to_peer is not None:
                self.link.downlink.send(data, self.to_peer, self.peer)

    def offer(self, sdp: str) -> str:
        """The peer's offer with its UDP candidates replaced by the relay's (TCP left out).

        Each media section keeps its own candidate line: a peer that bundles repeats it in
        every section, and the server expects it there."""
        host, port = self.address_for_server
        seen: set[str] = set()

        def replace(match: re.Match[str]) -> str | None:
            if match.group(2).lower() != "udp":
                return None
            if self.peer is None:
                self.peer = (match.group(4), int(match.group(5)))
            line = f"{match.group(1)}udp{match.group(3)}{host} {port}{match.group(6)}"
            if line in seen:
                return None
            seen.add(line)
            return line

        sections = []
        for section in sdp.split("\r\nm="):
            seen.clear()
            sections.append(_candidates(section, replace))
        return "\r\nm=".join(sections)

    def answer(self, sdp: str) -> str:
        """The server's answer with its UDP candidate replaced by the relay's (TCP left out:
        the relay carries UDP only)."""
        host, port = self.address_for_peer

        def replace(match: re.Match[str]) -> str | None:
            if match.group(2).lower() != "udp":
                return None
            server = (match.group(4), int(match.group(5)))
            if self.server not in (None, server):
                raise AssertionError("the relay handles one server candidate per session")
            self.server = server
            head, protocol, priority, _, _, tail = match.groups()
            return f"{head}{protocol}{priority}{host} {port}{tail}"

        return _candidates(sdp, replace)

    def close(self) -> None:
        for transport in (self.to_peer, self.to_server):
            if transport is not None:
                transport.close()


# ---------------------------------------------------------------------------------------------
# The emulator


class LinkEmulator:
    """One peer's link to the server, shaped by a :class:`Profile` that can change at any time.

    Route an aiortc peer through it with ``whep_subscribe(..., link=emulator)`` or
    ``whip_publish(..., link=emulator)`` (tests/support/peers.py), a Chromium page with
    :meth:`route`, or any UDP pair with :meth:`open_relay`. ``cut = True`` drops everything,
    both ways, including datagrams still on their way. :meth:`close` releases every socket
    and timer.
    """

    def __init__(
        self,
        profile: Profile = GOOD,
        *,
        seed: int = 1,
        max_datagrams: int = 20_000,
        own_thread: bool = False,
    ) -> None:
        self.profile = profile
        self.cut = False
        self.downlink = Lane(self, True, seed * 2, max_datagrams)
        self.uplink = Lane(self, False, seed * 2 + 1, max_datagrams)
        self.sessions = 0
        """WHIP/WHEP sessions whose answer came back through the emulator."""
        self._relays: list[Relay] = []
        self._timeline: asyncio.Task[None] | None = None
        # With ``own_thread`` the relays and lanes run on an event loop of their own: a
        # process that also drives browsers (Playwright parsing getStats) would otherwise hold
        # datagrams for milliseconds at a time, and a sender's delay-based congestion control
        # (Chrome's GCC) takes that for a queue and backs off far below the link's rate.
        self._thread: _LoopThread | None = _LoopThread() if own_thread else None

    def set_profile(self, profile: Profile) -> None:
        """Shape every datagram from now on by ``profile`` (those already queued keep their
        times; the bottleneck's backlog carries over)."""
        self.profile = profile

    def play(self, timeline: Timeline) -> asyncio.Task[None]:
        """Switch profiles on a schedule: each ``(profile, seconds)`` in turn, the last one
        staying. Replaces a timeline still playing; ``close()`` stops it."""
        if self._timeline is not None:
            self._timeline.cancel()

        async def run() -> None:
            for profile, seconds in timeline:
                self.set_profile(profile)
                if seconds > 0:
                    await asyncio.sleep(seconds)

        self._timeline = asyncio.create_task(run(), name="link-emulator-timeline")
        return self._timeline

    @property
    def dropped(self) -> int:
        """Datagrams dropped both ways, for any reason."""
        return self.downlink.stats.dropped + self.uplink.stats.dropped

    def stats(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "downlink": self.downlink.stats.as_dict(),
            "uplink": self.uplink.stats.as_dict(),
        }

    async def open_relay(self, server: Address | None = None) -> Relay:
        """A new pair of relay sockets on this link (for one WebRTC session, or raw UDP: send
        to ``relay.address_for_peer`` from the peer; ``server`` is where it forwards to)."""
        if self._thread is None:
            relay = await Relay(self).open()
        else:
            relay = await self._thread.run(Relay(self).open())
        relay.server = server
        self._relays.append(relay)
        return relay

    # Chromium ----------------------------------------------------------------------------

    async def route(self, page: Page) -> LinkEmulator:
        """Send ``page``'s WHIP and WHEP sessions through this link (call before it
        connects): Playwright rewrites the offers and answers it exchanges."""
        await page.route(re.compile(r"/(whip|whep)/[^/?]+(\?.*)?$"), self._handle)
        return self

    async def _handle(self, route: Route, request: Request) -> None:
        if request.method != "POST" or request.post_data is None:
            await route.continue_()
            return
        relay = await self.open_relay()
        response = await route.fetch(post_data=relay.offer(request.post_data))
        body = await response.text()
        if response.status == 201:
            body = relay.answer(body)
            self.sessions += 1
        await route.fulfill(response=response, body=body)

    def close(self) -> None:
        if self._timeline is not None:
            self._timeline.cancel()
            self._timeline = None
        if self._thread is not None:
            self._thread.stop(self._close_lanes)
            self._thread = None
        else:
            self._close_lanes()

    def _close_lanes(self) -> None:
        self.downlink.close()
        self.uplink.close()
        for relay in self._relays:
            relay.close()
        self._relays.clear()


class _LoopThread:
    """An event loop on a thread of its own, for the relays and lanes of one emulator."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="link-emulator", daemon=True
        )
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the emulator's loop and wait for it from the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self, last: Callable[[], None]) -> None:
        """Call ``last`` on the emulator's loop, then end the loop and its thread."""

        def finish() -> None:
            last()
            self.loop.call_soon(self.loop.stop)  # after the closing transports' callbacks

        self.loop.call_soon_threadsafe(finish)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
