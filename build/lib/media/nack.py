"""Which packets of an inbound stream are missing, so they can be asked for again (NACK)."""

from __future__ import annotations

from .rtp_packet import seq_newer

MAX_MISSING = 256  # older gaps are given up: a retransmission would come too late anyway


class LossTracker:
    __slots__ = ("highest", "missing")

    def __init__(self) -> None:
        self.highest: int | None = None
        self.missing: set[int] = set()

    def add(self, sequence_number: int) -> list[int]:
        """Note a received packet; return the sequence numbers newly found missing."""
        highest = self.highest
        if highest is None:
            self.highest = sequence_number
            return []
        if not seq_newer(sequence_number, highest):
            self.missing.discard(sequence_number)
            return []
        gap = (sequence_number - highest - 1) & 0xFFFF
        self.highest = sequence_number
        if gap == 0:
            return []
        if gap > MAX_MISSING:  # a jump (e.g. a restarted sender), not a loss
            self.missing.clear()
            return []
        lost = [(highest + i) & 0xFFFF for i in range(1, gap + 1)]
        self.missing.update(lost)
        if len(self.missing) > MAX_MISSING:
            oldest = (sequence_number - MAX_MISSING) & 0xFFFF
            self.missing = {s for s in self.missing if seq_newer(s, oldest)}
        return lost
