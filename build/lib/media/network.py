"""Which addresses and UDP ports the SFU's ICE candidates use, and what it announces."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkConfig:
    # Addresses to bind host candidates on; empty means every non-loopback local address.
    bind: tuple[str, ...] = ()
    # The public address put in candidates instead of the bound one (1:1 NAT).
    announce: str | None = None
    # Inclusive UDP port range; None lets the system choose.
    ports: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for address in (*self.bind, *((self.announce,) if self.announce else ())):
            ipaddress.ip_address(address)  # ValueError on anything else
        if self.ports is not None:
            low, high = self.ports
            if not 0 < low <= high <= 65535:
                raise ValueError(f"invalid UDP port range {low}-{high}")

    def port_order(self) -> Iterator[int]:
        """Ports to try for a new socket: the range from a random point, wrapping once."""
        if self.ports is None:
            yield 0
            return
        low, high = self.ports
        start = random.randint(low, high)
        yield from range(start, high + 1)
        yield from range(low, start)
