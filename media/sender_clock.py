"""The wall clock of one publisher as seen from this server, shared by its producers.

Lip sync in the classrooms rests on the sender reports each consumer sends: they must map
audio and video RTP timestamps to one common clock. The publisher's own reports give that
mapping on *its* clock; this class estimates the offset to ours once for all tracks of the
publisher, so audio and video keep the relation the publisher gave them. Sender reports
carry NTP timestamps; the conversions to and from Unix time are here too.
"""

from __future__ import annotations

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)

# Network delay only ever makes a report look later, so the smallest observed offset is the
# best estimate; it is refreshed now and then so clock drift over a long lesson is followed.
_REFRESH_S = 30.0


class SenderClock:
    __slots__ = ("_offset", "_since")

    def __init__(self) -> None:
        self._offset: float | None = None
        self._since = 0.0

    def observe(self, sender_time: float, arrival: float) -> None:
        """A sender report stamped ``sender_time`` (publisher's clock) arrived at ``arrival``."""
        offset = arrival - sender_time
        if self._offset is None or offset < self._offset or arrival - self._since > _REFRESH_S:
            self._offset = offset
            self._since = arrival

    def to_local(self, sender_time: float) -> float | None:
        if self._offset is None:
            return None
        return sender_time + self._offset


def ntp_to_unix(ntp: int) -> float:
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def unix_to_ntp(seconds: float) -> int:
    return int((seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF
