"""The retransmission cache of one producer, shared by all of its consumers."""

from __future__ import annotations

from .rtp_packet import RtpPacket

DEFAULT_CAPACITY = 1024  # ~1 s of 8 Mbit/s video; NACKs older than that are useless anyway


class PacketCache:
    """A ring of the latest packets, indexed by ingress sequence number."""

    __slots__ = ("_mask", "_slots")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._mask = capacity - 1
        self._slots: list[RtpPacket | None] = [None] * capacity

    def put(self, packet: RtpPacket) -> None:
        self._slots[packet.sequence_number & self._mask] = packet

    def get(self, sequence_number: int) -> RtpPacket | None:
        packet = self._slots[sequence_number & self._mask]
        if packet is not None and packet.sequence_number == sequence_number:
            return packet
        return None

    def clear(self) -> None:
        self._slots = [None] * len(self._slots)
