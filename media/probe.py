"""A diagnostic peer for the network check page: one data channel over the same ICE, ports and
screens as a lesson's peers, that answers pings and moves a fixed amount of data each way, so
a school's IT person sees which paths reach the media and what they carry.

On the channel ``probe`` (text messages):
- ``ping:<anything>`` is sent back as it is (round trip);
- ``down`` makes the probe send ``DOWN_BYTES`` in binary messages, then ``down:<bytes>``;
- binary messages are counted; ``up`` is answered with ``up:<bytes received>``.

Everything a probe does is bounded: it closes ``LIFETIME_S`` after its offer whatever
happens, sends at most ``MAX_DOWNLOADS`` downloads, and ignores what is not in the list above.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from .aiortc_adapter.ice import configure_ice
from .network import Network
from .offer import OfferError

logger = logging.getLogger(__name__)

LIFETIME_S = 30.0
DOWN_BYTES = 1 << 20
MAX_DOWNLOADS = 3
_CHUNK = 16 << 10  # what every browser takes in one data channel message
_MAX_TEXT = 64


class Probe:
    """One check from one browser: its peer connection and the channel's counters."""

    def __init__(self, network: Network, closed: Callable[[Probe], None]) -> None:
        self._closed_callback = closed
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._network = network
        self.received = 0
        self._downloads = 0
        self.closed = False
        self._expiry: asyncio.TimerHandle | None = None
        self.pc.on("datachannel", self._channel)
        self.pc.on("connectionstatechange", self._state_changed)

    async def negotiate(self, offer: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:  # aiortc raises many types for SDP it cannot use
            raise OfferError(f"the SDP offer cannot be used: {exc}") from exc
        configure_ice(self.pc, self._network)
        self._expiry = asyncio.get_running_loop().call_later(
            LIFETIME_S, lambda: asyncio.ensure_future(self.close())
        )
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def _channel(self, channel: RTCDataChannel) -> None:
        if channel.label != "probe":
            channel.close()
            return

        @channel.on("message")
        def message(data: str | bytes) -> None:
            if isinstance(data, bytes):
                self.received += len(data)
            elif len(data) > _MAX_TEXT:
                return
            elif data.startswith("ping:"):
                channel.send(data)
            elif data == "down" and self._downloads < MAX_DOWNLOADS:
                self._downloads += 1
                chunk = bytes(_CHUNK)
                for _ in range(DOWN_BYTES // _CHUNK):
                    channel.send(chunk)
                channel.send(f"down:{DOWN_BYTES}")
            elif data == "up":
                channel.send(f"up:{self.received}")

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            asyncio.ensure_future(self.close())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        self._closed_callback(self)
        await self.pc.close()
