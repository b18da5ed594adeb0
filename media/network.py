"""Which addresses and UDP ports the SFU's ICE candidates use, and what it announces."""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass

from aioice.ice import get_host_addresses

from .tcp_mux import TcpPort, TcpPorts
from .udp_mux import SharedPorts

logger = logging.getLogger(__name__)

# ICE-TCP on the number the shared UDP port has (once it has one)
SAME_AS_UDP = -1

# A peer unheard of for this long has lost consent (RFC 7675 allows 30 s): five of aioice's
# 5-s consent checks, with a vanished peer's session closed before the 30 s are up.
CONSENT_TIMEOUT_S = 25.0


@dataclass(frozen=True)
class NetworkConfig:
    # Addresses to bind host candidates on; empty means every non-loopback local address.
    bind: tuple[str, ...] = ()
    # The public address put in candidates instead of the bound one (1:1 NAT).
    announce: str | None = None
    # Inclusive UDP port range; None lets the system choose.
    ports: tuple[int, int] | None = None
    # One UDP port shared by every peer (0: a free one, chosen once); None: a port per peer.
    shared_port: int | None = None
    # The TCP port for ICE-TCP passive candidates (0: a free one; SAME_AS_UDP: the shared UDP
    # port's number); None: no ICE over TCP.
    tcp_port: int | None = None
    # Seconds without an answered consent check or authenticated media after which a peer's
    # connection is closed (ICE consent, RFC 7675).
    consent_timeout_s: float = CONSENT_TIMEOUT_S
    # Answer publishers with transport-wide congestion control feedback (transport-cc), so
    # that a browser's estimate of its uplink ramps up in seconds.
    transport_cc: bool = True
    # fit what each receiving peer is sent to its link's estimate (send_gate); off, every peer
    # is sent everything (the estimate is still kept and shown)
    adapt_to_links: bool = True
    # make one lighter layer of a single-layer camera for the classrooms whose link cannot
    # carry it (media.made_layers), stopped once none has needed it for this many seconds
    made_layers: bool = True
    made_layer_idle_s: float = 30.0

    def __post_init__(self) -> None:
        for address in (*self.bind, *((self.announce,) if self.announce else ())):
            ipaddress.ip_address(address)  # ValueError on anything else
        if self.ports is not None:
            low, high = self.ports
            if not 0 < low <= high <= 65535:
                raise ValueError(f"invalid UDP port range {low}-{high}")
        if self.shared_port is not None:
            if self.ports is not None:
                raise ValueError("a shared UDP port and a port range exclude each other")
            if not 0 <= self.shared_port <= 65535:
                raise ValueError(f"invalid UDP port {self.shared_port}")
        if self.tcp_port == SAME_AS_UDP:
            if self.shared_port is None:
                raise ValueError("ICE-TCP on the UDP port's number needs a shared UDP port")
        elif self.tcp_port is not None and not 0 <= self.tcp_port <= 65535:
            raise ValueError(f"invalid TCP port {self.tcp_port}")
        if self.made_layer_idle_s <= 0:
            raise ValueError(f"a made layer's idle time must be positive: {self.made_layer_idle_s}")
        if not 0 < self.consent_timeout_s <= 30:
            raise ValueError(
                f"the ICE consent timeout must be within 30 s: {self.consent_timeout_s}"
            )

    def port_order(self) -> Iterator[int]:
        """Ports to try for a new socket: the range from a random point, wrapping once."""
        if self.ports is None:
            yield 0
            return
        low, high = self.ports
        start = random.randint(low, high)
        yield from range(start, high + 1)
        yield from range(low, start)


class Network:
    """The SFU's network: what it is configured to use, and the shared ports it owns."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.shared = SharedPorts(config.shared_port) if config.shared_port is not None else None
        self.tcp = TcpPorts(config.tcp_port) if config.tcp_port is not None else None
        self._tcp_failed: set[str] = set()  # addresses whose UDP port's number is taken on TCP

    async def open(self) -> list[tuple[str, int]]:
        """Open the shared ports now, one per address candidates are gathered on, rather than
        at the first peer: a port already in use then stops the server as it starts instead
        of failing every peer later. Returns the bound addresses; OSError if one cannot be."""
        addresses = self.config.bind or get_host_addresses(use_ipv4=True, use_ipv6=True)
        opened = []
        for address in addresses:
            if self.shared is not None:
                opened.append((await self.shared.get(address)).address)
            if self.tcp is not None:
                port = await self.tcp_port(address)
                if port is not None:
                    opened.append(port.address)
        return opened

    async def tcp_port(self, address: str) -> TcpPort | None:
        """The ICE-TCP port on ``address``, or None without one. On the UDP port's number,
        a number taken by something else leaves the server without ICE-TCP there (logged);
        a port given by number must open (OSError)."""
        if self.tcp is None:
            return None
        if self.tcp.port != SAME_AS_UDP:
            return await self.tcp.get(address)
        assert self.shared is not None
        if address in self._tcp_failed:
            return None
        number = (await self.shared.get(address)).address[1]
        try:
            return await self.tcp.get(address, number)
        except OSError as exc:
            logger.error("no ICE-TCP on %s: cannot open TCP port %d: %s", address, number, exc)
            self._tcp_failed.add(address)
            return None

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
        if self.tcp is not None:
            self.tcp.close()
