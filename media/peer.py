"""One WebRTC peer connection of a lesson: negotiation from an offer, and its lifetime.

A peer is made by its router (``Router.new_publisher`` / ``new_subscriber``), which hands it
closures for what it needs of the router, never the router itself. It closes in one of two
ways: ``close()`` is its own end (a DELETE, a failed connection, a replaced publisher), which
gives back its producers or consumers and tells the router through ``released``;
``router_closed()`` is the router closing it, which has already taken back everything: the
peer only shuts its connection and calls back nobody but its ``on_close`` listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from .aiortc_adapter.ice import configure_ice
from .aiortc_adapter.idle_estimator import drop_bitrate_estimators
from .network import Network
from .offer import OfferError

logger = logging.getLogger(__name__)


class NegotiationError(Exception):
    """The offer was understood but cannot be served; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Peer:
    """Owns one RTCPeerConnection; closing it closes its producers or consumers."""

    role = "peer"
    # peer connections shut since the process started: an RTCPeerConnection is a web of
    # reference cycles, freed only by a full garbage collection (see syncclass/cycles.py)
    shut_total = 0

    def __init__(
        self,
        peer_id: str,
        router_id: str,
        network: Network,
        label: str,
        released: Callable[[Peer], None],
    ) -> None:
        self.id = peer_id
        self.router_id = router_id  # the lesson, for logs
        self.label = label  # who this is, for logs: "camera", a classroom's name
        self.closed = False
        # max-bundle: every m-line on one transport, as WHIP/WHEP require. With aiortc's
        # "balanced" policy a second m-line of a kind (the stage's audio) keeps a transport of
        # its own that the BUNDLE answer then discards, and it never receives.
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._network = network
        self._released = released
        self._on_close: list[Callable[[Peer], None]] = []
        self._on_connected: list[Callable[[Peer], None]] = []
        self.connected = False  # ICE and DTLS have connected (at least once)
        self._close_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._connection_state_changed)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    def on_close(self, callback: Callable[[Peer], None]) -> None:
        self._on_close.append(callback)

    def on_connected(self, callback: Callable[[Peer], None]) -> None:
        """``callback`` once ICE and DTLS have connected (at once if they have)."""
        if self.connected:
            callback(self)
        else:
            self._on_connected.append(callback)

    async def negotiate(self, offer: str) -> str:
        """Apply the offer and return the answer, with every candidate in it."""
        raise NotImplementedError

    async def _apply_offer(self, offer: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:  # aiortc raises many types for SDP it cannot use
            if "codec" in str(exc).lower() or "parameters" in str(exc).lower():
                raise NegotiationError(
                    "no_usable_codec",
                    "no codec in the offer can be forwarded (supported: VP8, H264, opus)",
                ) from exc
            raise OfferError(f"the SDP offer cannot be used: {exc}") from exc
        drop_bitrate_estimators(self.pc)  # the transceivers are made by now
        configure_ice(self.pc, self._network)

    async def _answer(self) -> str:
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return self.pc.localDescription.sdp

    def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        logger.info("lesson %s %s %s %s: %s", self.router_id, self.role, self.id, self.label, state)
        if state == "connected" and not self.connected and not self.closed:
            self.connected = True
            callbacks, self._on_connected = self._on_connected, []
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    logger.exception("connected callback of peer %s failed", self.id)
        if state in ("failed", "closed") and not self.closed and self._close_task is None:
            self._close_task = asyncio.ensure_future(self.close())

    def _release(self) -> None:
        """Give producers/consumers back to the router (subclasses)."""

    def _forget(self) -> None:
        """Drop producers/consumers the router has already taken back (subclasses)."""

    async def close(self) -> None:
        """This peer ends by itself: give everything back and tell the router."""
        if self.closed:
            return
        self.closed = True
        self._release()
        self._released(self)
        await self._shut()

    async def router_closed(self) -> None:
        """The router is closing and has taken back this peer's producers and consumers."""
        if self.closed:
            return
        self.closed = True
        self._forget()
        await self._shut()

    async def _shut(self) -> None:
        await self.pc.close()
        Peer.shut_total += 1
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                logger.exception("close callback of peer %s failed", self.id)
