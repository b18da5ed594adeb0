"""ICE consent freshness (RFC 7675) that also counts authenticated media from the peer as its
consent, and closes the connection of a peer unheard of for the configured time.

Hooks: aioice's ``Connection.query_consent`` (replaced; ``connect`` starts it), and aiortc's
``RTCDtlsTransport._setup_srtp`` (wrapped, to wrap the inbound SRTP session ``_rx_srtp``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable

import aioice
import pylibsrtp
from aioice import ice as aioice_ice
from aioice import stun as aioice_stun
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport

from ..drops import DROPPED

logger = logging.getLogger(__name__)


def keep_consent(connection: aioice.Connection, timeout_s: float) -> None:
    """Make ``connection`` check consent as ``_query_consent`` does, from now on."""
    connection._syncclass_last_data = asyncio.get_running_loop().time()  # type: ignore[attr-defined]
    connection.query_consent = functools.partial(  # type: ignore[method-assign]
        _query_consent, connection, timeout_s
    )


async def _query_consent(connection: aioice.Connection, expiry: float) -> None:
    """RFC 7675 consent freshness as aioice does it, except that media arriving from the peer
    also counts as its consent: FFmpeg's WHIP muxer never answers consent checks, yet
    publishes for hours. Consent lapses after ``expiry`` seconds without a word from the peer
    (25 s by default), measured in time rather than counted in failed checks, so a peer that
    vanishes is closed within 30 s, not 27 to 39."""
    assert connection.remote_password is not None
    loop = asyncio.get_running_loop()
    interval = aioice_ice.CONSENT_INTERVAL
    answered = loop.time()
    while True:
        heard = max(answered, connection._syncclass_last_data)  # type: ignore[attr-defined]
        # wake up in time to check once more right when consent would lapse
        pause = interval * (0.8 + 0.4 * random.random())
        await asyncio.sleep(max(0.0, min(pause, heard + expiry - loop.time())))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=connection.remote_password.encode("utf8"),
                    retransmissions=0,
                )
                answered = loop.time()
            except aioice_stun.TransactionError:
                pass
        last_data: float = connection._syncclass_last_data  # type: ignore[attr-defined]
        if loop.time() - max(answered, last_data) >= expiry:
            logger.info("ICE consent expired: closing the connection")
            connection._query_consent_task = None
            await connection.close()
            return


class _AuthenticatedMedia:
    """A peer's inbound SRTP session: what fails authentication is counted, and only what
    passes counts as the peer's consent (RFC 7675): anyone can send a packet that seems to
    come from the peer's address, only the peer can send one that authenticates."""

    __slots__ = ("_session", "_connection", "_clock")

    def __init__(
        self, session: pylibsrtp.Session, connection: aioice.Connection, clock: Callable[[], float]
    ) -> None:
        self._session = session
        self._connection = connection
        self._clock = clock

    def unprotect(self, data: bytes) -> bytes:
        return self._accept(self._session.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._accept(self._session.unprotect_rtcp, data)

    def _accept(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes:
        try:
            plain = unprotect(data)
        except pylibsrtp.Error:
            DROPPED.add("unauthenticated")
            raise
        except ValueError as exc:  # larger than the session's buffer; aiortc only expects Error
            DROPPED.add("oversized")
            raise pylibsrtp.Error(str(exc)) from None
        self._connection._syncclass_last_data = self._clock()  # type: ignore[attr-defined]
        return plain


def authenticate_media(dtls: RTCDtlsTransport, connection: aioice.Connection) -> None:
    """Wrap the transport's inbound SRTP session in _AuthenticatedMedia once DTLS made it."""
    if getattr(dtls, "_syncclass_authenticated", False):
        return
    setup_srtp = dtls._setup_srtp
    clock = asyncio.get_running_loop().time

    def setup() -> None:
        setup_srtp()
        if dtls._rx_srtp is not None:
            # aiortc only calls unprotect and unprotect_rtcp on it
            media = _AuthenticatedMedia(dtls._rx_srtp, connection, clock)
            dtls._rx_srtp = media  # type: ignore[assignment]

    dtls._setup_srtp = setup  # type: ignore[method-assign]
    dtls._syncclass_authenticated = True  # type: ignore[attr-defined]


def unheard_s(pc: RTCPeerConnection) -> float:
    """Seconds since ``pc``'s peer last sent it authenticated media or RTCP (its transports
    configured by ice.configure_ice); infinity before it has."""
    heard = [
        getattr(t.receiver.transport.transport._connection, "_syncclass_last_data", None)
        for t in pc.getTransceivers()
    ]
    known = [h for h in heard if h is not None]
    if not known:
        return float("inf")
    return asyncio.get_running_loop().time() - max(known)
