"""A school whose firewall lets no UDP out, for one browser of a test: Chromium runs as the
user nobody (``chromium_as_nobody``), and an nftables rule of the test's private network
namespace drops every UDP datagram that user's sockets send. Every other peer of the test
(the server, aiortc clients, other browsers run as root) keeps UDP.

A dropped datagram fails its ``sendto`` at once, so the browser's ICE agent finds no UDP
pair quickly; TCP to the same addresses works, unless its port is one of ``tcp_ports`` (a
firewall that lets out only HTTPS and the TURN server's port: the server's ICE-TCP port is
then closed too, and its SYNs vanish as a real firewall's do).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534
CHROMIUM_AS_NOBODY = str(Path(__file__).with_name("chromium_as_nobody"))
_TABLE = "syncclass_no_udp"


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


@contextmanager
def udp_blocked_for_nobody(tcp_ports: Sequence[int] = ()) -> Iterator[str]:
    """Drop the UDP that nobody's sockets send while inside, and their TCP to ``tcp_ports``;
    yields the Chromium executable to launch as nobody."""
    tcp_rule = ""
    if tcp_ports:
        ports = ", ".join(str(int(port)) for port in tcp_ports)
        tcp_rule = f"meta skuid {NOBODY} tcp dport {{ {ports} }} counter drop"
    _nft(
        f"""
        table inet {_TABLE} {{
            chain out {{
                type filter hook output priority 0; policy accept;
                meta skuid {NOBODY} meta l4proto udp counter drop
                {tcp_rule}
            }}
        }}
        """
    )
    try:
        yield CHROMIUM_AS_NOBODY
    finally:
        _nft(f"delete table inet {_TABLE}")


def _counters() -> list[int]:
    listing = subprocess.run(
        ["nft", "list", "table", "inet", _TABLE], capture_output=True, text=True, check=True
    ).stdout
    return [int(n) for n in re.findall(r"counter packets (\d+)", listing)]


def udp_dropped() -> int:
    """UDP datagrams the rule dropped so far."""
    counters = _counters()
    return counters[0] if counters else 0


def tcp_dropped() -> int:
    """TCP segments to the blocked ports dropped so far."""
    counters = _counters()
    return counters[1] if len(counters) > 1 else 0
