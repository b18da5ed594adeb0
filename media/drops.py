"""Counts of inbound datagrams and packets the SFU threw away, by reason, for the process.

A media port is reachable by anyone who can send UDP to the server. What is not part of a
peer's session is dropped where it is recognised; these counters let an operator see that it
happens (``/api/status``) without a log line per packet.
"""

from __future__ import annotations

REASONS = (
    "not_from_peer",  # DTLS or SRTP from an address that is not the peer's ICE pair
    "malformed",  # empty, not STUN/DTLS/RTP by its first byte, or unparsable
    "oversized",  # larger than any SRTP packet can be
    "unauthenticated",  # SRTP/SRTCP that fails authentication or replay protection
    "stun_rejected",  # STUN requests refused (wrong credentials, not a binding request)
    "unrouted",  # authenticated RTP that belongs to none of the peer's streams
    "malformed_rtcp",  # authenticated RTCP that cannot be read (e.g. a REMB cut short)
    "overflow",  # more datagrams queued for one peer than it can take
    "padding",  # padding-only retransmission packets: a publisher's bandwidth probes (normal)
)


MAX_SRTP = 1500  # pylibsrtp's buffer: no larger SRTP packet can be unprotected


def unfit(data: bytes) -> str | None:
    """The reason to drop a datagram that is not STUN on sight (RFC 7983, by its first byte,
    and its size), or None for DTLS or SRTP that may be the peer's."""
    first = data[0] if data else -1
    if 128 <= first <= 191:
        return "oversized" if len(data) > MAX_SRTP else None
    return None if 20 <= first <= 63 else "malformed"


class DropCounters:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


DROPPED = DropCounters()
