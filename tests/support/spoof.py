"""UDP datagrams with a chosen source address, as anyone on a school LAN can send them.

A raw socket (the tests run as root in their own network namespace) writes the IPv4 and UDP
headers itself, so a datagram can claim to come from a peer's own ICE address and port: it
then passes any check by address and reaches the server's DTLS and SRTP layers.
"""

from __future__ import annotations

import socket
import struct

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def udp_packet(source: tuple[str, int], target: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 packet carrying ``payload`` in UDP; the kernel fills the IP checksum and id."""
    udp_length = _UDP.size + len(payload)
    ip = _IPV4.pack(
        0x45,  # version 4, header of 5 words
        0,
        _IPV4.size + udp_length,
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(target[0]),
    )
    # checksum 0: none (allowed for UDP over IPv4)
    return ip + _UDP.pack(source[1], target[1], udp_length, 0) + payload


class Spoofer:
    """Sends UDP datagrams from any address; close it when done."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = 0

    def send(self, source: tuple[str, int], target: tuple[str, int], payload: bytes) -> None:
        try:
            self._socket.sendto(udp_packet(source, target, payload), (target[0], 0))
        except BlockingIOError:  # the loopback queue is full: the datagram is lost
            return
        self.sent += 1

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Spoofer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
