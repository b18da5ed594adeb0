"""Transport-wide congestion control feedback to a publisher: when each of its packets arrived.

A browser that publishes numbers every packet of its transport (the transport-wide sequence
number header extension) and estimates its own uplink from what the receiver says about their
arrival (send-side bandwidth estimation, GCC). Without this feedback Chrome falls back to a
slow loss-based ramp: half a minute of a blurry teacher at every start.

The format is the RTCP transport feedback of draft-holmer-rmcat-transport-wide-cc-extensions-01
(RTPFB, FMT=15), the one Chrome sends and reads::

    base sequence number | packet status count | reference time (24 bits, 64 ms) | fb count
    packet chunks (16 bits each): run length  0|SS|run(13)
                                  vector      1|0|14 one-bit symbols, or 1|1|7 two-bit symbols
    receive deltas, 250 µs ticks: one byte (0..255, "small"), or two bytes signed ("large")

Arrivals are recorded per packet (``ArrivalLog.record``: one lookup and one append) and the
feedback is built from them on a timer, once per transport, never per packet.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from .rtp_packet import RtpPacket

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# How often feedback goes back: Chrome's own receivers send every 50 to 250 ms.
FEEDBACK_INTERVAL_S = 0.05

RTCP_RTPFB = 205
FMT_TRANSPORT_FEEDBACK = 15

NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
TICKS_PER_S = 4000  # receive deltas count 250 µs ticks
REFERENCES_PER_S = 15.625  # the reference time counts 64 ms
TICKS_PER_REFERENCE = 256
MAX_RUN = 0x1FFF  # the longest run-length chunk
# One feedback packet stays well inside a datagram; a larger report is split.
MAX_FEEDBACK_BYTES = 1200
# How far back (in packets) a late arrival is still reported: it moves the next report's start
# back to it, and the packets since are reported again with it.
HISTORY = 512
# At most this many arrivals wait for the next report; beyond, the oldest are dropped (the
# loop that sends reports has been stalled, and a report that late is of no use).
MAX_PENDING = 20_000

_HEADER = struct.Struct("!BBHIIHHI")  # common header, sender, media, base, count, ref|fb count
_CHUNK = struct.Struct("!H")
_LARGE = struct.Struct("!h")


class ArrivalLog:
    """The (transport-wide sequence number, arrival time) of each packet since the last report.

    ``record`` is on the ingress path of every packet of a publisher's transport."""

    __slots__ = ("extension_id", "pending", "media_ssrc", "_clock")

    def __init__(self, extension_id: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.extension_id = extension_id
        self.pending: list[tuple[int, float]] = []
        self.media_ssrc = 0
        self._clock = clock

    def record(self, packet: RtpPacket) -> None:
        extension_id = self.extension_id
        for pos, ext_id in packet.extensions:
            if ext_id == extension_id:
                data = packet.data
                if packet.two_byte_extensions:
                    pos += 1
                if pos + 2 < packet.payload_offset:
                    self.pending.append(((data[pos + 1] << 8) | data[pos + 2], self._clock()))
                    self.media_ssrc = packet.ssrc
                return


class FeedbackBuilder:
    """Turns the arrivals of one transport into feedback packets, keeping what was reported.

    Sequence numbers are unwrapped against the highest seen (they wrap at 2^16); a packet never
    seen between two received ones is reported as not received; a packet that arrives after
    its range was reported (reordered) is reported again with the packets around it, if it is
    within ``HISTORY`` packets of the newest."""

    def __init__(self) -> None:
        self._arrivals: dict[int, float] = {}  # unwrapped sequence number -> arrival (s)
        self._highest: int | None = None  # unwrapped
        self._next: int | None = None  # the first sequence number not yet reported
        self._feedback_count = 0

    def build(self, log: ArrivalLog, sender_ssrc: int) -> list[bytes]:
        """The feedback packets for what ``log`` recorded since the last call (maybe none)."""
        pending, log.pending = log.pending, []
        if not pending:
            return []
        if len(pending) > MAX_PENDING:
            pending = pending[-MAX_PENDING:]
        arrivals = self._arrivals
        highest = self._highest
        start = self._next
        for seq, arrival in pending:
            if highest is None:
                highest = unwrapped = seq
            else:
                delta = (seq - highest) & 0xFFFF
                if delta < 0x8000:
                    unwrapped = highest = highest + delta
                else:
                    unwrapped = highest + delta - 0x10000
                    if unwrapped <= highest - HISTORY:
                        continue  # too old to report again
            if unwrapped in arrivals:
                continue  # a duplicate: the first arrival counts
            arrivals[unwrapped] = arrival
            if start is None or unwrapped < start:
                start = unwrapped
        self._highest = highest
        if start is None or highest is None or start > highest:
            return []
        self._next = highest + 1
        packets = self._packets(start, highest, sender_ssrc, log.media_ssrc)
        if len(arrivals) > 2 * HISTORY:
            floor = highest - HISTORY
            self._arrivals = {s: t for s, t in arrivals.items() if s > floor}
        return packets

    def _packets(self, start: int, end: int, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        arrivals = self._arrivals
        packets = []
        seq = start
        limit = MAX_FEEDBACK_BYTES - 24  # header, and the last chunk and padding
        while seq <= end:
            first = seq
            symbols: list[int] = []
            deltas = bytearray()
            reference: int | None = None
            last_tick = 0
            while seq <= end:
                arrival = arrivals.get(seq)
                if arrival is None:
                    symbols.append(NOT_RECEIVED)
                    seq += 1
                    continue
                tick = int(arrival * TICKS_PER_S + 0.5)
                if reference is None:
                    reference = int(arrival * REFERENCES_PER_S)
                    last_tick = reference * TICKS_PER_REFERENCE
                delta = tick - last_tick
                # chunks take at most 2 bytes per 7 symbols
                if len(deltas) + len(symbols) // 3 > limit or len(symbols) >= 0xFFFF:
                    break
                if 0 <= delta <= 0xFF:
                    symbols.append(SMALL_DELTA)
                    deltas.append(delta)
                elif -0x8000 <= delta <= 0x7FFF:
                    symbols.append(LARGE_DELTA)
                    deltas += _LARGE.pack(delta)
                else:
                    break  # too far from the previous one: a new report starts here
                last_tick = tick
                seq += 1
            if reference is None:
                break  # only lost packets are left: reported with the next arrival
            packets.append(
                self._serialize(first, symbols, reference, deltas, sender_ssrc, media_ssrc)
            )
        return packets

    def _serialize(
        self,
        base: int,
        symbols: list[int],
        reference: int,
        deltas: bytes | bytearray,
        sender_ssrc: int,
        media_ssrc: int,
    ) -> bytes:
        chunks = b"".join(_CHUNK.pack(chunk) for chunk in encode_chunks(symbols))
        body = chunks + bytes(deltas)
        padding = -len(body) % 4
        if padding:
            body += bytes(padding - 1) + bytes((padding,))
        words = (_HEADER.size + len(body)) // 4 - 1
        first = 0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_FEEDBACK
        count = self._feedback_count
        self._feedback_count = (count + 1) & 0xFF
        header = _HEADER.pack(
            first,
            RTCP_RTPFB,
            words,
            sender_ssrc,
            media_ssrc,
            base & 0xFFFF,
            len(symbols),
            ((reference & 0xFFFFFF) << 8) | count,
        )
        return header + body


def encode_chunks(symbols: list[int]) -> list[int]:
    """Packet status chunks for ``symbols``: a run-length chunk for a run of 14 or more (or
    one that ends the list), else a vector of 14 one-bit symbols, or of 7 two-bit ones when a
    large delta is among them. The last vector may hold fewer symbols than it could."""
    chunks = []
    count = len(symbols)
    i = 0
    while i < count:
        symbol = symbols[i]
        run = 1
        while i + run < count and symbols[i + run] == symbol and run < MAX_RUN:
            run += 1
        if run >= 14 or i + run == count:
            chunks.append((symbol << 13) | run)
            i += run
            continue
        window = symbols[i : i + 14]
        if LARGE_DELTA not in window:
            chunk = 0x8000
            for k, s in enumerate(window):
                chunk |= s << (13 - k)
            i += 14
        else:
            chunk = 0xC000
            for k, s in enumerate(symbols[i : i + 7]):
                chunk |= s << (12 - 2 * k)
            i += 7
        chunks.append(chunk)
    return chunks
