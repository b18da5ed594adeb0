"""The send half of the packet path: a consumer's packets rewritten, SRTP-protected and handed
to the socket on the selected ICE pair, synchronously and without copies beyond the first.

The packet path, on the shared port:
SharedPort → datagram_guard → rtp_reader → Producer.on_rtp → Consumer.forward → DtlsLink → SendBatch

Hooks: aiortc's ``RTCDtlsTransport._state``, ``_tx_srtp`` and ``_set_state`` (wrapped, to see
the state change), pylibsrtp's ``Session._srtp`` (protected in place with ``srtp_protect``),
aioice's ``Connection._nominated`` (replaced by ``_Nominations``, to see the pair change) and
the selected pair's ``protocol`` and ``remote_addr``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from ..paced_copies import PacedCopies
from ..rtp_packet import RtpPacket, rewrite_into, send_stamp
from ..udp_mux import SendBatch, sockaddr
from .datagram_guard import PLAIN_UDP, SharedStunProtocol
from .ice_tcp import TcpStunProtocol

logger = logging.getLogger(__name__)

_MAX_PLAINTEXT = 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN  # pylibsrtp's session buffer
# Paced media (video to a classroom on a narrow link, see media.send_gate): sent in bursts of at
# most PACE_BURST octets, a tick apart. A keyframe comes from the teacher in a burst far above
# what the classroom's link carries; forwarded as it came, it overflows the link's queue and
# takes the sound with it. A datagram that waited PACE_MAX_WAIT_S goes at once: the pace was
# set too low, and a later picture is better than a lost one.
PACE_BURST = 2400
PACE_TICK_S = 0.005
PACE_MAX_WAIT_S = 0.5
# the protocols whose ``transport.sendto`` reaches the peer: a UDP socket or a TCP stream
_DIRECT = (*PLAIN_UDP, TcpStunProtocol)


class _Socket(Protocol):
    """What ``forward`` uses of a UDP transport (asyncio's or a shared port's view of one)."""

    def sendto(self, data: Any, addr: Any = None) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class DtlsLink:
    """Encrypt and send on the selected ICE pair without going through aiortc's coroutines.

    aiortc's ``_send_rtp`` costs three awaits per packet; this is the same work, synchronous.
    ``forward`` is the SFU's fast path: the packet is copied once, its header rewritten and
    protected in place, and handed to the kernel from there. On a shared port the place is a
    slot of the port's send batch, and the whole fan-out leaves in one system call; on a port
    of its own it is the link's own buffer, sent at once.

    What ``forward`` needs of the transport (that it is connected, its SRTP session, the ICE
    pair and how to reach it) is looked up when it changes (``_LinkWatch``), not per packet:
    in a fan-out each classroom's transport would be read from memory that is no longer in
    the CPU's caches.
    """

    __slots__ = (
        "_dtls",
        "_connection",
        "_length",
        "_session",
        "_srtp",
        "_cdata",
        "_view",
        "_batch",
        "_name",
        "_udp",
        "_remote",
        "reliable",
        "stamp_send_time",
        "repeat",
        "repeat_pace_bps",
        "_copies",
        "pace_bps",
        "_drain_bps",
        "_paced",
        "_pace_credit",
        "_pace_at",
        "_pace_timer",
        "report_now",
        "__weakref__",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        # the peer negotiated abs-send-time: each packet's is re-stamped as it leaves, so that
        # the peer's bandwidth estimate measures its own link, not the publisher's
        self.stamp_send_time = False
        # each datagram sent twice (sound on a lossy link: the peer's replay check drops the
        # copy when the original arrived)
        self.repeat = False
        # ... at once (0), or paced at this rate: the copies of a keyframe sent at once would
        # double its burst, which a narrow link's queue drops (both copies of its tail)
        self.repeat_pace_bps = 0.0
        self._copies = PacedCopies(self._send, self._repeating)
        # 0: each datagram leaves as it is forwarded; else at most this rate (``pace``)
        self.pace_bps = 0.0
        self._drain_bps = 0.0  # the latest pace: what still waits goes at it
        # (when forwarded, the datagram before SRTP, where its abs-send-time goes or -1)
        self._paced: deque[tuple[float, bytearray, int]] = deque()
        self._pace_credit = 0.0
        self._pace_at = 0.0
        self._pace_timer: asyncio.TimerHandle | None = None
        # send this stream's sender report at once (set by its RTCP loop): a probe's end is
        # timed by the round trip of the report sent as it ends
        self.report_now: Callable[[], None] | None = None
        self._connection = dtls.transport._connection
        self._length = srtp_ffi.new("int *")
        self._new_buffer()
        self._update()
        _LinkWatch.of(dtls).links.add(self)

    def _new_buffer(self) -> None:
        self._cdata = srtp_ffi.new("char[]", _MAX_PLAINTEXT + pylibsrtp.SRTP_MAX_TRAILER_LEN)
        self._view = memoryview(srtp_ffi.buffer(self._cdata))

    def _update(self) -> None:
        """Look up again what ``forward`` needs: ``_srtp`` is None until the transport is
        connected on a selected pair. Then the pair is reached through a shared port's batch
        (``_batch``, ``_name``), a socket of its own (``_udp``, ``_remote``), or, when both
        are None, a TURN allocation."""
        self._session: pylibsrtp.Session | None = None  # keeps ``_srtp`` alive
        self._srtp: Any = None
        self._batch: SendBatch | None = None
        self._name: Any = None
        self._udp: _Socket | None = None
        # on a TCP stream, which retransmits by itself: resending on a NACK only adds to
        # the backlog that made the packet late
        self.reliable = False
        dtls = self._dtls
        pair = self._connection._nominated.get(1)
        if dtls._state is not DtlsState.CONNECTED or dtls._tx_srtp is None or pair is None:
            return
        protocol = pair.protocol
        self._remote: tuple[str, int] = pair.remote_addr
        if type(protocol) is SharedStunProtocol:
            self._batch = protocol.port.batch
            if self._batch is not None:
                self._name = sockaddr(pair.remote_addr)
            else:  # no sendmmsg on this system
                self._udp = cast(_Socket, protocol.port.transport)
        elif type(protocol) in _DIRECT:
            self._udp = cast(_Socket, protocol.transport)
            self.reliable = type(protocol) is TcpStunProtocol
        self._session = dtls._tx_srtp
        self._srtp = self._session._srtp[0]

    def forward(
        self,
        packet: RtpPacket,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        extension_ids: bytes | None,
    ) -> None:
        srtp = self._srtp
        if srtp is None or len(packet.data) > _MAX_PLAINTEXT:
            return
        if self.pace_bps or self._paced:
            self._pace_later(
                packet, payload_type, sequence_number, timestamp, ssrc, extension_ids
            )
            return
        length = self._length
        batch = self._batch
        if batch is not None:
            slot = batch.slot()
            length[0] = rewrite_into(
                batch.views[slot],
                packet,
                payload_type,
                sequence_number,
                timestamp,
                ssrc,
                extension_ids,
            )
            at = packet.send_time_at
            if at and self.stamp_send_time:
                batch.views[slot][at : at + 3] = packet.send_stamp
            if srtp_lib.srtp_protect(srtp, batch.buffers[slot], length):
                logger.debug("SRTP protect failed for seq %d", sequence_number)
                return
            batch.commit(slot, length[0], self._name)
            if self.repeat and self.repeat_pace_bps:
                self._copies.add(batch.views[slot][: length[0]].tobytes(), self.repeat_pace_bps)
            elif self.repeat:
                size = length[0]
                again = batch.slot()  # after a flush the slot's bytes are still there
                batch.views[again][:size] = batch.views[slot][:size]
                batch.commit(again, size, self._name)
            return
        view = self._view
        length[0] = rewrite_into(
            view, packet, payload_type, sequence_number, timestamp, ssrc, extension_ids
        )
        at = packet.send_time_at
        if at and self.stamp_send_time:
            view[at : at + 3] = packet.send_stamp
        if srtp_lib.srtp_protect(srtp, self._cdata, length):
            logger.debug("SRTP protect failed for seq %d", sequence_number)
            return
        udp = self._udp
        if udp is None:  # a TURN allocation wraps the datagram itself
            self._send(view[: length[0]].tobytes())
            if self.repeat and self.repeat_pace_bps:
                self._copies.add(view[: length[0]].tobytes(), self.repeat_pace_bps)
            elif self.repeat:
                self._send(view[: length[0]].tobytes())
            return
        udp.sendto(view[: length[0]], self._remote)
        if self.repeat and self.repeat_pace_bps:
            self._copies.add(view[: length[0]].tobytes(), self.repeat_pace_bps)
        elif self.repeat:
            udp.sendto(view[: length[0]], self._remote)
        if udp.get_write_buffer_size():
            # the socket was full and the datagram waits in the transport's queue, still
            # pointing into this buffer: the next packet gets a fresh one
            self._new_buffer()

    def pace(self, bps: float) -> None:
        """Send at most ``bps`` from now on (0: each datagram as it is forwarded, once what
        waits has gone, at the pace it was queued at: in order, and not in one burst into a
        link that was just found full)."""
        self.pace_bps = bps
        if bps:
            self._drain_bps = bps

    def _pace_later(
        self,
        packet: RtpPacket,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        extension_ids: bytes | None,
    ) -> None:
        """Queue the rewritten datagram; it is protected, and stamped with its abs-send-time,
        as it leaves (the classroom's estimator must see the link's delay, not the pace's)."""
        data = bytearray(len(packet.data))  # the rewritten datagram is as long
        rewrite_into(data, packet, payload_type, sequence_number, timestamp, ssrc, extension_ids)
        at = packet.send_time_at if self.stamp_send_time else 0
        now = time.monotonic()
        self._paced.append((now, data, at or -1))
        if self._pace_timer is None:
            self._pace_credit = min(
                self._pace_credit + (self.pace_bps or self._drain_bps) * (now - self._pace_at) / 8,
                PACE_BURST,
            )
            self._pace_at = now
            self._send_paced()

    def _send_paced(self) -> None:
        """Send what the pace allows now; again a tick later while any waits."""
        self._pace_timer = None
        now = time.monotonic()
        rate = self.pace_bps or self._drain_bps
        credit = min(self._pace_credit + rate * (now - self._pace_at) / 8, PACE_BURST)
        self._pace_at = now
        paced = self._paced
        session = self._session
        if session is None:  # no longer connected
            paced.clear()
            return
        stamp = b""
        while paced and (credit >= len(paced[0][1]) or now - paced[0][0] > PACE_MAX_WAIT_S):
            data, at = paced.popleft()[1:]
            credit -= len(data)
            if at >= 0:
                stamp = stamp or send_stamp(time.time())
                data[at : at + 3] = stamp
            try:
                protected = session.protect(bytes(data))
            except pylibsrtp.Error as exc:
                logger.debug("SRTP protect failed: %s", exc)
                continue
            self._send(protected)
            if self.repeat and self.repeat_pace_bps:
                self._copies.add(protected, self.repeat_pace_bps)
            elif self.repeat:
                self._send(protected)
        self._pace_credit = max(credit, 0.0)
        if paced:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._pace_timer = loop.call_later(PACE_TICK_S, self._send_paced)

    def _repeating(self) -> bool:
        return self.repeat

    def _send(self, data: bytes) -> None:
        pair = self._connection._nominated.get(1)
        if pair is None:
            return
        protocol = pair.protocol
        if type(protocol) in _DIRECT:
            protocol.transport.sendto(data, pair.remote_addr)
        else:  # a TURN allocation wraps the datagram itself
            asyncio.ensure_future(protocol.send_data(data, pair.remote_addr))

    def send_rtp(self, packet: bytes | bytearray) -> None:
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            return
        try:
            data = dtls._tx_srtp.protect(bytes(packet))
        except pylibsrtp.Error as exc:
            logger.debug("SRTP protect failed: %s", exc)
            return
        self._send(data)

    def send_rtcp(self, packet: bytes) -> None:
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            return
        try:
            data = dtls._tx_srtp.protect_rtcp(packet)
        except pylibsrtp.Error as exc:
            logger.debug("SRTCP protect failed: %s", exc)
            return
        self._send(data)


class _Nominations(dict[int, Any]):
    """aioice's nominated pairs, which tell their watcher when they change."""

    def __init__(self, pairs: dict[int, Any], changed: Callable[[], None]) -> None:
        super().__init__(pairs)
        self._changed = changed

    def __setitem__(self, component: int, pair: Any) -> None:
        super().__setitem__(component, pair)
        self._changed()

    def __delitem__(self, component: int) -> None:
        super().__delitem__(component)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()


class _LinkWatch:
    """Updates the DtlsLinks of one transport when its state or its ICE pair changes: aiortc
    sets its SRTP session before the state becomes CONNECTED, aioice sets ``_nominated``."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.links: weakref.WeakSet[DtlsLink] = weakref.WeakSet()
        set_state = dtls._set_state

        def state_changed(state: DtlsState) -> None:
            set_state(state)
            self.update()

        dtls._set_state = state_changed  # type: ignore[method-assign]
        connection = dtls.transport._connection
        connection._nominated = _Nominations(connection._nominated, self.update)

    @staticmethod
    def of(dtls: RTCDtlsTransport) -> _LinkWatch:
        watch: _LinkWatch | None = getattr(dtls, "_syncclass_link_watch", None)
        if watch is None:
            watch = dtls._syncclass_link_watch = _LinkWatch(dtls)  # type: ignore[attr-defined]
        return watch

    def update(self) -> None:
        for link in list(self.links):
            link._update()
