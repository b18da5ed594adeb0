"""An edge's pull of a lesson from its origin server: one WHEP session at the origin, as an
ordinary classroom, whose packets feed this server's producers without being decoded; made
again on every reconnection (with back-off) while the origin comes and goes.

The producers are as a WHIP publisher's: their packet caches answer this server's classrooms'
NACKs, their throttled keyframe requests go to the origin as PLI on the pull's connection, and
what is lost on the way is asked for again there. The origin is told this server's own link
(aiortc's REMB), never a classroom's: it sends the best layer that link carries, and each
classroom here gets what its own link carries of that (a lighter layer made here if needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from yarl import URL

from .aiortc_adapter.consent import unheard_s
from .aiortc_adapter.ice import configure_ice
from .aiortc_adapter.rtp_reader import IngressSink, ReceiveParameters, install_ingress
from .codec import SUPPORTED
from .network import Network
from .producer import Producer, Upstream
from .pulled_source import PullState, PullStatus
from .reconnect import BACKOFF_FIRST_S, BACKOFF_MAX_S, Backoff
from .rtp_packet import RtpPacket
from .sender_clock import SenderClock

logger = logging.getLogger(__name__)

# The m-lines the pull offers, in the order the origin's WHEP endpoint fills them: its camera's
# picture, its courseware, its camera's sound.
SLOTS: tuple[tuple[str, str], ...] = (
    ("video", "camera"),
    ("video", "courseware"),
    ("audio", "camera"),
)
MAX_ANSWER_BYTES = 64 * 1024  # an answer is a few kB; more is not a WHEP server talking
# a source the origin has sent nothing of for this long is not sent now (its teacher stopped)
QUIET_S = 2.0
# an origin sends RTCP on every m-line about once a second, media or not: one unheard of for
# this long has gone (its server stopped, the network between dropped), long before its ICE
# consent would lapse
SILENT_S = 5.0
WATCH_S = 0.5
DELETE_TIMEOUT_S = 2.0


class RelayError(Exception):
    """Why one attempt to pull the origin failed or ended; ``code`` is short, the message
    says it in words (never with the token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# the origin's answers to a POST it refused, by status: our code for each, when the origin's
# own JSON code says no more
_REFUSALS = {
    401: ("unauthorized", "the origin refused the token"),
    403: ("forbidden", "the origin does not let this token watch"),
    404: ("not_whep", "the origin has no WHEP endpoint at this address"),
    409: ("refused", "the origin turned this server away"),
    410: ("lesson_ended", "the origin's lesson has ended"),
}


class _Slot:
    """One m-line of the pull: the producer it feeds, handed to the router with its first
    packet (a slot the origin sends nothing on is no source here)."""

    __slots__ = ("source", "producer", "added", "last_arrival", "_add")

    def __init__(self, source: str, producer: Producer, add: Callable[[_Slot], None]) -> None:
        self.source = source
        self.producer = producer
        self.added = False
        self.last_arrival = 0.0  # monotonic
        self._add = add

    def on_rtp(self, packet: RtpPacket, arrival: float) -> None:
        self.last_arrival = time.monotonic()
        if not self.added:
            self._add(self)
        self.producer.on_rtp(packet, arrival)

    def on_sender_report(
        self, sender_time: float, rtp_timestamp: int, arrival: float, ssrc: int | None = None
    ) -> None:
        self.producer.on_sender_report(sender_time, rtp_timestamp, arrival, ssrc)

    def downstream_loss(self) -> float:
        return 0.0  # the origin fits its sound to this server's link, not to a classroom's


class OriginPull:
    """Made by ``Router.relay`` with the router's closures (as a ``PulledSource``); ``on_state``
    is told every change of state, ``on_sources`` every change in what the origin sends.
    ``close`` is its own end, ``router_closed`` the router's."""

    role = "relayed"

    def __init__(
        self,
        router_id: str,
        endpoint: str,
        name: str,
        token: str,
        network: Network,
        *,
        add_producer: Callable[[Producer], None],
        remove_producer: Callable[[Producer], None],
        released: Callable[[OriginPull], None],
        on_state: Callable[[PullStatus], None],
        on_sources: Callable[[], None],
        timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (BACKOFF_FIRST_S, BACKOFF_MAX_S),
    ) -> None:
        self.router_id = router_id
        self.source = "camera"  # the source it stands for in the lesson's state
        self._endpoint = endpoint
        self._name = name
        self._token = token
        # a client of the origin: a socket of its own, not this server's shared ports
        self._network = Network(
            dataclasses.replace(network.config, shared_port=None, tcp_port=None)
        )
        self._add_producer = add_producer
        self._remove_producer = remove_producer
        self._released = released
        self._on_state = on_state
        self._on_sources = on_sources
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        # the same client id on every attempt: the origin replaces the session it still
        # holds for this server after a drop instead of refusing the name as taken
        self._client = secrets.token_urlsafe(12)
        self.status = PullStatus(PullState.CONNECTING)
        self.connections = 0
        self.closed = False
        self._slots: list[_Slot] = []
        self._live: tuple[str, ...] = ()
        self._keyframe_requests_before = 0  # by the producers of earlier connections
        self._task: asyncio.Task[None] | None = None
        self._last_logged: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"<OriginPull {self.router_id} {self.status.state}>"

    @property
    def origin(self) -> str:
        parts = urlsplit(self._endpoint)
        return parts.netloc

    @property
    def keyframe_requests(self) -> int:
        """Keyframe requests sent to the origin so far (after throttling)."""
        return self._keyframe_requests_before + sum(
            s.producer.stats.keyframe_requests for s in self._slots
        )

    def live_sources(self) -> tuple[str, ...]:
        """The sources the origin sends now."""
        return self._live

    def start(self) -> None:
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    # the connection, again and again

    async def _run(self) -> None:
        backoff = Backoff(*self._backoff_s)
        while not self.closed:
            self._set(PullStatus(PullState.CONNECTING, self.status.error, self.status.code))
            started = time.monotonic()
            try:
                await self._connect_once()
                error = RelayError("lost", "the connection to the origin dropped")
            except RelayError as exc:
                error = exc
            except Exception as exc:  # a bug here must not take the lesson down
                logger.exception("lesson %s: pulling from the origin failed", self.router_id)
                error = RelayError("failed", f"the pull failed ({type(exc).__name__})")
            if self.closed:
                return
            delay = backoff.after(time.monotonic() - started)
            self._set(PullStatus(PullState.LOST, str(error), error.code, delay))
            if self._last_logged != error.code:
                self._last_logged = error.code
                logger.warning(
                    "lesson %s: origin %s: %s: %s (trying again, back-off up to %g s)",
                    self.router_id,
                    self.origin,
                    error.code,
                    error,
                    self._backoff_s[1],
                )
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        """One WHEP session at the origin, from the offer until it drops (RelayError)."""
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        state_changed = asyncio.Event()
        pc.on("connectionstatechange", state_changed.set)
        self.connections += 1
        connection = self.connections
        clocks: dict[str, SenderClock] = {}  # one per source: its tracks share a clock
        location: str | None = None
        try:
            for kind, source in SLOTS:
                transceiver = pc.addTransceiver(kind, direction="recvonly")
                capabilities = RTCRtpReceiver.getCapabilities(kind)
                assert capabilities is not None
                transceiver.setCodecPreferences(
                    [
                        c
                        for c in capabilities.codecs
                        if c.mimeType.lower() in SUPPORTED or c.mimeType.lower() == f"{kind}/rtx"
                    ]
                )
                clock = clocks.setdefault(source, SenderClock())
                install_ingress(
                    transceiver.receiver,
                    self._receiver(connection, source, clock),
                    estimate_link=True,
                )
            configure_ice(pc, self._network)
            await pc.setLocalDescription(await pc.createOffer())
            answer, location = await self._post(pc.localDescription.sdp)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            except Exception as exc:  # aiortc raises many types for SDP it cannot use
                raise RelayError(
                    "not_whep", f"the origin's answer cannot be used ({type(exc).__name__})"
                ) from None
            deadline = time.monotonic() + 2 * self._timeout_s
            while pc.connectionState != "connected":
                left = deadline - time.monotonic()
                if pc.connectionState in ("failed", "closed") or left <= 0:
                    raise RelayError(
                        "no_media_path", f"no media path to the origin {self.origin} (ICE/DTLS)"
                    )
                state_changed.clear()
                try:
                    await asyncio.wait_for(state_changed.wait(), left)
                except TimeoutError:
                    pass
            logger.info(
                "lesson %s: pulling the origin %s as %r (connection %d)",
                self.router_id,
                self.origin,
                self._name,
                connection,
            )
            while pc.connectionState == "connected":
                state_changed.clear()
                try:
                    await asyncio.wait_for(state_changed.wait(), WATCH_S)
                except TimeoutError:
                    pass
                self._watch()
                if unheard_s(pc) > SILENT_S:
                    raise RelayError(
                        "lost", f"the origin {self.origin} went silent for {SILENT_S:g} s"
                    )
        finally:
            self._drop_producers(give_back=not self.closed)
            await pc.close()
            if location is not None:
                await self._delete(location)

    def _receiver(
        self, connection: int, source: str, clock: SenderClock
    ) -> Callable[[ReceiveParameters, Any], IngressSink | None]:
        def on_receive(params: ReceiveParameters, upstream: Any) -> IngressSink | None:
            if self.closed or not params.codecs:
                return None
            up: Upstream = upstream
            kind = params.codecs[0].kind
            producer = Producer(
                f"{self.router_id}/{source}/origin{connection}/{kind}",
                source,
                params.codecs,
                params.extensions,
                up,
                clock,
                params.rtx_ssrcs,
            )
            slot = _Slot(source, producer, self._added)
            self._slots.append(slot)
            return slot

        return on_receive

    def _added(self, slot: _Slot) -> None:
        if self.closed or slot not in self._slots:
            return
        slot.added = True
        self._add_producer(slot.producer)
        logger.info(
            "lesson %s: producer %s from the origin (%s)",
            self.router_id,
            slot.producer.id,
            slot.producer.codec.name,
        )
        self._watch()

    def _watch(self) -> None:
        """What the origin sends now, and the state that follows from it."""
        now = time.monotonic()
        live = tuple(
            sorted({s.source for s in self._slots if s.added and now - s.last_arrival < QUIET_S})
        )
        if live != self._live:
            self._live = live
            try:
                self._on_sources()
            except Exception:
                logger.exception("lesson %s: the origin's sources", self.router_id)
        if "camera" in live:
            self._last_logged = None
            self._set(PullStatus(PullState.LIVE))
        elif not live:
            self._set(
                PullStatus(
                    PullState.LOST,
                    "connected to the origin, whose lesson sends nothing now "
                    "(its teacher is not publishing)",
                    "origin_quiet",
                )
            )

    # HTTP, bounded in size and time

    async def _post(self, offer: str) -> tuple[str, str | None]:
        """POST the offer to the origin's WHEP endpoint: (the answer, the session's URL)."""
        url = f"{self._endpoint}?{urlencode({'name': self._name, 'client': self._client})}"
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(url, data=offer.encode(), headers=headers, allow_redirects=False) as r,
            ):
                body = await _read_bounded(r)
                if r.status != 201:
                    raise _refusal(r.status, body)
                if r.content_type != "application/sdp" or not body.startswith(b"v=0"):
                    raise RelayError(
                        "not_whep", "the origin's answer is not an SDP answer: not a WHEP endpoint"
                    )
                location = r.headers.get("Location")
                session = str(r.url.join(URL(location))) if location else None
                return body.decode("utf-8", "replace"), session
        except RelayError:
            raise
        except TimeoutError:
            raise RelayError(
                "timeout", f"the origin {self.origin} did not answer within {self._timeout_s:g} s"
            ) from None
        except aiohttp.ClientConnectionError:
            raise RelayError("unreachable", f"cannot reach the origin {self.origin}") from None
        except aiohttp.ClientError as exc:
            raise RelayError(
                "unreachable",
                f"the origin {self.origin} cannot be talked to ({type(exc).__name__})",
            ) from None

    async def _delete(self, location: str) -> None:
        """Leave the origin's lesson at once (it would see the session lapse otherwise)."""
        timeout = aiohttp.ClientTimeout(total=DELETE_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.delete(
                    location,
                    headers={"Authorization": f"Bearer {self._token}"},
                    allow_redirects=False,
                ) as r,
            ):
                await r.content.read(1024)
        except (aiohttp.ClientError, TimeoutError):
            pass  # the origin is gone, or will close the session when its consent lapses

    # state and lifetime

    def _set(self, status: PullStatus) -> None:
        changed = status != self.status
        self.status = status
        if changed and not self.closed:
            try:
                self._on_state(status)
            except Exception:
                logger.exception("lesson %s: origin state", self.router_id)

    def _drop_producers(self, give_back: bool) -> None:
        slots, self._slots = self._slots, []
        self._keyframe_requests_before += sum(s.producer.stats.keyframe_requests for s in slots)
        for slot in slots:
            if slot.added and give_back:
                self._remove_producer(slot.producer)
            elif not slot.added:
                slot.producer.close()
        if self._live:
            self._live = ()
            if not self.closed:
                self._on_sources()

    async def _stop(self) -> None:
        self.closed = True
        self.status = PullStatus(PullState.STOPPED)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:  # its end leaves the origin's lesson (bounded) and closes the connection
                await asyncio.wait_for(asyncio.shield(task), DELETE_TIMEOUT_S + 1)
            except (asyncio.CancelledError, TimeoutError):
                pass
            except Exception:
                logger.exception("lesson %s: closing the pull", self.router_id)

    async def close(self) -> None:
        """Stop pulling: the producers go back to the router (its consumers keep their place)."""
        if self.closed:
            return
        slots = list(self._slots)
        await self._stop()
        for slot in slots:
            if slot.added:
                self._remove_producer(slot.producer)
        self._released(self)

    async def router_closed(self) -> None:
        """The router closed (its producers are already retired): leave the origin."""
        await self._stop()


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        raise RelayError("not_whep", f"the origin's answer is larger than {MAX_ANSWER_BYTES} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise RelayError(
                "not_whep", f"the origin's answer is larger than {MAX_ANSWER_BYTES} bytes"
            )
    return bytes(body)


def _refusal(status: int, body: bytes) -> RelayError:
    """The origin's refusal in words: its own error code and message where it gave them (a
    syncclass server does), else what its status says."""
    code, message = _REFUSALS.get(status, ("refused", f"the origin answered {status}"))
    try:
        said = json.loads(body)
    except ValueError:
        said = None
    if isinstance(said, dict) and isinstance(said.get("error"), str):
        told = str(said.get("message", ""))[:200]
        if status == 404 and said["error"] == "no_such_lesson":
            code = "no_such_lesson"
        elif status in (401, 403, 409, 410):
            code = said["error"][:40]
        if told:
            message = f"{message}: {told}"
    elif status in (301, 302, 303, 307, 308):
        code, message = "redirected", "the origin redirects this request elsewhere (not followed)"
    return RelayError(code, f"{message} ({status})")
